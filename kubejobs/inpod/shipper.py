"""The log shipper: followers journal every container's output, one sender delivers it in batches.

    follower(stager) -> follower(main 1..n) --append--> journal (state dir)
    journal --Batcher--> Delivery --addlogmsg--> Colonies process log

Once every followed container's log is complete and delivered, the onclose
hook (fs.dirs sync) runs and `run()` returns. After terminate() (SIGTERM) the
shipper keeps working until a deadline inside the termination grace period,
then gives up and returns what it managed.

A Colonies certificate that fails verification ends the shipper with that error
(it can deliver nothing): at once as a regular container, whose failure the pod's
status then carries; as a native sidecar only at SIGTERM, when the main containers
have ended, so the kubelet does not restart it in a loop meanwhile and the last
state the executor reads is this exit with its termination message.

A shipper whose attempt is over (the server took the process back: attempt.py)
stops shipping, sets no output and runs no sync; as a native sidecar it then
waits for the pod to end (the executor deletes it), else the kubelet would
restart it while the program still runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubejobs.adapters.colonies import ColoniesCertificateError
from kubejobs.errors import KubejobsError
from kubejobs.inpod.attempt import AttemptGuard
from kubejobs.inpod.batching import Batcher, LineFormat
from kubejobs.inpod.delivery import Delivery, LogSink, Stopped, Superseded
from kubejobs.inpod.journal import Journal, parse_record
from kubejobs.inpod.logsource import Follower, PodApi
from kubejobs.inpod.state import Cursor, LogPosition, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShipperOptions:
    max_batch_bytes: int = 512 * 1024
    linger: float = 0.5
    idle_timeout: float = 5.0
    poll: float = 0.5
    grace_seconds: float = 30.0
    grace_margin: float = 3.0
    journal_max_bytes: int = 2 * 1024**3
    wait_for_sigterm_on_fatal: bool = False
    """Native sidecar: after a certificate failure, exit only at SIGTERM (see above)."""


@dataclass
class ShipResult:
    complete: bool
    delivered_lines: int
    dropped_lines: int
    requests: int
    seconds: float
    containers: dict[str, int] = field(default_factory=dict)  # lines read per container, this run
    superseded: str = ""
    """Why shipping stopped because the pod's attempt is over ('' otherwise)."""
    reason: str = ""
    """Why it is incomplete ('' when complete): the executor's note quotes it."""


