"""Following one container's log through `pods/log`, from its first line to its last, into the journal.

Every line comes with its kubelet timestamp. The follower remembers the last
timestamp it journaled and how many lines carried exactly that timestamp, so
when a stream has to be opened again (the API server restarted, the stream
ended early around a log rotation, the shipper itself restarted) it asks for
`sinceTime` at that second and skips what it already has: no loss, no
duplicates. A stream is never trusted to end by itself: when the container is
seen terminated, one last non-following read from the position collects the
tail, then the log is marked complete.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from kubejobs.adapters.podlogs import KubeUnavailable, LogsNotReady, PodGone
from kubejobs.inpod.journal import Journal, end_record
from kubejobs.inpod.state import LogPosition
from kubejobs.inpod.timestamps import parse_ns, to_datetime

log = logging.getLogger(__name__)


class Stream(Iterable[list[bytes]], AbstractContextManager[Any], Protocol):
    idle: bool


class PodApi(Protocol):
    def pod(self) -> dict[str, Any]: ...

    def stream(
        self,
        container: str,
        since: Any = None,
        follow: bool = True,
        idle_timeout: float = 5.0,
        previous: bool = False,
    ) -> Stream: ...


def container_state(pod: dict[str, Any], name: str) -> str:
    """'waiting', 'running', 'terminated', 'never' (the pod finished without running it), or
    'absent' (the pod has no such container)."""
    spec = pod.get("spec") or {}
    if spec and all(
        c.get("name") != name
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    ):
        return "absent"
    status = pod.get("status") or {}
    for item in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if item.get("name") == name:
            state = item.get("state") or {}
            if "terminated" in state:
                return "terminated"
            if "running" in state:
                return "running"
            break
    if status.get("phase") in ("Succeeded", "Failed"):
        return "never"
    return "waiting"


class Follower:
    """Journals one container's log; run() returns once the log is complete (or `stop` is set)."""

    def __init__(
        self,
        container: str,
        api: PodApi,
        journal: Journal,
        position: LogPosition,
        stop: threading.Event,
        poll: float = 0.5,
        idle_timeout: float = 5.0,
        backoff_max: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.container = container
        self.api = api
        self.journal = journal
        self.position = position
        self.stop = stop
        self.poll = poll
        self.idle_timeout = idle_timeout
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.lines = 0
        self.reconnects = 0

    def run(self) -> None:
        delay = self.poll
        while not self.position.done and not self.stop.is_set():
            try:
                self._step()
                delay = self.poll
            except LogsNotReady:
                self.sleep(self.poll)
            except PodGone:
                log.warning("pod deleted: the rest of %s's log is gone with it", self.container)
                self._finish()
            except KubeUnavailable as err:
                log.warning("reading %s's log: %s; retrying", self.container, err)
                self.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
            except (
                Exception
            ):  # a follower must never die silently: the shipper would wait for it forever
                log.exception("unexpected error following %s; retrying", self.container)
                self.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    def _step(self) -> None:
        state = container_state(self.api.pod(), self.container)
        if state == "waiting":
            self.sleep(self.poll)
            return
        if state in ("never", "absent"):
            if state == "absent":
                log.warning("the pod has no container %s; nothing to follow", self.container)
            self._finish()
            return
        final = state == "terminated"
        since = to_datetime(self.position.ns) if self.position.ns else None
        stream = self.api.stream(
            self.container, since=since, follow=not final, idle_timeout=self.idle_timeout
        )
        with stream:
            self._copy(stream)
        if self.stop.is_set():
            return
        if final and not stream.idle:
            self._finish()
        else:
            self.reconnects += 1

    def _copy(self, chunks: Iterable[list[bytes]]) -> None:
        position = self.position
        skip_before, skip_same = position.ns, position.same
        catching_up = skip_before > 0
        header = b"L\t" + self.container.encode() + b"\t"
        second, base = b"", 0  # the last whole second seen and its ns, to parse the rest fast
        for lines in chunks:
            records = []
            for line in lines:
                cut = line.find(b" ")
                try:
                    if line[:19] == second and line[19:20] == b"." and line[cut - 1 : cut] == b"Z":
                        ns = base + int(line[20 : cut - 1].ljust(9, b"0"))
                    else:
                        ns = parse_ns(line[:cut])
                        second, base = line[:19], ns - ns % 1_000_000_000
                    text = line[cut + 1 :]
                except (ValueError, IndexError):
                    ns, text = (
                        position.ns,
                        line,
                    )  # no timestamp: keep the line, place it with the last one
                if catching_up:
                    if ns < skip_before:
                        continue
                    if ns == skip_before and skip_same > 0:
                        skip_same -= 1
                        continue
                    catching_up = False
                records.append(b"%s%d\t%s\n" % (header, ns, text))
                if ns == position.ns:
                    position.same += 1
                else:
                    position.ns, position.same = ns, 1
            if records:
                self.journal.append(records)
                self.lines += len(records)
            while self.journal.full() and not self.stop.is_set():
                self.sleep(0.2)  # the sender is far behind: let the kubelet keep the rest for now
            if self.stop.is_set():
                return

    def _finish(self) -> None:
        self.journal.append([end_record(self.container)])
        self.position.done = True
