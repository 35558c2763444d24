"""Followers, delivery and the whole shipper against a fake pod and a fake Colonies log."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubejobs.inpod.journal import Journal, Record, parse_record
from kubejobs.inpod.logsource import Follower, container_state
from kubejobs.inpod.shipper import Shipper, ShipperOptions
from kubejobs.inpod.state import LogPosition
from tests.unit.inpod.fakes import BASE_NS, Crash, FakePod, FakeSink, stamp

OPTIONS = ShipperOptions(max_batch_bytes=2000, linger=0.05, poll=0.01, idle_timeout=0.01)


def _expected(pod: FakePod, container: str, prefix: str = "") -> list[str]:
    return [prefix + text.decode() for _, text in pod.lines[container]]


def _shipper(
    pod: FakePod,
    sink: FakeSink,
    state: Path,
    first: tuple[str, ...] = (),
    containers: tuple[str, ...] = ("main",),
    tagged: bool = False,
) -> Shipper:
    return Shipper(
        pod,
        sink,
        state,
        "pid",
        "colony",
        first=first,
        containers=containers,
        rank="0",
        tagged=lambda: tagged,
        options=OPTIONS,
    )


def test_container_state_reads_init_and_main_statuses() -> None:
    pod = {
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "s", "state": {"terminated": {}}}],
            "containerStatuses": [{"name": "m", "state": {"waiting": {}}}],
        }
    }
    assert container_state(pod, "s") == "terminated"
    assert container_state(pod, "m") == "waiting"
    assert container_state({"status": {"phase": "Failed"}}, "m") == "never"


def test_a_container_not_started_in_a_pod_being_deleted_will_never_run() -> None:
    pod = {
        "metadata": {"deletionTimestamp": "2026-12-05T17:00:00Z"},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "stager", "state": {"running": {}}}],
            "containerStatuses": [{"name": "main", "state": {"waiting": {}}}],
        },
    }
    assert container_state(pod, "main") == "never"
    assert container_state(pod, "stager") == "running"  # still followed to its end


def test_follower_reconnects_without_loss_or_duplicates(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    pod.state["main"] = "running"
    pod.write("main", [f"a{i}" for i in range(30)])
    pod.write("main", ["same"] * 25, same_ts=True)  # many lines with one timestamp
    pod.fail_next_streams = 3
    journal = Journal(tmp_path)
    stop = threading.Event()
    follower = Follower(
        "main",
        pod,
        journal,
        LogPosition(),
        stop,
        poll=0.001,
        idle_timeout=0.001,
        sleep=lambda s: None,
    )
    thread = threading.Thread(target=follower.run)
    thread.start()
    pod.write("main", [f"b{i}" for i in range(40)])
    with pod.lock:
        pod.state["main"] = "terminated"
    thread.join(timeout=30)
    assert not thread.is_alive()
    records, _ = journal.read((0, 0), 10**9)
    journal.close()
    parsed = [parse_record(r) for r in records]
    assert [r.text.decode() for r in parsed if r.kind == "L"] == _expected(pod, "main")
    assert parsed[-1].kind == "E"
    assert pod.streams > 2


def test_ships_everything_in_order_with_tags(tmp_path: Path) -> None:
    pod = FakePod(["kubejobs-data-stager", "a", "b"])
    pod.write("kubejobs-data-stager", ["stage-in: done"])
    pod.write("a", [f"a{i}" for i in range(500)])
    pod.write("b", [f"b{i}" for i in range(500)])
    pod.state = dict.fromkeys(pod.state, "terminated")
    sink = FakeSink()
    result = _shipper(
        pod, sink, tmp_path, first=("kubejobs-data-stager",), containers=("a", "b"), tagged=True
    ).run()
    assert result.complete and result.delivered_lines == 1001
    lines = sink.text().splitlines()
    assert lines[0] == "[0/kubejobs-data-stager] stage-in: done"
    for name in ("a", "b"):
        assert [x for x in lines if x.startswith(f"[0/{name}]")] == _expected(
            pod, name, f"[0/{name}] "
        )
    assert all(len(m.encode()) <= 2000 for m in sink.messages)


@pytest.mark.parametrize("crash", ["after_send", "before_send"])
def test_restart_after_a_kill_resumes_without_loss_or_duplicates(
    tmp_path: Path, crash: str
) -> None:
    pod = FakePod(["main"])
    # Repeated identical lines make identical batches: recovery must count, not just look.
    pod.write("main", ["tick"] * 2000)
    pod.write("main", [f"line {i}" for i in range(2000)])
    pod.state["main"] = "terminated"
    sink = FakeSink()
    if crash == "after_send":
        sink.crash_after = 3
    else:
        sink.crash_before = 3
    with pytest.raises(Crash):
        _shipper(pod, sink, tmp_path).run()
    result = _shipper(pod, sink, tmp_path).run()
    assert result.complete
    assert sink.text().splitlines() == _expected(pod, "main")
    # A third start finds the work finished.
    assert _shipper(pod, sink, tmp_path).run().complete
    assert sink.text().splitlines() == _expected(pod, "main")


def test_server_outage_is_ridden_out(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    pod.write("main", [f"x{i}" for i in range(300)])
    pod.state["main"] = "terminated"
    sink = FakeSink()
    sink.down_calls = 3
    result = _shipper(pod, sink, tmp_path).run()
    assert result.complete
    assert sink.text().splitlines() == _expected(pod, "main")
    assert sink.calls == len(sink.messages) + 3


def test_a_shipper_out_of_time_says_why_and_with_which_grace_period(tmp_path: Path) -> None:
    """Its reason reaches the executor's note (the pod's own log goes with the pod): the soak
    saw only 'see the messages above' for a shipper that gave up during an outage."""
    pod = FakePod(["main"])
    pod.write("main", ["x"] * 10)
    pod.state["main"] = "terminated"
    sink = FakeSink()
    sink.down_calls = 10**6  # the server never comes back
    shipper = Shipper(
        pod, sink, tmp_path, "pid", "colony", first=(), containers=("main",), rank="0",
        tagged=lambda: False,
        options=ShipperOptions(
            max_batch_bytes=2000, linger=0.05, poll=0.01, idle_timeout=0.01,
            grace_seconds=2.0, grace_margin=0.5,
        ),
    )  # fmt: skip
    shipper.terminate()
    result = shipper.run()
    assert not result.complete
    assert "the termination deadline passed" in result.reason, result.reason
    assert "grace period: 2 s" in result.reason, result.reason


def test_a_batch_whose_answer_was_lost_is_not_sent_again(tmp_path: Path) -> None:
    """The server stored a batch but its answer never came (its TLS front end restarted
    mid-request): the retry must not store it a second time (found by the chaos soak: a
    line twice in a process log)."""
    pod = FakePod(["main"])
    pod.write("main", ["tick"] * 1000)  # identical batches: the check counts, not looks up
    pod.write("main", [f"line {i}" for i in range(1000)])
    pod.state["main"] = "terminated"
    sink = FakeSink()
    sink.lose_answers = {2, 3, 6}
    result = _shipper(pod, sink, tmp_path).run()
    assert result.complete
    assert sink.text().splitlines() == _expected(pod, "main")


def test_a_container_that_never_ran_completes_its_log(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    original = pod.pod

    def finished_pod() -> dict[str, object]:
        status = original()
        status["status"]["phase"] = "Failed"  # type: ignore[index]
        return status

    pod.pod = finished_pod  # type: ignore[method-assign]
    sink = FakeSink()
    assert _shipper(pod, sink, tmp_path).run().complete
    assert sink.messages == []


def test_follower_parses_every_timestamp_width(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    follower = Follower("main", FakePod(["main"]), journal, LogPosition(), threading.Event())
    follower._copy(
        [
            [
                b"2023-11-14T22:13:20.5Z a",
                b"2023-11-14T22:13:20.123Z b",
                b"2023-11-14T22:13:20Z c",
                b"2023-11-14T22:13:20.000000007Z d",
                b"2023-11-14T22:13:21.1Z e",
                b"no timestamp",
            ]
        ]
    )
    records, _ = journal.read((0, 0), 10**6)
    journal.close()
    base = 1_700_000_000 * 10**9
    assert [(parse_record(r).ns - base, parse_record(r).text) for r in records] == [
        (500_000_000, b"a"),
        (123_000_000, b"b"),
        (0, b"c"),
        (7, b"d"),
        (1_100_000_000, b"e"),
        (1_100_000_000, b"no timestamp"),
    ]


def test_follower_journals_whole_chunks_with_the_position_of_every_line(tmp_path: Path) -> None:
    # Chunks of kubelet lines are journaled as they come; the position (last ns and how many
    # lines had it) must be what advancing line by line gives, also across chunk boundaries.
    times = [BASE_NS + t for t in [0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 4, 5, 5]]
    lines = [stamp(ns) + b" line %d" % i for i, ns in enumerate(times)]
    for size in (1, 3, 4, 16):
        journal = Journal(tmp_path / str(size))
        follower = Follower("main", FakePod(["main"]), journal, LogPosition(), threading.Event())
        positions: list[LogPosition] = []

        follower._copy(
            _watching(follower, positions, [lines[i : i + size] for i in range(0, 16, size)])
        )
        records, _ = journal.read((0, 0), 10**6)
        journal.close()
        for n, position in enumerate(positions):
            expected = LogPosition()
            for ns in times[: (n + 1) * size]:
                expected.advance(ns)
            assert position == expected
        assert [parse_record(r) for r in records] == [
            Record("L", "main", ns, b"line %d" % i) for i, ns in enumerate(times)
        ]


def _watching(
    follower: Follower, positions: list[LogPosition], chunks: list[list[bytes]]
) -> Iterator[list[bytes]]:
    """`chunks`, noting the follower's position after it took each one."""
    for chunk in chunks:
        yield chunk
        positions.append(copy.copy(follower.position))


