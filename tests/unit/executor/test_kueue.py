"""The executor under Kueue: waiting is not failing, admission and preemption are logged, refusals fail.

The Workload dicts follow what Kueue v0.17 writes (checked against the real Kueue in
tests/integration/test_kueue_executor.py); the reconciler runs with recorded effects.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubejobs.executor import kueue
from kubejobs.executor.admission import Admission, Request
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome, Timeouts
from kubejobs.executor.reconcile import FINISHED, REPORTING, RUNNING, Reconciler
from tests.unit.executor.test_reconcile import NAME, PID, job
from tests.unit.executor.test_reconcile import Recorded as RecordedEffects

PENDING = (
    "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor "
    "default-flavor, 1 more needed"
)
TOO_BIG = (
    "couldn't assign flavors to pod set main: insufficient quota for cpu in flavor default-flavor,"
    " previously considered podsets requests (0) + current podset request (8) > maximum capacity (4)"
)


class Recorded(RecordedEffects):
    def notes(self) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "note"]

    def reports(self) -> list[Outcome]:
        return [c[2] for c in self.calls if c[0] == "report"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queued_job(suspend: bool, started: bool = True, **status: Any) -> dict[str, Any]:
    j = job(**status)
    j["metadata"]["labels"] = {kueue.QUEUE_LABEL: "team-a"}
    j["metadata"]["creationTimestamp"] = "2026-12-05T10:00:00Z"
    j["metadata"]["uid"] = "u1"
    j["spec"]["suspend"] = suspend
    if not suspend and started:
        j["status"]["startTime"] = "2026-12-05T10:00:05Z"  # the Job controller's, on resume
    return j


def workload(*conditions: dict[str, Any], active: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "job-" + NAME + "-1a2b3",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": NAME}],
        },
        "spec": {"active": active, "queueName": "team-a"},
        "status": {"conditions": list(conditions), "admission": {"clusterQueue": "cq"}},
    }


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def setup(max_queued: int = 2) -> tuple[Reconciler, Recorded, Admission, Clock]:
    actions, clock = Recorded(), Clock()
    admission = Admission(10, max_queued=max_queued)
    r = Reconciler(
        "e", admission, actions, Metrics(), Timeouts(start=60), 0, workers=1, clock=clock
    )
    for kind in ("Pod", "Job", "Workload"):
        r.watch_sink(kind, "SYNC", [])
    r.drain()
    assert admission.acquire(stop=_never()) is not None
    admission.commit(NAME, Request())
    r.post("applying", PID, NAME, False, clock.now)
    r.watch_sink("Job", "ADDED", queued_job(True))
    r.post("applied", PID)
    settle(r)
    return r, actions, admission, clock


def _never() -> Any:
    import threading

    return threading.Event()


def settle(r: Reconciler) -> None:
    # drain, then wait for the side effects it started: done when they posted nothing more
    for _ in range(20):
        r.drain()
        r._pool.shutdown(wait=True)
        r._notes.shutdown(wait=True)
        r._pool = ThreadPoolExecutor(max_workers=1)
        r._notes = ThreadPoolExecutor(max_workers=1)
        if r.inbox.empty():
            return


def test_a_suspended_job_waits_past_the_start_timeout_and_says_once_why() -> None:
    r, actions, admission, clock = setup()
    clock.now += 3600  # far past start_timeout: a suspended Job has no pods, by design
    r.watch_sink("Workload", "ADDED", workload(cond("QuotaReserved", "False", "Pending", PENDING)))
    r.tick()
    r.watch_sink(
        "Workload", "MODIFIED", workload(cond("QuotaReserved", "False", "Pending", PENDING))
    )
    settle(r)
    r.tick()
    assert actions.reports() == []
    assert r.flights[PID].phase == RUNNING
    assert actions.notes() == [f"kubejobs: queued in Kueue LocalQueue team-a: {PENDING}"]
    assert admission.queued == 1


def test_admission_is_logged_frees_the_queued_slot_and_the_start_timeout_counts_from_it() -> None:
    r, actions, admission, clock = setup()
    clock.now += 12.5
    admitted = queued_job(False)
    admitted["status"]["startTime"] = "2026-12-05T11:00:00Z"  # after the wait
    r.watch_sink("Workload", "MODIFIED", workload(cond("Admitted", "True")))
    r.watch_sink("Job", "MODIFIED", admitted)
    settle(r)
    assert actions.notes() == ["kubejobs: admitted by Kueue to ClusterQueue cq after 12.5 s"]
    assert admission.queued == 0
    assert admission.holds(NAME)
    # creationTimestamp is 10:00; 10:30 is past start_timeout from creation, not from start
    clock.now = 1796466600.0  # 2026-12-05T10:30:00Z
    r.tick()
    assert actions.reports() == []


def test_a_job_seen_unsuspended_before_its_workload_waits_for_it_to_name_the_queue() -> None:
    # The Job and the Workload come on separate watches: on a busy executor the Job's
    # resume may arrive first. The note waits for the Workload rather than omit the queue.
    r, actions, _, clock = setup()
    clock.now += 4.0
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    settle(r)
    assert actions.notes() == []
    clock.now += 1.0
    r.watch_sink("Workload", "MODIFIED", workload(cond("Admitted", "True")))
    settle(r)
    assert actions.notes() == ["kubejobs: admitted by Kueue to ClusterQueue cq after 4.0 s"]


def test_a_run_over_before_its_workload_is_seen_still_says_it_was_admitted() -> None:
    r, actions, _, clock = setup()
    clock.now += 2.0
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Job", "MODIFIED", queued_job(False, conditions=["Complete"]))
    settle(r)
    assert actions.notes() == ["kubejobs: admitted by Kueue after 2.0 s"]
    assert [o.success for o in actions.reports()] == [True]


def test_a_job_just_unsuspended_is_not_failed_before_the_job_controller_starts_it() -> None:
    """Kueue's unsuspend reaches the executor before the Job controller sets startTime; the
    start timeout must not count from the Job's creation, long before (a real-server bug)."""
    r, actions, _admission, clock = setup()
    clock.now = 1796466600.0  # 10:30, half an hour after creation; start_timeout is 60 s
    r.watch_sink("Job", "MODIFIED", queued_job(False, started=False))
    settle(r)
    assert actions.reports() == []
    assert r.flights[PID].admitted


