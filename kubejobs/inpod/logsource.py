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
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from kubejobs.adapters.podlogs import KubeUnavailable, LogsNotReady, PodGone
from kubejobs.inpod.journal import Journal, end_record, last_stamp, stamp
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


# Every line of a chunk starts with a stamp in journal form (kubelet: RFC3339Nano, 9 digits, UTC).
_NOT_STAMPED = re.compile(rb"\n(?!\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z )")


def _line_ns(line: bytes, missing: int) -> int:
    """The time of a kubelet line in ns, or `missing` when it has no timestamp."""
    cut = line.find(b" ")
    if cut < 0:
        return missing
    try:
        return parse_ns(line[:cut])
    except (ValueError, IndexError):
        return missing


def container_state(pod: dict[str, Any], name: str) -> str:
    """'waiting', 'running', 'terminated', 'never' (the pod finished, or is being deleted,
    without running it), or 'absent' (the pod has no such container)."""
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
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        # The kubelet starts nothing in a pod being deleted (walltime, take-back). Waiting for
        # the pod to finish instead would wait for the shipper itself: a stall to the deadline.
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
        self.stream_ended = False  # the last following stream ended by itself, not idle

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
        pod = self.api.pod()
        state = container_state(pod, self.container)
        if (
            state == "running"
            and self.stream_ended
            and (pod.get("metadata") or {}).get("deletionTimestamp")
        ):
            # A following stream ends by itself only once the runtime says the container has
            # stopped. While a pod is being deleted the kubelet posts no status until all of
            # its containers have stopped, this shipper included: waiting for `terminated`
            # would stall to the end of the grace period.
            state = "terminated"
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
            self.stream_ended = not stream.idle
            self.reconnects += 1

    def _copy(self, chunks: Iterable[list[bytes]]) -> None:
        # The reading half of the shipper's hot path. A chunk (one network read, thousands of
        # lines) whose lines all carry the kubelet's stamp in journal form goes to the journal
        # as it came, tagged by one join; only its last lines are parsed, for the position.
        # Per-line Python work here would compete with the sender for the one GIL.
        position = self.position
        skip_before, skip_same = position.ns, position.same
        catching_up = skip_before > 0
        header = b"L\t" + self.container.encode() + b"\t"
        for lines in chunks:
            if catching_up:  # a reopened stream: drop what the journal already has
                start = 0
                for line in lines:
                    ns = _line_ns(line, position.ns)
                    if ns < skip_before:
                        start += 1
                    elif ns == skip_before and skip_same > 0:
                        skip_same -= 1
                        start += 1
                    else:
                        catching_up = False
                        break
                lines = lines[start:]
            if lines and _NOT_STAMPED.search(b"\n" + b"\n".join(lines)) is None:
                self.journal.append([header + (b"\n" + header).join(lines) + b"\n"])
                ns, same = last_stamp(lines, 0)
                position.advance_run(ns, same, len(lines))
            elif lines:  # another stamp form, or none: line by line, into journal form
                self.journal.append([self._record(header, line) for line in lines])
            self.lines += len(lines)
            while self.journal.full() and not self.stop.is_set():
                self.sleep(0.2)  # the sender is far behind: let the kubelet keep the rest for now
            if self.stop.is_set():
                return

    def _record(self, header: bytes, line: bytes) -> bytes:
        ns = _line_ns(line, -1)
        if ns < 0:  # no timestamp: keep the whole line, placed with the last one
            ns, text = self.position.ns, line
        else:
            text = line[line.index(b" ") + 1 :]
        self.position.advance(ns)
        return header + stamp(ns) + b" " + text + b"\n"

    def _finish(self) -> None:
        self.journal.append([end_record(self.container)])
        self.position.done = True
