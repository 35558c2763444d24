"""The journal, state files and batching, without servers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubejobs.inpod.batching import Batcher, LineFormat
from kubejobs.inpod.journal import Journal, Record, end_record, line_record, parse_record
from kubejobs.inpod.journal import stamp as journal_stamp
from kubejobs.inpod.state import Cursor, LogPosition, Pending, StateStore
from kubejobs.inpod.timestamps import parse_ns, to_datetime
from tests.unit.inpod.fakes import BASE_NS, stamp

OPEN: list[Journal] = []


@pytest.fixture(autouse=True)
def _close_journals() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timestamps_any_fraction_width() -> None:
    assert parse_ns(b"2023-11-14T22:13:20Z") == BASE_NS
    assert parse_ns(b"2023-11-14T22:13:20.5Z") == BASE_NS + 500_000_000
    assert parse_ns(b"2023-11-14T22:13:20.000000123Z") == BASE_NS + 123
    assert parse_ns(stamp(BASE_NS + 42)) == BASE_NS + 42
    assert parse_ns(b"2023-11-14T23:13:20.25+01:00") == BASE_NS + 250_000_000
    assert to_datetime(BASE_NS + 999).timestamp() == BASE_NS // 1_000_000_000


def test_journal_reads_across_segments_and_cuts_torn_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=100)
    OPEN.append(journal)
    records = [line_record("main", BASE_NS + i, f"line {i}".encode()) for i in range(50)]
    for i in range(0, 50, 5):
        journal.append(records[i : i + 5])
    assert len(journal.segments()) > 3
    got, pos = [], (0, 0)
    while True:
        chunk, pos = journal.read(pos, 64)
        if not chunk:
            break
        got += chunk
    assert [parse_record(r).text for r in got] == [f"line {i}".encode() for i in range(50)]
    journal.discard_before(pos)
    assert journal.segments()[0] == pos[0]
    # A crash mid-write leaves half a record: reopening cuts it off.
    journal.close()
    last = tmp_path / f"{journal.segments()[-1]:010d}.journal"
    with open(last, "ab") as f:
        f.write(b"L\tmain\t123\thalf a rec")
    reopened = Journal(tmp_path, segment_bytes=100)
    OPEN.append(reopened)
    assert reopened.end() == pos
    reopened.append([end_record("main")])
    chunk, _ = reopened.read(pos, 1000)
    assert [parse_record(r).kind for r in chunk] == ["E"]


def test_journal_hands_out_a_record_longer_than_the_budget(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    OPEN.append(journal)
    long = line_record("main", 1, b"x" * 5000)
    journal.append([long, line_record("main", 2, b"y")])
    chunk, pos = journal.read((0, 0), 100)
    assert chunk == [long[:-1]]
    chunk, _ = journal.read(pos, 100)
    assert parse_record(chunk[0]).text == b"y"


def test_line_with_tabs_and_carriage_returns_survives(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    OPEN.append(journal)
    journal.append([line_record("main", 7, b"a\tb\rc\x0cd")])
    chunk, _ = journal.read((0, 0), 1000)
    assert parse_record(chunk[0]).text == b"a\tb\rc\x0cd"


def test_cursor_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    cursor = Cursor(
        pos=(3, 10),
        positions={"main": LogPosition(5, 2, False)},
        pending=Pending("abc", (3, 99), {"main": LogPosition(9, 1, True)}, 33),
        tagged=True,
    )
    store.save(cursor)
    assert store.load() == cursor
    store.add_sent("abc")
    store.add_sent("abc")
    store.add_sent("def")
    assert store.sent_count("abc") == 2
    store.truncate_sent(4)
    assert store.sent_count("abc") == 1


def test_cursor_survives_a_crash_between_removing_and_renaming(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(Cursor(pos=(0, 1)))
    store.save(Cursor(pos=(0, 2)))
    assert not (tmp_path / "cursor.tmp").exists()
    # What save() leaves when killed after removing cursor.json, before the rename.
    (tmp_path / "cursor.json").rename(tmp_path / "cursor.tmp")
    assert store.load() == Cursor(pos=(0, 2))
    store.save(Cursor(pos=(0, 3)))
    assert store.load() == Cursor(pos=(0, 3))


def _batcher(
    tmp_path: Path,
    clock: FakeClock,
    expected: tuple[str, ...] = ("main",),
    tagged: bool = False,
    max_bytes: int = 1000,
) -> tuple[Journal, Batcher]:
    journal = Journal(tmp_path / "j")
    OPEN.append(journal)
    return journal, Batcher(
        journal,
        (0, 0),
        {},
        expected,
        LineFormat(tagged, "2"),
        max_bytes=max_bytes,
        linger=0.5,
        clock=clock,
    )


def test_batches_are_bounded_by_size(tmp_path: Path) -> None:
    clock = FakeClock()
    journal, batcher = _batcher(tmp_path, clock)
    journal.append([line_record("main", BASE_NS + i, b"%05d" % i + b"." * 44) for i in range(100)])
    journal.append([end_record("main")])
    batches = []
    while (batch := batcher.next()) is not None:
        batches.append(batch)
    assert all(len(b.text.encode()) <= 1000 for b in batches)
    text = "".join(b.text for b in batches)
    assert text.splitlines() == [f"{i:05d}" + "." * 44 for i in range(100)]
    assert batches[-1].positions["main"] == LogPosition(BASE_NS + 99, 1, True)


def test_a_small_batch_waits_for_linger_then_goes(tmp_path: Path) -> None:
    clock = FakeClock()
    journal, batcher = _batcher(tmp_path, clock)
    journal.append([line_record("main", 1, b"hello")])
    waits = []

    def stop() -> bool:
        waits.append(clock.now)
        clock.now += 0.2
        return False

    batch = batcher.next(stop)
    assert batch is not None and batch.text == "hello\n"
    assert clock.now >= 0.5 and len(waits) >= 2


def test_all_logs_complete_flushes_at_once_and_then_ends(tmp_path: Path) -> None:
    clock = FakeClock()
    journal, batcher = _batcher(tmp_path, clock, expected=("a", "b"), tagged=True)
    journal.append(
        [
            line_record("a", 1, b"from a"),
            end_record("a"),
            line_record("b", 2, b"from b"),
            end_record("b"),
        ]
    )
    batch = batcher.next()
    assert batch is not None
    assert batch.text == "[2/a] from a\n[2/b] from b\n"
    assert batcher.next() is None


def test_positions_of_runs_match_line_by_line(tmp_path: Path) -> None:
    # Runs of one container's records are taken at once; each batch's positions must be what
    # advancing line by line gives: repeated, interleaved and even decreasing timestamps.
    rng = random.Random(7)
    clock = FakeClock()
    journal, batcher = _batcher(tmp_path, clock, expected=("a", "b"), tagged=True, max_bytes=300)
    lines: list[tuple[str, int, bytes]] = []
    for group in range(60):
        name = rng.choice("ab")
        base = BASE_NS + group // 3 * 10
        run = [
            (name, base + rng.choice([0, 0, 1, 2]), b"%s%d" % (name.encode(), len(lines) + i))
            for i in range(rng.randint(1, 12))
        ]
        lines += run
        journal.append([line_record(n, ns, t) for n, ns, t in run])
    journal.append([end_record("a"), end_record("b")])
    shipped: list[str] = []
    while (batch := batcher.next()) is not None:
        shipped += batch.text.splitlines()
        expected: dict[str, LogPosition] = {}
        for name, ns, _ in lines[: len(shipped)]:
            expected.setdefault(name, LogPosition()).advance(ns)
        got = {k: LogPosition(v.ns, v.same) for k, v in batch.positions.items()}
        assert got == expected
    assert shipped == [f"[2/{n}] {t.decode()}" for n, _, t in lines]
    assert batch is None and batcher.positions["a"].done and batcher.positions["b"].done


def test_journal_stamps_are_fixed_width_utc() -> None:
    assert stamp(BASE_NS) == b"2023-11-14T22:13:20.000000000Z"
    assert journal_stamp(BASE_NS + 5) == b"2023-11-14T22:13:20.000000005Z"
    assert journal_stamp(1) == b"1970-01-01T00:00:00.000000001Z"
    assert parse_record(line_record("m", BASE_NS + 7, b"x y")[:-1]) == Record(
        "L", "m", BASE_NS + 7, b"x y"
    )