class Shipper:
    def __init__(
        self,
        api: PodApi,
        sink: LogSink,
        state_dir: Path,
        process_id: str,
        colony: str,
        first: Sequence[str],
        containers: Sequence[str],
        rank: str = "0",
        tagged: Callable[[], bool] = lambda: False,
        on_close: Callable[[], None] = lambda: None,
        options: ShipperOptions | None = None,
        guard: AttemptGuard | None = None,
    ) -> None:
        self.api = api
        self.sink = sink
        self.store = StateStore(state_dir / "shipper")
        self.process_id = process_id
        self.colony = colony
        self.first = tuple(first)  # followed to the end before the others start (the stager)
        self.containers = tuple(containers)
        self.rank = rank
        self.tagged = tagged
        self.on_close = on_close
        self.options = options or ShipperOptions()
        self.guard = guard
        self._deadline: float | None = None
        self._stop = threading.Event()
        self._terminated = threading.Event()

    def terminate(self) -> None:
        """SIGTERM: finish within the grace period (kept as a deadline), then give up."""
        if self._deadline is None:
            self._deadline = time.monotonic() + max(
                1.0, self.options.grace_seconds - self.options.grace_margin
            )
        self._terminated.set()

    def should_stop(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def run(self) -> ShipResult:
        started = time.monotonic()
        cursor = self.store.load()
        if cursor.finished:
            log.info("logs already shipped and synced before a restart; nothing to do")
            return ShipResult(True, cursor.delivered_lines, cursor.dropped_lines, 0, 0.0)
        journal = Journal(self.store.journal_dir, max_bytes=self.options.journal_max_bytes)
        delivery = Delivery(
            self.sink, self.store, cursor, self.process_id, self.colony, guard=self.guard
        )
        superseded = reason = ""
        followers: list[Follower] = []
        threads: list[threading.Thread] = []
        try:
            delivery.recover(self.should_stop)
            if cursor.tagged is None:
                cursor.tagged = delivery.retry(self.tagged, "read the process", self.should_stop)
                self.store.save(cursor)
            start = _read_positions(journal, cursor)
            followers = [
                Follower(
                    c,
                    self.api,
                    journal,
                    start.get(c, LogPosition()),
                    self._stop,
                    poll=self.options.poll,
                    idle_timeout=self.options.idle_timeout,
                )
                for c in (*self.first, *self.containers)
            ]
            threads = [
                threading.Thread(
                    target=self._follow_all, args=(followers,), name="followers", daemon=True
                )
            ]
            threads[0].start()
            batcher = Batcher(
                journal,
                cursor.pos,
                cursor.positions,
                (*self.first, *self.containers),
                LineFormat(bool(cursor.tagged), self.rank),
                max_bytes=self.options.max_batch_bytes,
                linger=self.options.linger,
            )
            while (batch := batcher.next(self.should_stop)) is not None:
                delivery.deliver(batch, self.should_stop)
                journal.discard_before(cursor.pos)
            complete = batcher.all_done() and cursor.pos >= batcher.pos
            if not complete:
                reason = (
                    "the termination deadline (the pod's grace period of "
                    f"{self.options.grace_seconds:.0f} s) passed before every container's log "
                    "was read to its end"
                )
            if complete:
                self._stop.set()
                delivery.check_attempt(self.should_stop, "the output and the sync", fresh=True)
                try:
                    self.on_close()
                except ColoniesCertificateError:
                    raise
                except KubejobsError as err:
                    log.error("onclose sync failed: %s", err)
                    complete, reason = False, f"the onclose sync failed: {err}"
                else:
                    cursor.finished = True
                    self.store.save(cursor)
        except Stopped as err:
            log.error("%s", err)
            complete = False
            reason = f"{err} (the pod's grace period: {self.options.grace_seconds:.0f} s)"
        except Superseded as err:
            self._stop.set()
            superseded = str(err)
            complete = False
            log.warning("%s", superseded)
            if self.options.wait_for_sigterm_on_fatal:
                self._terminated.wait()
        except ColoniesCertificateError as err:
            self._stop.set()
            if self.options.wait_for_sigterm_on_fatal:
                log.error("%s; nothing can be shipped: waiting for the pod to end", err)
                self._terminated.wait()
            raise
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=10)
            journal.close()
        return ShipResult(
            complete,
            cursor.delivered_lines,
            cursor.dropped_lines,
            delivery.requests,
            time.monotonic() - started,
            {f.container: f.lines for f in followers},
            superseded,
            reason,
        )

    def _follow_all(self, followers: list[Follower]) -> None:
        first = [f for f in followers if f.container in self.first]
        rest = [f for f in followers if f.container not in self.first]
        for follower in first:
            follower.run()
        threads = [
            threading.Thread(target=f.run, name=f"follow-{f.container}", daemon=True) for f in rest
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _read_positions(journal: Journal, cursor: Cursor) -> dict[str, LogPosition]:
    """Where each follower resumes: the committed positions plus what the journal holds beyond them."""
    positions = {k: LogPosition(v.ns, v.same, v.done) for k, v in cursor.positions.items()}
    pos = cursor.pos
    while True:
        records, pos = journal.read(pos, 4 * 1024 * 1024)
        if not records:
            return positions
        for raw in records:
            record = parse_record(raw)
            position = positions.setdefault(record.container, LogPosition())
            if record.kind == "E":
                position.done = True
            else:
                position.advance(record.ns)
