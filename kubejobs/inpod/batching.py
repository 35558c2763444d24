"""Journal records into Colonies log batches, bounded by size and by time.

One batch becomes one signed `addlogmsg` request. A batch is cut when it holds
about `max_bytes`, when its oldest line has waited `linger` seconds, or when
every followed container's log is complete (the final drain). Lines are
tagged `[rank/container] ` when the process has several nodes or several main
containers, so interleaved output stays attributable.
"""

from __future__ import annotations

import copy
import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from kubejobs.inpod.journal import STAMP_LEN, Position, last_stamp
from kubejobs.inpod.state import LogPosition


@functools.cache
def _run_end(header: bytes) -> re.Pattern[bytes]:
    return re.compile(b"\n(?!" + re.escape(header) + b")")


class RecordSource(Protocol):
    def read_block(self, pos: Position, max_bytes: int) -> tuple[bytes, Position]: ...

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
            block, nxt = self.source.read_block(self.pos, budget) if budget > 0 else (b"", self.pos)
            if block:
                self._take(block)
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

    def _take(self, block: bytes) -> None:
        # The sending half of the hot path: whole runs of one container's records at once
        # (a follower appends thousands at a time), cut apart by C-level searches and slices.
        pos = 0
        while pos < len(block):
            if block.startswith(b"E", pos):
                end = block.index(b"\n", pos) + 1
                self.positions.setdefault(
                    block[pos + 2 : end - 1].decode(), LogPosition()
                ).done = True
                self._dirty = True
            else:
                header = block[pos : block.index(b"\t", pos + 2) + 1]
                # The run ends at the first newline not followed by this header.
                found = _run_end(header).search(block, pos)
                end = found.end() if found else len(block)
                self._take_run(header, block[pos:end])
            pos = end

    def _take_run(self, header: bytes, run: bytes) -> None:
        name = header[2:-1].decode()
        prefix = self._prefixes.get(name)
        if prefix is None:
            prefix = self._prefixes[name] = self.format.prefix(name)
        records = run[:-1].split(b"\n")
        skip = len(header) + STAMP_LEN + 1  # header and "stamp "
        if prefix:
            self._parts.extend([prefix + r[skip:] for r in records])
        else:
            self._parts.extend([r[skip:] for r in records])
        ns, same = last_stamp(records, len(header))
        self.positions.setdefault(name, LogPosition()).advance_run(ns, same, len(records))
        if not self._lines:
            self._first = self.clock()
        self._size += len(run) + len(records) * (len(prefix) - skip)
        self._lines += len(records)
        self._dirty = True

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