def test_the_queued_bound_stops_taking_work_until_kueue_admits() -> None:
    r, _actions, admission, _clock = setup(max_queued=1)
    assert admission.acquire(stop=_never(), timeout=0.05) is None
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    settle(r)
    assert admission.acquire(stop=_never(), timeout=0.05) is not None


def test_preemption_marks_the_attempt_and_the_process_runs_on_to_success() -> None:
    r, actions, admission, clock = setup()
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    settle(r)
    clock.now += 5
    evicted = cond(
        "Evicted",
        "True",
        "Preempted",
        "Preempted to accommodate a workload (UID: x) due to prioritization in the ClusterQueue",
    )
    r.watch_sink(
        "Workload",
        "MODIFIED",
        workload(evicted, cond("QuotaReserved", "False", "Pending", PENDING)),
    )
    r.watch_sink("Job", "MODIFIED", queued_job(True))
    settle(r)
    assert admission.queued == 1
    clock.now += 7
    r.watch_sink("Workload", "MODIFIED", workload(cond("Admitted", "True")))
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Job", "MODIFIED", queued_job(False, conditions=["Complete"]))
    settle(r)
    notes = actions.notes()
    assert notes[0].startswith("kubejobs: admitted by Kueue")
    assert notes[1] == (
        "kubejobs: Kueue stopped run 1 (Preempted: Preempted to accommodate a workload "
        "(UID: x) due to prioritization in the ClusterQueue); the process runs again from the "
        "start when Kueue admits it again"
    )
    assert notes[2] == f"kubejobs: queued in Kueue LocalQueue team-a: {PENDING}"
    assert notes[3] == "kubejobs: admitted by Kueue to ClusterQueue cq (run 2) after 7.0 s"
    (outcome,) = actions.reports()
    assert outcome.success
    # the report came after every note
    kinds = [c[0] for c in actions.calls]
    assert kinds.index("report") > max(i for i, k in enumerate(kinds) if k == "note")


