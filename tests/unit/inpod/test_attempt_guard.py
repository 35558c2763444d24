"""The shipper's attempt guard: a taken-back attempt's late lines, output and sync never land."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.colonies import (
    RUNNING,
    WAITING,
    ColoniesError,
    ColoniesUnavailable,
    assignment_deadline,
)
from kubejobs.inpod.attempt import AttemptGuard
from kubejobs.inpod.config import PodEnv
from kubejobs.inpod.shipper import Shipper, ShipperOptions
from tests.unit.inpod.fakes import FakePod, FakeSink

OPTIONS = ShipperOptions(max_batch_bytes=200, linger=0.01, poll=0.01, idle_timeout=0.01)
STARTED = "2027-01-15T08:00:00.123456789Z"
START = 1_800_000_000.123456


def process(retries: int = 0, state: int = RUNNING, maxexectime: int = 6) -> dict[str, Any]:
    return {
        "state": state,
        "retries": retries,
        "starttime": STARTED,
        "spec": {"maxexectime": maxexectime},
    }


class Server:
    """The process as the server has it; counts lookups."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc or process()
        self.reads = 0
        self.error: ColoniesError | None = None

    def read(self) -> dict[str, Any]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return dict(self.doc)


def test_the_deadline_is_start_plus_maxexectime_with_nanoseconds() -> None:
    assert assignment_deadline(process()) == pytest.approx(START + 6, abs=1e-5)
    assert assignment_deadline(process(maxexectime=-1)) == math.inf
    assert assignment_deadline(
        {"starttime": "0001-01-01T00:00:00Z", "spec": {"maxexectime": 5}}
    ) == (math.inf)


def test_far_from_the_deadline_the_server_is_asked_once() -> None:
    server, now = Server(process(maxexectime=3600)), [START]
    guard = AttemptGuard(server.read, 1, margin=10.0, clock=lambda: now[0])
    assert guard.current() and server.reads == 1
    now[0] += 3000
    assert guard.current() and server.reads == 1
    now[0] += 595  # within the margin of the deadline: every batch asks
    assert guard.current() and guard.current() and server.reads == 3
    assert guard.current(fresh=True) and server.reads == 4  # before the output and sync


def test_with_an_optional_recheck_far_from_the_deadline_it_asks_that_often() -> None:
    server, now = Server(process(maxexectime=3600)), [START]
    guard = AttemptGuard(server.read, 1, recheck=5.0, margin=10.0, clock=lambda: now[0])
    assert guard.current() and server.reads == 1
    now[0] += 4
    assert guard.current() and server.reads == 1
    now[0] += 2
    assert guard.current() and server.reads == 2


@pytest.mark.parametrize(
    "doc",
    [
        process(maxexectime=-1),  # no maxexectime: no take-back
        {**process(retries=2), "spec": {"maxexectime": 6, "maxretries": 2}},  # the last attempt
        {**process(), "spec": {"maxexectime": 6, "maxretries": 0}},  # the only attempt
    ],
)
def test_when_no_attempt_can_follow_only_the_first_batch_and_the_output_ask(
    doc: dict[str, Any],
) -> None:
    server, now = Server(doc), [START]
    attempt = doc["retries"] + 1
    guard = AttemptGuard(server.read, attempt, margin=10.0, clock=lambda: now[0])
    for _ in range(5):
        assert guard.current()
        now[0] += 30  # past the deadline too: the server fails it and refuses its lines
    assert server.reads == 1
    assert guard.current(fresh=True) and server.reads == 2


