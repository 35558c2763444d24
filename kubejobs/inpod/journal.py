"""The shipper's write-ahead journal: every line read from a container, on disk, in read order.

Readers append records as soon as they read them, so memory stays bounded
however long the Colonies server is away; the sender reads the journal from
its committed position. Both positions survive a restart of the shipper
container because the journal lives in KUBEJOBS_STATE_DIR (an emptyDir).

Records are single lines: `L<TAB>container<TAB>stamp<SPACE>text` for a log line
and `E<TAB>container` when a container's log is complete. `stamp` is always
`2024-05-01T12:00:00.123456789Z` (UTC, 9 digits, STAMP_LEN bytes): the kubelet's
own prefix, which the follower journals as it comes (no per-line work) and
normalizes to this form in the rare line that differs. The fixed width lets the
batcher strip it by slicing and compare timestamps as bytes. Container names
are DNS labels and log lines never hold a newline, so no escaping is needed. A
record cut short by a crash is cut off when the journal is opened.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kubejobs.inpod.timestamps import parse_ns

Position = tuple[int, int]  # (segment number, byte offset in it)
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Record:
    kind: str  # "L" line, "E" end of a container's log
    container: str
    ns: int = 0
    text: bytes = b""


STAMP_LEN = len(b"2024-05-01T12:00:00.123456789Z")
_second: tuple[int, bytes] = (-1, b"")


def stamp(ns: int) -> bytes:
    """`ns` in the journal's timestamp form (the kubelet's RFC3339Nano with all 9 digits, UTC)."""
    global _second
    seconds, nanos = divmod(ns, 1_000_000_000)
    cached, text = _second
    if seconds != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()
        _second = (seconds, text)
    return b"%s.%09dZ" % (text, nanos)


def line_record(container: str, ns: int, text: bytes) -> bytes:
    return b"L\t%s\t%s %s\n" % (container.encode(), stamp(ns), text)


def last_stamp(items: list[bytes], at: int) -> tuple[int, int]:
    """The time (ns) of the last of `items` (journal-form stamps starting at byte `at`) and
    how many items at the end carry it. Equal stamps are equal bytes: no parsing per item."""
    last = items[-1][at : at + STAMP_LEN]
    same = 1
    while same < len(items) and items[-1 - same][at : at + STAMP_LEN] == last:
        same += 1
    return parse_ns(last), same


def end_record(container: str) -> bytes:
    return b"E\t%s\n" % container.encode()


def parse_record(raw: bytes) -> Record:
    """One record as Journal.read returns it (without its newline)."""
    if raw[:1] == b"E":
        return Record("E", raw[2:].decode())
    _, container, rest = raw.split(b"\t", 2)
    return Record("L", container.decode(), parse_ns(rest[:STAMP_LEN]), rest[STAMP_LEN + 1 :])


class JournalFull(Exception):
    """The journal reached its size bound; the reader waits until the sender catches up."""


class Journal:
    """Append-only segment files; one writer lock, any number of readers in this process."""

    def __init__(
        self, directory: Path, segment_bytes: int = SEGMENT_BYTES, max_bytes: int = 2 * 1024**3
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.changed = threading.Condition()
        segments = self.segments()
        if not segments:
            segments = [0]
            self._path(0).touch()
        self._seg = segments[-1]
        self._file = open(self._path(self._seg), "r+b")  # noqa: SIM115 - kept open for appends
        self._file.truncate(_last_complete(self._file))
        self._file.seek(0, os.SEEK_END)
        self._end: Position = (self._seg, self._file.tell())
        self._first = segments[0]

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:010d}.journal"

    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.journal"))

    def end(self) -> Position:
        with self.changed:
            return self._end

    def size(self) -> int:
        """Bytes kept on disk (segments not yet discarded)."""
        with self.changed:
            seg, off = self._end
            return (seg - self._first) * self.segment_bytes + off

    def append(self, records: Iterable[bytes]) -> Position:
        """Write whole records and make them visible to readers; the new end."""
        data = b"".join(records)
        if not data:
            return self.end()
        with self.changed:
            self._file.write(data)
            self._file.flush()
            self._end = (self._seg, self._file.tell())
            if self._end[1] >= self.segment_bytes:
                self._file.close()
                self._seg += 1
                self._file = open(self._path(self._seg), "w+b")  # noqa: SIM115
                self._end = (self._seg, 0)
            self.changed.notify_all()
            return self._end

    def full(self) -> bool:
        return self.size() >= self.max_bytes

    def read(self, pos: Position, max_bytes: int) -> tuple[list[bytes], Position]:
        """Whole records from `pos` (about `max_bytes`, at least one) up to the current end,
        without their newlines; the next position."""
        data, nxt = self.read_block(pos, max_bytes)
        return (data[:-1].split(b"\n") if data else []), nxt

    def read_block(self, pos: Position, max_bytes: int) -> tuple[bytes, Position]:
        """As read(), as the bytes of the records (each with its newline), not split."""
        end = self.end()
        out: list[bytes] = []
        taken = 0
        seg, off = pos
        while (seg, off) < end and taken < max_bytes:
            path = self._path(seg)
            limit = end[1] if seg == end[0] else path.stat().st_size
            if off >= limit:
                seg, off = seg + 1, 0
                continue
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read(min(max_bytes - taken, limit - off))
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one record longer than what is left of max_bytes
                    if out:
                        break
                    f.seek(off)
                    data = f.readline()
                    cut = len(data)
            out.append(data[:cut] if cut < len(data) else data)
            taken += cut
            off += cut
        return b"".join(out), (seg, off)

    def discard_before(self, pos: Position) -> None:
        """Delete whole segments that lie before `pos`."""
        with self.changed:
            for seg in self.segments():
                if seg < pos[0] and seg != self._seg:
                    self._path(seg).unlink(missing_ok=True)
                    self._first = max(self._first, seg + 1)

    def wait(self, pos: Position, timeout: float) -> bool:
        """Block until the journal grows past `pos` (True) or `timeout` passes (False)."""
        with self.changed:
            if self._end > pos:
                return True
            self.changed.wait(timeout)
            return self._end > pos

    def close(self) -> None:
        with self.changed:
            self._file.close()


def _last_complete(f: object) -> int:
    """Offset just after the last newline of the open file `f` (0 when none)."""
    import io

    assert isinstance(f, io.BufferedRandom)
    size = f.seek(0, os.SEEK_END)
    step = 64 * 1024
    pos = size
    while pos > 0:
        start = max(0, pos - step)
        f.seek(start)
        chunk = f.read(pos - start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0