def test_a_preemption_seen_on_the_job_first_waits_for_the_workloads_reason() -> None:
    """The suspended Job and the Workload's Evicted condition come on separate watches; a
    busy executor saw the Job first and wrote "Kueue suspended the Job" (a real-node flake)."""
    r, actions, _admission, _clock = setup()
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Workload", "MODIFIED", workload(cond("Admitted", "True")))
    settle(r)
    r.watch_sink("Job", "MODIFIED", queued_job(True))
    settle(r)
    assert len(actions.notes()) == 1  # admitted; the stop's note waits for its reason
    evicted = cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload")
    r.watch_sink(
        "Workload",
        "MODIFIED",
        workload(evicted, cond("QuotaReserved", "False", "Pending", PENDING)),
    )
    settle(r)
    assert actions.notes()[1:] == [
        "kubejobs: Kueue stopped run 1 (Preempted: Preempted to accommodate a workload); "
        "the process runs again from the start when Kueue admits it again",
        f"kubejobs: queued in Kueue LocalQueue team-a: {PENDING}",
    ]


def test_a_stop_whose_reason_never_comes_is_told_when_the_run_starts_again() -> None:
    r, actions, _admission, _clock = setup()
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Job", "MODIFIED", queued_job(True))
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Job", "MODIFIED", queued_job(False, conditions=["Complete"]))
    settle(r)
    notes = actions.notes()
    assert notes[1] == (
        "kubejobs: Kueue stopped run 1 (Kueue suspended the Job); "
        "the process runs again from the start when Kueue admits it again"
    )
    assert notes[2].startswith("kubejobs: admitted by Kueue (run 2)")
    assert [o.success for o in actions.reports()] == [True]


def test_a_workload_that_can_never_fit_fails_with_kueues_words() -> None:
    r, actions, admission, _clock = setup()
    r.watch_sink(
        "Workload", "MODIFIED", workload(cond("QuotaReserved", "False", "Pending", TOO_BIG))
    )
    settle(r)
    (outcome,) = actions.reports()
    assert not outcome.success and outcome.kind == "kueue_refused"
    assert outcome.errors == [
        f"Job {NAME} in LocalQueue team-a: Kueue cannot ever admit it: {TOO_BIG}"
    ]
    assert r.flights[PID].phase in (FINISHED, "deleting") or PID not in r.flights
    assert not admission.holds(NAME)


def test_a_deactivated_workload_fails_the_process() -> None:
    r, actions, _admission, _clock = setup()
    evicted = cond("Evicted", "True", "Deactivated", "The workload is deactivated")
    r.watch_sink("Workload", "MODIFIED", workload(evicted, active=False))
    settle(r)
    (outcome,) = actions.reports()
    assert outcome.errors == [
        f"Job {NAME} in LocalQueue team-a: Kueue deactivated the Workload: The workload is deactivated"
    ]


def test_the_report_waits_for_notes_still_on_their_way() -> None:
    r, actions, _admission, _clock = setup()
    flight = r.flights[PID]
    flight.noting = 1
    flight.outcome = Outcome(True, "succeeded")
    flight.phase = REPORTING
    r.tick()
    assert actions.reports() == []
    r.post("noted", PID)
    settle(r)
    assert len(actions.reports()) == 1


def test_verdicts() -> None:
    assert kueue.verdict(None).kind == "waiting"
    assert kueue.verdict(workload(cond("Admitted", "True"))).kind == "admitted"
    mixed = TOO_BIG + "; insufficient unused quota for memory in flavor f, 1Gi more needed"
    assert (
        kueue.verdict(workload(cond("QuotaReserved", "False", "Pending", mixed))).kind == "waiting"
    )
    assert kueue.owner_job(workload()) == NAME
    assert kueue.owner_job({"metadata": {"ownerReferences": [{"kind": "Pod", "name": "x"}]}}) == ""


