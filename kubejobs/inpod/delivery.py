"""Delivering batches to the Colonies process log exactly once, across outages and restarts.

Before a batch is sent, its hash and end position are written to the cursor as
`pending`; after the server accepts it, the cursor moves past it. A restart
that finds `pending` set counts the server's log entries with that hash: one
more than `sent.log` records means the batch arrived and is committed, else it
is sent again. A send that failed is settled the same way before it is tried
again: the server may have stored the batch and lost only its answer. While the
server is unreachable the batch is retried with backoff and the readers keep
journaling to disk, so nothing waits in memory.

With an attempt guard (attempt.py), a batch is sent only while the server's
process is still in the pod's attempt; once it is not, delivery stops
(Superseded) and the batch is not sent: it belongs to an attempt that is over.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from kubejobs.adapters.colonies import (
    ColoniesCertificateError,
    ColoniesError,
    ColoniesUnavailable,
)
from kubejobs.inpod.attempt import AttemptGuard
from kubejobs.inpod.batching import Batch
from kubejobs.inpod.state import Cursor, Pending, StateStore

log = logging.getLogger(__name__)
PAGE = 500  # the server returns at most 500 log entries per call


class LogSink(Protocol):
    def add_log(self, process_id: str, message: str) -> Any: ...

    def get_logs(
        self, colony: str, process_id: str, count: int = 500, since: int = 0
    ) -> list[dict[str, Any]]: ...


class Stopped(Exception):
    """The shipper's deadline passed while the server was still away."""


class Superseded(Exception):
    """The server's process is no longer in this pod's attempt: nothing more is shipped."""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Delivery:
    def __init__(
        self,
        sink: LogSink,
        store: StateStore,
        cursor: Cursor,
        process_id: str,
        colony: str,
        on_commit: Callable[[Cursor], None] = lambda c: None,
        backoff_max: float = 5.0,
        permanent_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        guard: AttemptGuard | None = None,
    ) -> None:
        self.sink = sink
        self.store = store
        self.cursor = cursor
        self.process_id = process_id
        self.colony = colony
        self.on_commit = on_commit
        self.backoff_max = backoff_max
        self.permanent_attempts = permanent_attempts
        self.sleep = sleep
        self.guard = guard
        self.outage_started: float | None = None
        self.requests = 0

    def recover(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Settle a batch left in flight by a crash: commit it if the server has it."""
        pending = self.cursor.pending
        if pending is None:
            return
        self.store.truncate_sent(pending.sent_len)
        on_server = self.retry(
            lambda: self._count_on_server(pending.hash), "read the process log", should_stop
        )
        if on_server > self.store.sent_count(pending.hash):
            log.info("the batch in flight before the restart had arrived; not sending it again")
            self.store.add_sent(pending.hash)
            self.cursor.pos = pending.end
            self.cursor.positions = pending.positions
        else:
            log.info("the batch in flight before the restart had not arrived; sending it again")
        self.cursor.pending = None
        self.store.save(self.cursor)

    def _count_on_server(self, wanted: str) -> int:
        found, since = 0, 0
        while True:
            entries = self.sink.get_logs(self.colony, self.process_id, PAGE, since)
            found += sum(1 for e in entries if digest(str(e.get("message", ""))) == wanted)
            if len(entries) < PAGE:
                return found
            since = int(entries[-1]["timestamp"])

    def deliver(self, batch: Batch, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Send `batch` (if it holds lines) and commit it; Stopped if `should_stop` while retrying."""
        cursor = self.cursor
        if batch.lines:
            self.check_attempt(should_stop, f"{batch.lines} line(s)")
            hashed = digest(batch.text)
            cursor.pending = Pending(
                hash=hashed,
                end=batch.end,
                positions=batch.positions,
                sent_len=self.store.sent_len(),
            )
            self.store.save(cursor)
            tried = False

            def send() -> None:
                # A send that failed may still have arrived (the answer lost with the
                # connection): count the server's entries first, as after a restart.
                nonlocal tried
                if tried and self._count_on_server(hashed) > self.store.sent_count(hashed):
                    log.info("the batch whose answer was lost had arrived; not sending it again")
                    return
                tried = True
                self.sink.add_log(self.process_id, batch.text)

            try:
                self.retry(send, "add the log batch", should_stop)
                self.store.add_sent(hashed)
                cursor.delivered_lines += batch.lines
            except ColoniesCertificateError:
                raise  # not a refusal of these lines: the batch stays pending
            except ColoniesError as err:
                log.error("dropping %d log lines: the server refuses them: %s", batch.lines, err)
                cursor.dropped_lines += batch.lines
            self.requests += 1
        cursor.pending = None
        cursor.pos = batch.end
        cursor.positions = batch.positions
        self.store.save(cursor)
        self.on_commit(cursor)

    def check_attempt(
        self, should_stop: Callable[[], bool], what: str, fresh: bool = False
    ) -> None:
        """Superseded when the pod's attempt is over (`what` is what is then not done)."""
        guard = self.guard
        if guard is None:
            return
        if not self.retry(lambda: guard.current(fresh), "read the process", should_stop):
            raise Superseded(f"{guard.over}; not shipped: {what}")

    def retry(self, call: Callable[[], Any], what: str, should_stop: Callable[[], bool]) -> Any:
        delay, refused = 0.2, 0
        while True:
            try:
                result = call()
            except ColoniesCertificateError:
                raise  # not an outage: nothing will be delivered with this CA (Shipper.run)
            except ColoniesUnavailable as err:
                if self.outage_started is None:
                    self.outage_started = time.monotonic()
                    log.warning(
                        "Colonies server unreachable (%s); journaling to disk and retrying", err
                    )
            except ColoniesError:
                refused += 1
                if refused >= self.permanent_attempts:
                    raise
                log.warning("could not %s (attempt %d), retrying", what, refused)
            else:
                if self.outage_started is not None:
                    log.info(
                        "Colonies server back after %.1f s", time.monotonic() - self.outage_started
                    )
                    self.outage_started = None
                return result
            if should_stop():
                raise Stopped(f"gave up trying to {what}: the termination deadline passed")
            self.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
