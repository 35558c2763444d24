"""Fakes for the in-pod unit tests: a pod whose logs the test writes, and a Colonies log sink."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

from kubejobs.adapters.colonies import ColoniesUnavailable
from kubejobs.adapters.podlogs import KubeUnavailable, LogsNotReady

BASE_NS = 1_700_000_000 * 1_000_000_000


def stamp(ns: int) -> bytes:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
    ).encode()


class FakeStream:
    def __init__(
        self, lines: list[bytes], idle: bool, chunk: int = 7, broken: bool = False
    ) -> None:
        self.lines = lines
        self.idle = False
        self._end_idle = idle
        self.chunk = chunk
        self.broken = broken

    def __iter__(self) -> Iterator[list[bytes]]:
        for i in range(0, len(self.lines), self.chunk):
            yield self.lines[i : i + self.chunk]
        if self.broken:
            raise KubeUnavailable("log stream broke: ChunkedEncodingError")
        self.idle = self._end_idle

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *args: object) -> None:
        return None


class FakePod:
    """Containers with timestamped lines; `state` per container: waiting, running, terminated."""

    def __init__(self, containers: list[str]) -> None:
        self.lock = threading.Lock()
        self.lines: dict[str, list[tuple[int, bytes]]] = {c: [] for c in containers}
        self.state: dict[str, str] = dict.fromkeys(containers, "waiting")
        self.streams = 0
        self.fail_next_streams = (
            0  # raise after delivering part of the log, like a broken connection
        )
        # A pod being deleted whose kubelet posts no status until every container has
        # stopped: these containers have stopped (their streams end) but still show running.
        self.deleting = False
        self.stopped_unposted: set[str] = set()

    def write(
        self, container: str, texts: list[str], ns: int | None = None, same_ts: bool = False
    ) -> None:
        with self.lock:
            lines = self.lines[container]
            last = lines[-1][0] if lines else BASE_NS
            for i, text in enumerate(texts):
                when = ns if ns is not None else (last if same_ts else last + 1000 * (i + 1))
                lines.append((when, text.encode()))

    def pod(self) -> dict[str, Any]:
        with self.lock:
            statuses = []
            for name, state in self.state.items():
                st: dict[str, Any] = {}
                if state == "running":
                    st = {"running": {}}
                elif state == "terminated":
                    st = {"terminated": {"exitCode": 0}}
                else:
                    st = {"waiting": {}}
                statuses.append({"name": name, "state": st})
            meta = {"deletionTimestamp": "2026-12-05T18:00:00Z"} if self.deleting else {}
            return {
                "metadata": meta,
                "status": {"phase": "Running", "containerStatuses": statuses},
            }

    def stream(
        self,
        container: str,
        since: Any = None,
        follow: bool = True,
        idle_timeout: float = 5.0,
        previous: bool = False,
    ) -> FakeStream:
        with self.lock:
            self.streams += 1
            if self.state[container] == "waiting":
                raise LogsNotReady("waiting to start")
            floor = int(since.timestamp()) * 1_000_000_000 if since is not None else 0
            lines = [stamp(ns) + b" " + text for ns, text in self.lines[container] if ns >= floor]
            broken = self.fail_next_streams > 0
            if broken:
                self.fail_next_streams -= 1
                lines = lines[: len(lines) // 2]
            running = self.state[container] == "running" and container not in self.stopped_unposted
            return FakeStream(lines, idle=follow and running, broken=broken)


class FakeSink:
    """Records add_log messages; can be 'down' for a number of calls."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.down_calls = 0
        self.calls = 0
        self.crash_after: int | None = None  # raise Crash after storing this many messages
        self.crash_before: int | None = None  # raise Crash instead of storing message number N
        self.lose_answers: set[int] = set()  # calls whose message is stored, the answer lost

    def add_log(self, process_id: str, message: str) -> None:
        self.calls += 1
        if self.down_calls:
            self.down_calls -= 1
            raise ColoniesUnavailable("down")
        if self.crash_before is not None and len(self.messages) + 1 >= self.crash_before:
            self.crash_before = None
            raise Crash("killed before the request reached the server")
        self.messages.append(message)
        if self.calls in self.lose_answers:
            raise ColoniesUnavailable("the connection closed before the answer")
        if self.crash_after is not None and len(self.messages) >= self.crash_after:
            self.crash_after = None
            raise Crash("killed after send, before commit")

    def get_logs(
        self, colony: str, process_id: str, count: int = 500, since: int = 0
    ) -> list[dict[str, Any]]:
        entries = [{"message": m, "timestamp": i + 1} for i, m in enumerate(self.messages)]
        return [e for e in entries if e["timestamp"] > since][:count]

    def text(self) -> str:
        return "".join(self.messages)


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the shipper catches it."""