def test_a_restarted_executor_does_not_say_again_that_kueue_admitted_a_job_it_finds() -> None:
    """An executor restarted while a queued Job runs finds it unsuspended. Its earlier life
    said when Kueue admitted the Job; saying it again ("after 0.1 s") told of a run that
    never happened (found by the soak: a replica SIGKILLed mid-run)."""
    actions, clock = Recorded(), Clock()
    r = Reconciler(
        "e", Admission(10), actions, Metrics(), Timeouts(start=60), 0, workers=1, clock=clock
    )
    r.watch_sink("Pod", "SYNC", [])
    r.watch_sink("Workload", "SYNC", [workload(cond("Admitted", "True"))])
    r.watch_sink("Job", "SYNC", [queued_job(False)])
    settle(r)
    clock.now += 5
    r.watch_sink("Job", "MODIFIED", queued_job(False, conditions=["Complete"]))
    settle(r)
    assert actions.notes() == []
    assert [o.success for o in actions.reports()] == [True]


def adopted(job_: dict[str, Any], evictions: int) -> tuple[Reconciler, Recorded, Clock]:
    """A restarted executor finding ``job_`` and its Workload, which Kueue evicted
    ``evictions`` times before."""
    actions, clock = Recorded(), Clock()
    r = Reconciler(
        "e", Admission(10), actions, Metrics(), Timeouts(start=60), 0, workers=1, clock=clock
    )
    found = workload(cond("Admitted", "True"))
    found["status"]["schedulingStats"] = {
        "evictions": [{"reason": "Preempted", "underlyingCause": "", "count": evictions}]
    }
    r.watch_sink("Pod", "SYNC", [])
    r.watch_sink("Workload", "SYNC", [found])
    r.watch_sink("Job", "SYNC", [job_])
    settle(r)
    return r, actions, clock


def test_a_job_found_after_a_restart_numbers_its_runs_on_from_kueues_evictions() -> None:
    """Kueue preempted the Job while the executor was away: its log must not count runs from
    1 again ("Kueue stopped run 1" twice, found by the soak), and it says why a run began
    again that no note of the earlier life announced."""
    r, actions, clock = adopted(queued_job(False), evictions=1)
    assert actions.notes() == [
        "kubejobs: executor e found the Job in run 2 after a restart; Kueue stopped 1 "
        "earlier run(s)"
    ]
    clock.now += 5
    evicted = cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload")
    r.watch_sink("Workload", "MODIFIED", workload(evicted))
    r.watch_sink("Job", "MODIFIED", queued_job(True))
    settle(r)
    assert actions.notes()[1].startswith("kubejobs: Kueue stopped run 2 (Preempted: ")


def test_a_job_found_in_its_first_run_says_nothing_more() -> None:
    _r, actions, _clock = adopted(queued_job(False), evictions=0)
    assert actions.notes() == []


def test_a_run_that_completes_as_kueue_preempts_it_closes_as_a_success() -> None:
    """Kueue suspended the Job in the second its pod succeeded; the Job controller then
    marked it Complete, and it stays Complete and suspended. The 30-minute soak found the
    process RUNNING for good, its log saying "Kueue stopped run 4" after all 30 lines."""
    r, actions, _admission, _clock = setup()
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    r.watch_sink("Workload", "MODIFIED", workload(cond("Admitted", "True")))
    settle(r)
    evicted = cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload")
    r.watch_sink("Workload", "MODIFIED", workload(evicted))
    r.watch_sink("Job", "MODIFIED", queued_job(True, conditions=["SuccessCriteriaMet"]))
    r.watch_sink("Job", "MODIFIED", queued_job(True, conditions=["SuccessCriteriaMet", "Complete"]))
    settle(r)
    assert [o.success for o in actions.reports()] == [True]
    assert not any("stopped" in n for n in actions.notes())  # the run was not cut short


def test_a_job_suspended_before_it_was_seen_complete_still_closes() -> None:
    r, actions, _admission, _clock = setup()
    r.watch_sink("Job", "MODIFIED", queued_job(False))
    settle(r)
    r.watch_sink("Job", "MODIFIED", queued_job(True))  # seen as a stop
    r.watch_sink("Job", "MODIFIED", queued_job(True, conditions=["Complete"]))
    settle(r)
    assert [o.success for o in actions.reports()] == [True]


def test_a_restarted_executor_closes_a_job_found_complete_and_suspended() -> None:
    _r, actions, _clock = adopted(queued_job(True, conditions=["Complete"]), evictions=6)
    assert [o.success for o in actions.reports()] == [True]
    assert actions.notes() == []  # no "found the Job in run 7": it is over
