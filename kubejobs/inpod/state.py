"""The shipper's durable state: what has reached the Colonies server, and where each container's log stands.

`cursor.json` (replaced atomically) holds the journal position up to which
everything was delivered, each container's log position as of that point
(timestamp in ns, how many lines carried that timestamp, whether the log is
complete) and, while a batch is in flight, that batch's hash and end. A crash
between sending a batch and committing it leaves `pending` set; on restart the
server's log tells whether the batch arrived (see delivery.py).

`sent.log` lists the hash of every delivered batch, one per line, so recovery
can tell a pending batch from an earlier batch with the same text.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubejobs.inpod.journal import Position


@dataclass
class LogPosition:
    """How far one container's log was read: the last timestamp and how many lines had exactly it."""

    ns: int = 0
    same: int = 0
    done: bool = False

    def advance(self, ns: int) -> None:
        if ns == self.ns:
            self.same += 1
        else:
            self.ns, self.same = ns, 1

    def advance_run(self, ns: int, same: int, count: int) -> None:
        """advance() over `count` lines at once, the last `same` of which (and no earlier one
        right before them) carry `ns`."""
        if same == count and ns == self.ns:
            self.same += same
        else:
            self.ns, self.same = ns, same


@dataclass
class Pending:
    hash: str
    end: Position
    positions: dict[str, LogPosition]
    sent_len: int


@dataclass
class Cursor:
    pos: Position = (0, 0)
    positions: dict[str, LogPosition] = field(default_factory=dict)
    pending: Pending | None = None
    tagged: bool | None = None  # decided once, so a restart formats lines the same way
    finished: bool = False  # everything shipped and fs.dirs synced
    delivered_lines: int = 0
    dropped_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        def positions(raw: dict[str, Any]) -> dict[str, LogPosition]:
            return {k: LogPosition(**v) for k, v in raw.items()}

        pending = data.get("pending")
        return cls(
            pos=tuple(data.get("pos", (0, 0))),
            positions=positions(data.get("positions", {})),
            pending=None
            if not pending
            else Pending(
                hash=pending["hash"],
                end=tuple(pending["end"]),
                positions=positions(pending["positions"]),
                sent_len=int(pending["sent_len"]),
            ),
            tagged=data.get("tagged"),
            finished=bool(data.get("finished", False)),
            delivered_lines=int(data.get("delivered_lines", 0)),
            dropped_lines=int(data.get("dropped_lines", 0)),
        )


class StateStore:
    """The files under KUBEJOBS_STATE_DIR/shipper."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cursor_path = self.dir / "cursor.json"
        self._tmp_path = self.dir / "cursor.tmp"
        self.sent_path = self.dir / "sent.log"
        self.journal_dir = self.dir / "journal"

    def load(self) -> Cursor:
        # cursor.tmp is complete whenever cursor.json is missing (see save()).
        for path in (self.cursor_path, self._tmp_path):
            try:
                return Cursor.from_json(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue
        return Cursor()

    def save(self, cursor: Cursor) -> None:
        """Replace cursor.json, twice per batch: the new one is written whole to cursor.tmp
        first. The old one is removed before the rename rather than renamed over: renaming
        over a file makes ext4 (auto_da_alloc) write the new one out first, about 1 ms on
        the sending path each time. A crash between the two leaves only cursor.tmp, whole."""
        self._tmp_path.write_text(
            json.dumps(cursor.to_json(), separators=(",", ":")), encoding="utf-8"
        )
        self.cursor_path.unlink(missing_ok=True)
        os.rename(self._tmp_path, self.cursor_path)

    # sent.log ---------------------------------------------------------------

    def sent_len(self) -> int:
        try:
            return self.sent_path.stat().st_size
        except FileNotFoundError:
            return 0

    def add_sent(self, digest: str) -> None:
        with open(self.sent_path, "a", encoding="ascii") as f:
            f.write(digest + "\n")

    def truncate_sent(self, length: int) -> None:
        if self.sent_len() > length:
            with open(self.sent_path, "r+b") as f:
                f.truncate(length)

    def sent_count(self, digest: str) -> int:
        try:
            with open(self.sent_path, encoding="ascii") as f:
                return sum(1 for line in f if line.rstrip("\n") == digest)
        except FileNotFoundError:
            return 0
