"""An assign that fails after the server assigned (its database first, its reply after) loses
nothing: once the server answers again the worker finds the process and starts it, once.

The fake server below does what v1.9.7 did in a parallel test run: it assigned the root of a
workflow still being submitted, then panicked resolving the graph and answered HTTP 500. The
same path against the real server: tests/integration/test_lost_assignment.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubejobs.adapters.colonies import RUNNING, ColoniesError
from kubejobs.executor import assign
from kubejobs.executor.admission import Admission
from kubejobs.executor.assign import AssignWorker, Busy, Claims, Context

ME = "me-id"


class Server:
    """assign: the first call assigns P and fails; later calls find nothing, and the third stops
    the worker. get_processes lists what is RUNNING."""

    def __init__(self, stop: threading.Event, lost: dict[str, Any]) -> None:
        self.stop = stop
        self.lost = lost
        self.running: list[dict[str, Any]] = []
        self.calls = 0

    def assign(self, *args: Any) -> dict[str, Any] | None:
        self.calls += 1
        if self.calls == 1:
            self.running.append(self.lost)
            raise ColoniesError("Colonies server answered HTTP 500", 500)
        if self.calls >= 3:
            self.stop.set()
        return None

    def get_processes(self, colony: str, state: int, count: int, executor_type: str) -> Any:
        assert state == RUNNING
        return list(self.running)


class Reconciler:
    """What the reconciler knows: a flight per process, of one attempt."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def known(self, pid: str, attempt: int | None = None) -> bool:
        return pid in self.ids and attempt in (None, self.ids[pid])


class Settings:
    colony_name = "c"
    executor_type = "t"
    assign_timeout = 1
    colonies_timeout = 1
    keepalive_seconds = None


def process(pid: str, executor: str = ME, retries: int = 0) -> dict[str, Any]:
    """A process as the server lists it: RUNNING on `executor` in attempt retries + 1."""
    return {"processid": pid, "assignedexecutorid": executor, "retries": retries, "state": RUNNING}


def context(server: Server, stop: threading.Event) -> Context:
    return Context(
        Settings(),  # type: ignore[arg-type]
        "ns",
        server,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Admission(10),
        Reconciler(),  # type: ignore[arg-type]
        _Metrics(),  # type: ignore[arg-type]
        stop,
        threading.Event(),
        ME,
    )


class _Counter:
    def labels(self, **_: Any) -> _Counter:
        return self

    def inc(self) -> None:
        pass


class _Metrics:
    api_errors = _Counter()
    assigned = _Counter()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    found: list[str] = []
    monkeypatch.setattr(
        assign, "start_process", lambda ctx, p, reserved: found.append(p["processid"])
    )
    monkeypatch.setattr(assign.Backoff, "wait", lambda self, stop: stop.is_set())
    return found


def test_a_process_assigned_by_a_failed_assign_is_started_once_the_server_answers(
    started: list[str],
) -> None:
    stop = threading.Event()
    server = Server(stop, process("p1"))
    AssignWorker(context(server, stop), 0, Busy()).run()
    assert started == ["p1"]


def test_recovery_leaves_alone_what_another_executor_runs_or_this_one_knows(
    started: list[str],
) -> None:
    stop = threading.Event()
    server = Server(stop, process("other", executor="x"))
    ctx = context(server, stop)
    ctx.reconciler.ids["known"] = 1  # type: ignore[attr-defined]
    server.running.append(process("known"))
    AssignWorker(ctx, 0, Busy()).run()
    assert started == []


def test_a_later_attempt_is_started_though_an_earlier_ones_job_is_still_here(
    started: list[str],
) -> None:
    # taken back and assigned here again, that reply lost: the earlier attempt's flight
    # (its Job not yet gone, or found at a restart) does not stand for the new attempt
    stop = threading.Event()
    ctx = context(Server(stop, process("p3", retries=1)), stop)
    ctx.reconciler.ids["p3"] = 1  # type: ignore[attr-defined]
    AssignWorker(ctx, 0, Busy()).run()
    assert started == ["p3"]


def test_a_process_a_worker_was_just_given_is_not_started_again_by_a_recovery(
    started: list[str],
) -> None:
    stop = threading.Event()
    given = process("p2")
    ctx = context(Server(stop, given), stop)
    assert assign.claim(ctx, given)  # what a worker does on receiving it
    ctx.colonies.running.append(given)  # type: ignore[attr-defined]
    assign.recover_unapplied(ctx)
    assert started == []
    # its next attempt is another start
    assert assign.claim(ctx, process("p2", retries=1))


def test_claims_no_longer_needed_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # known to the reconciler (it protects the process), or older than any start takes
    monkeypatch.setattr(assign, "CLAIMS_PRUNE_AT", 3)
    now = [0.0]
    claims = Claims(clock=lambda: now[0])
    for pid in ("a", "b", "c"):
        assert claims.claim(pid, 1, lambda _: False)
    now[0] = 10.0
    assert claims.claim("d", 1, lambda pid: pid in {"a", "b"})
    assert claims.claim("a", 1, lambda _: False)  # dropped: known then, so a new claim
    assert not claims.claim("c", 1, lambda _: False)
    now[0] += assign.CLAIM_SECONDS
    assert claims.claim("e", 1, lambda _: False)  # prunes c, d and a: too old
    assert claims.claim("c", 1, lambda _: False)


def test_a_recovery_waits_for_an_assign_under_way_so_its_worker_starts_what_it_brought(
    started: list[str],
) -> None:
    # The soak's fan-in child: the server had marked it RUNNING on this executor (its input not
    # yet set: v1.9.7 sets it before it replies) when another worker's recovery listed it.
    stop = threading.Event()
    given = process("p4")
    ctx = context(Server(stop, given), stop)
    ctx.colonies.running.append(given)  # type: ignore[attr-defined]
    results: list[bool] = []
    with ctx.assigns.request():  # a worker's assign: the server assigned, the reply is on its way
        recovery = threading.Thread(target=lambda: results.append(assign.recover_unapplied(ctx)))
        recovery.start()
        recovery.join(0.5)
        assert recovery.is_alive(), "the recovery did not wait for the assign under way"
        assert started == []
        assert assign.claim(ctx, given)  # the reply arrives: the worker claims it
    recovery.join(5)
    assert results == [True]
    assert started == []  # the worker starts it, not the recovery


def test_a_recovery_that_cannot_wait_for_the_assigns_is_tried_again_later(
    started: list[str],
) -> None:
    stop = threading.Event()
    ctx = context(Server(stop, process("p5")), stop)
    ctx.colonies.running.append(process("p5"))  # type: ignore[attr-defined]
    with ctx.assigns.request():
        assert not ctx.assigns.settle(0.2, stop)
    stop.set()
    with ctx.assigns.request():
        assert not assign.recover_unapplied(ctx)  # stopping: it does not wait
    assert started == []
    assert ctx.assigns.settle(0.2, threading.Event())  # nothing under way
