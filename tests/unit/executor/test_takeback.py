"""The take-back check: one list request confirms in-flight processes, lookups only for the rest."""

from __future__ import annotations

import math
import threading
from typing import Any

from kubejobs.adapters.colonies import RUNNING, WAITING, ColoniesError
from kubejobs.executor.takeback import LIST_LIMIT, ROUTINE_LOOKUPS, TakebackChecker

ME, OTHER = "exec-me", "exec-other"


class FakeColonies:
    """Processes by id; records every call so the test can count requests."""

    def __init__(self, processes: dict[str, dict[str, Any]], list_fails: bool = False) -> None:
        self.processes = processes
        self.list_fails = list_fails
        self.calls: list[tuple[Any, ...]] = []

    def get_processes(
        self, colony: str, state: int, count: int = 100, executor_type: str = ""
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", colony, state, count, executor_type))
        if self.list_fails:
            raise ColoniesError("count is larger than MaxCount")
        running = [p for p in self.processes.values() if p["state"] == state]
        return running[:count]

    def get_process(self, pid: str) -> dict[str, Any]:
        self.calls.append(("get", pid))
        if pid not in self.processes:
            raise ColoniesError("Failed to get process, process not found", 404)
        if self.processes[pid].get("broken"):
            raise ColoniesError("database error", 500)
        return self.processes[pid]


class FakeReconciler:
    def __init__(self, ids: list[str], deadlines: dict[str, float] | None = None) -> None:
        self.ids = ids
        self.deadlines = deadlines or {}
        self.posted: list[tuple[Any, ...]] = []

    def running_attempts(self) -> dict[str, int]:
        return dict.fromkeys(self.ids, 1)

    def running_deadlines(self) -> dict[str, float]:
        return {p: d for p, d in self.deadlines.items() if p in self.ids}

    def post(self, *message: Any) -> None:
        self.posted.append(message)


def proc(pid: str, state: int = RUNNING, executor: str = ME) -> dict[str, Any]:
    return {"processid": pid, "state": state, "assignedexecutorid": executor}


def checker(colonies: FakeColonies, reconciler: FakeReconciler) -> TakebackChecker:
    made = TakebackChecker(
        colonies,  # type: ignore[arg-type]
        "colony",
        "kj-type",
        ME,
        reconciler,  # type: ignore[arg-type]
        1.0,
        threading.Event(),
    )
    made.clock = lambda: NOW
    return made


def check(colonies: FakeColonies, reconciler: FakeReconciler) -> None:
    checker(colonies, reconciler).check_once()


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def timed(pid: str, maxexectime: int, started: str = "2027-01-15T07:00:00Z") -> dict[str, Any]:
    return {**proc(pid), "starttime": started, "spec": {"maxexectime": maxexectime}}


def lookups(colonies: FakeColonies) -> list[str]:
    found = [c[1] for c in colonies.calls if c[0] == "get"]
    colonies.calls.clear()
    return found


def taken_back(reconciler: FakeReconciler) -> list[str]:
    return [m[1] for m in reconciler.posted if m[0] == "takenback"]


def test_quiet_check_is_one_list_request_filtered_by_executor_type() -> None:
    colonies = FakeColonies({f"p{i}": proc(f"p{i}") for i in range(50)})
    reconciler = FakeReconciler([f"p{i}" for i in range(50)])
    check(colonies, reconciler)
    assert colonies.calls == [("list", "colony", RUNNING, LIST_LIMIT, "kj-type")]
    assert taken_back(reconciler) == []


def test_processes_back_to_waiting_elsewhere_or_removed_are_taken_back() -> None:
    colonies = FakeColonies(
        {
            "mine": proc("mine"),
            "waiting": proc("waiting", state=WAITING, executor=""),
            "moved": proc("moved", executor=OTHER),
        }
    )
    reconciler = FakeReconciler(["mine", "waiting", "moved", "removed"])
    check(colonies, reconciler)
    assert taken_back(reconciler) == ["waiting", "moved", "removed"]
    lookups = [c[1] for c in colonies.calls if c[0] == "get"]
    assert lookups == ["waiting", "moved", "removed"]


def test_processes_beyond_the_list_limit_are_looked_up_not_taken_back() -> None:
    ids = [f"p{i:03}" for i in range(LIST_LIMIT + 5)]
    colonies = FakeColonies({pid: proc(pid) for pid in ids})
    reconciler = FakeReconciler(ids)
    check(colonies, reconciler)
    assert taken_back(reconciler) == []
    assert [c[1] for c in colonies.calls if c[0] == "get"] == ids[LIST_LIMIT:]


def test_a_refused_list_falls_back_to_one_lookup_each() -> None:
    colonies = FakeColonies({"a": proc("a"), "b": proc("b", state=WAITING)}, list_fails=True)
    reconciler = FakeReconciler(["a", "b"])
    check(colonies, reconciler)
    assert taken_back(reconciler) == ["b"]
    assert [c for c in colonies.calls if c[0] == "get"] == [("get", "a"), ("get", "b")]


def test_a_server_error_on_lookup_is_not_a_take_back() -> None:
    colonies = FakeColonies({"a": {**proc("a", state=WAITING), "broken": True}})
    reconciler = FakeReconciler(["a"])
    check(colonies, reconciler)
    assert taken_back(reconciler) == []


def test_nothing_in_flight_asks_nothing() -> None:
    colonies = FakeColonies({})
    check(colonies, FakeReconciler([]))
    assert colonies.calls == []


def test_beyond_the_list_far_deadlines_take_turns_and_due_ones_are_checked_every_time() -> None:
    listed = [f"a{i:03}" for i in range(LIST_LIMIT)]
    far = [f"f{i:03}" for i in range(2 * ROUTINE_LOOKUPS)]  # no maxexectime, or hours left
    due = ["due"]  # started an hour ago with maxexectime 3610: due within the clock margin
    processes = {pid: proc(pid) for pid in listed}
    processes.update({pid: timed(pid, -1 if i % 2 else 86_400) for i, pid in enumerate(far)})
    processes["due"] = timed("due", 3610)
    colonies = FakeColonies(processes)
    reconciler = FakeReconciler(listed + far + due)
    one = checker(colonies, reconciler)
    one.check_once()
    assert lookups(colonies) == far + due  # new ones: looked up once to learn their deadlines
    one.clock = lambda: NOW + 1
    one.check_once()
    assert lookups(colonies) == due + far[:ROUTINE_LOOKUPS]
    one.clock = lambda: NOW + 2
    one.check_once()
    assert lookups(colonies) == due + far[ROUTINE_LOOKUPS:]
    # a far one taken back (removed) is noticed in its turn
    del colonies.processes[far[0]]
    one.clock = lambda: NOW + 3
    one.check_once()
    assert lookups(colonies) == due + far[:ROUTINE_LOOKUPS]
    assert taken_back(reconciler) == [far[0]]


def test_finished_processes_are_forgotten() -> None:
    colonies = FakeColonies({"a": timed("a", -1)}, list_fails=True)
    reconciler = FakeReconciler(["a"])
    one = checker(colonies, reconciler)
    one.check_once()
    assert "a" in one._deadline
    reconciler.ids = []
    one.check_once()
    assert not one._deadline and not one._looked_up  # memory follows the Jobs in flight


def test_deadlines_the_assignments_gave_spare_the_lookup_of_new_processes() -> None:
    """At 1,000 in flight every new process was looked up once only to learn its deadline
    (1.8 lookups a process, a fifth of the executor's CPU); the assignment had said it."""
    listed = [f"a{i:03}" for i in range(LIST_LIMIT)]
    far = [f"f{i:03}" for i in range(2 * ROUTINE_LOOKUPS)]
    found = ["found"]  # adopted after a restart: no assignment, deadline unknown
    processes = {pid: proc(pid) for pid in listed}
    processes.update({pid: timed(pid, -1) for pid in far + found})
    processes["due"] = timed("due", 3610)
    colonies = FakeColonies(processes)
    deadlines = {pid: math.inf for pid in far} | {"due": NOW + 10}
    reconciler = FakeReconciler(listed + far + found + ["due"], deadlines)
    one = checker(colonies, reconciler)
    one.check_once()
    assert lookups(colonies) == [*found, "due", *far[:ROUTINE_LOOKUPS]]


def test_the_reconciler_publishes_the_deadline_each_assignment_gave() -> None:
    from tests.unit.executor.test_kueue import settle
    from tests.unit.executor.test_reconcile import NAME, PID, job, reconciler

    r, _actions, admission = reconciler()
    assert admission.acquire(stop=threading.Event()) is not None
    r.post("applying", PID, NAME, False, 1000.0, 1, NOW + 600)
    r.watch_sink("Job", "ADDED", job())
    r.post("applied", PID)
    settle(r)
    r.tick()  # publishes what the take-back thread reads
    assert r.running_deadlines() == {PID: NOW + 600}
