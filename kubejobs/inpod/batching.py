"""Journal records into Colonies log batches, bounded by size and by time.

One batch becomes one signed `addlogmsg` request. A batch is cut when it holds
about `max_bytes`, when its oldest line has waited `linger` seconds, or when
every followed container's log is complete (the final drain). Lines are
tagged `[rank/container] ` when the process has several nodes or several main
containers, so interleaved output stays attributable.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from kubejobs.inpod.journal import Position
from kubejobs.inpod.state import LogPosition


class RecordSource(Protocol):
    def read(self, pos: Position, max_bytes: int) -> tuple[list[bytes], Position]: ...

    def wait(self, pos: Position, timeout: float) -> bool: ...


@dataclass(frozen=True)
class Batch:
    text: str
    lines: int
    end: Position
    positions: dict[str, LogPosition]  # every container's log position once this batch is delivered


@dataclass(frozen=True)
class LineFormat:
    tagged: bool
    rank: str = "0"

    def prefix(self, container: str) -> bytes:
        return f"[{self.rank}/{container}] ".encode() if self.tagged else b""


class Batcher:
    """Reads the journal ahead of the committed position and hands out batches in order."""

    def __init__(
        self,
        source: RecordSource,
        start: Position,
        positions: dict[str, LogPosition],
        expected: Iterable[str],
        line_format: LineFormat,
        max_bytes: int = 512 * 1024,
        linger: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.pos = start
        self.positions = copy.deepcopy(positions)
        self.expected = tuple(expected)
        self.format = line_format
        self.max_bytes = max_bytes
        self.linger = linger
        self.clock = clock
        self._prefixes: dict[str, bytes] = {}
        self._parts: list[bytes] = []
        self._size = 0
        self._lines = 0
        self._first = 0.0
        self._dirty = False  # positions changed since the last batch (lines or ends)

    def all_done(self) -> bool:
        return all(self.positions.get(c, LogPosition()).done for c in self.expected)

    def next(self, should_stop: Callable[[], bool] = lambda: False) -> Batch | None:
        """The next batch, or None once every log is complete and delivered-to-be (or `should_stop`)."""
        while True:
            budget = self.max_bytes - self._size
            records, nxt = self.source.read(self.pos, budget) if budget > 0 else ([], self.pos)
            if records:
                self._take(records)
                self.pos = nxt
                if self._size >= self.max_bytes * 0.9:
                    return self._cut()
                continue
            if self._dirty and (
                self.all_done() or self._lines == 0 or self.clock() - self._first >= self.linger
            ):
                return self._cut()
            if self.all_done():
                return None
            if should_stop():
                return self._cut() if self._dirty else None
            wait = self.linger - (self.clock() - self._first) if self._lines else 0.5
            self.source.wait(self.pos, max(0.01, min(wait, 0.5)))

    def _take(self, raws: list[bytes]) -> None:
        # The hot loop of the shipper: plain splits and local names, no objects per line.
        parts = self._parts
        prefixes = self._prefixes
        positions = self.positions
        size, lines = self._size, self._lines
        if raws and not lines:
            self._first = self.clock()
        current: tuple[bytes, LogPosition] | None = None
        for raw in raws:
            if raw[:1] == b"E":
                name = raw[2:].decode()
                positions.setdefault(name, LogPosition()).done = True
                self._dirty = True
                continue
            _, container, stamp, text = raw.split(b"\t", 3)
            if current is None or current[0] != container:
                name = container.decode()
                position = positions.get(name)
                if position is None:
                    position = positions[name] = LogPosition()
                current = (container, position)
                if name not in prefixes:
                    prefixes[name] = self.format.prefix(name)
                prefix = prefixes[name]
            position = current[1]
            ns = int(stamp)
            if ns == position.ns:
                position.same += 1
            else:
                position.ns, position.same = ns, 1
            line = prefix + text if prefix else text
            parts.append(line)
            size += len(line) + 1
            lines += 1
        if lines != self._lines:
            self._dirty = True
        self._size, self._lines = size, lines

    def _cut(self) -> Batch:
        text = b"\n".join(self._parts) + b"\n" if self._parts else b""
        batch = Batch(
            text=text.decode("utf-8", "replace"),
            lines=self._lines,
            end=self.pos,
            positions=copy.deepcopy(self.positions),
        )
        self._parts = []
        self._size = 0
        self._lines = 0
        self._dirty = False
        return batch