def test_near_the_deadline_every_batch_asks_and_a_take_back_ends_the_attempt() -> None:
    server, now = Server(), [START]
    guard = AttemptGuard(server.read, 1, clock=lambda: now[0])  # deadline 6 s, margin 10 s
    assert guard.current() and guard.current() and server.reads == 2
    server.doc = process(retries=1)  # taken back and assigned again (to this executor)
    assert not guard.current()
    assert guard.over == "attempt 1 is over: the process is in attempt 2"
    server.doc = process(retries=0)
    assert not guard.current() and server.reads == 3  # over stays over, without asking


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (process(retries=1, state=WAITING), "WAITING after 1 retries"),
        (process(retries=2, state=3), "FAILED after 2 retries"),
    ],
)
def test_a_process_waiting_or_failed_is_not_in_the_attempt(doc: dict[str, Any], why: str) -> None:
    guard = AttemptGuard(Server(doc).read, 2 if doc["retries"] == 1 else 3)
    assert not guard.current() and why in guard.over


def test_a_removed_process_ends_it_and_an_outage_says_nothing() -> None:
    server = Server()
    guard = AttemptGuard(server.read, 1)
    server.error = ColoniesUnavailable("down")
    with pytest.raises(ColoniesUnavailable):
        guard.current()
    server.error = ColoniesError("database error", 500)
    with pytest.raises(ColoniesUnavailable):  # retried, not taken as the end
        guard.current()
    server.error = ColoniesError("not found", 404)
    assert not guard.current()


def test_the_attempt_comes_from_the_environment_and_absent_means_one() -> None:
    env = {
        "COLONIES_SERVER_HOST": "h",
        "COLONIES_SERVER_PORT": "1",
        "COLONIES_COLONY_NAME": "c",
        "COLONIES_PROCESS_ID": "p",
        "COLONIES_PRVKEY": "k",
    }
    assert PodEnv.from_environ(env, need_pod=False).attempt == 1
    assert PodEnv.from_environ({**env, "KUBEJOBS_ATTEMPT": "3"}, need_pod=False).attempt == 3


def shipper(
    pod: FakePod, sink: FakeSink, state: Path, server: Server, closed: list[str]
) -> Shipper:
    return Shipper(
        pod,
        sink,
        state,
        "pid",
        "colony",
        first=(),
        containers=("main",),
        on_close=lambda: closed.append("closed"),
        options=OPTIONS,
        guard=AttemptGuard(server.read, 1, recheck=0.0),
    )


def test_lines_after_the_take_back_are_not_shipped_and_nothing_is_closed(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    pod.write("main", ["attempt-starts"])
    pod.state["main"] = "running"
    server, sink, closed = Server(), FakeSink(), []

    class TakenBackAfterFirstLine(FakeSink):
        def add_log(self, process_id: str, message: str) -> None:
            super().add_log(process_id, message)
            server.doc = process(retries=1)  # the server moves on; the program prints on
            pod.write("main", ["never"])
            pod.state["main"] = "terminated"

    sink = TakenBackAfterFirstLine()
    result = shipper(pod, sink, tmp_path, server, closed).run()
    assert sink.text() == "attempt-starts\n"
    assert result.superseded.startswith("attempt 1 is over: the process is in attempt 2")
    assert not result.complete and closed == []


def test_a_current_attempt_ships_everything_then_closes(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    pod.write("main", [f"line {i}" for i in range(50)])
    pod.state["main"] = "terminated"
    server, sink, closed = Server(), FakeSink(), []
    result = shipper(pod, sink, tmp_path, server, closed).run()
    assert result.complete and not result.superseded and closed == ["closed"]
    assert sink.text().splitlines() == [f"line {i}" for i in range(50)]


def test_the_attempt_ending_after_the_last_line_stops_output_and_sync(tmp_path: Path) -> None:
    pod = FakePod(["main"])
    pod.write("main", ["done"])
    pod.state["main"] = "terminated"
    server, closed = Server(), []

    class TakenBackAfterDelivery(FakeSink):
        def add_log(self, process_id: str, message: str) -> None:
            super().add_log(process_id, message)
            server.doc = process(retries=1, state=WAITING)

    sink = TakenBackAfterDelivery()
    result = shipper(pod, sink, tmp_path, server, closed).run()
    assert sink.text() == "done\n" and closed == [] and "WAITING" in result.superseded