def test_a_container_stopped_in_a_pod_being_deleted_is_finished_without_its_status(
    tmp_path: Path,
) -> None:
    # The kubelet posts no status while it kills the pod's containers, the shipper among
    # them: a following stream that ends by itself is the sign the container has stopped.
    pod = FakePod(["kubejobs-data-stager"])
    pod.state["kubejobs-data-stager"] = "running"
    pod.write("kubejobs-data-stager", ["downloading", "stopped by SIGTERM"])
    pod.deleting = True
    pod.stopped_unposted.add("kubejobs-data-stager")
    journal = Journal(tmp_path / "journal")
    follower = Follower(
        "kubejobs-data-stager", pod, journal, LogPosition(), threading.Event(), poll=0.001
    )
    done = threading.Thread(target=follower.run, daemon=True)
    done.start()
    done.join(timeout=10)
    journal.close()
    assert not done.is_alive() and follower.position.done
    assert follower.lines == 2  # each line once: the final read skips what it already has


def test_what_a_shipper_that_gave_up_says_puts_the_output_first() -> None:
    from kubejobs.inpod.command import incomplete
    from kubejobs.process_io import OUTPUT_LOST, OUTPUT_SET

    assert incomplete("why", 0, False) == "not every log line was delivered: why"
    assert incomplete("why", 0, True).startswith(OUTPUT_LOST)
    assert incomplete("why", 2, True) == f"{OUTPUT_SET}2 file(s); then why"
