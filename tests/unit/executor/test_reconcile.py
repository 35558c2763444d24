"""The reconciler's state machine with recorded side effects (no servers)."""

from __future__ import annotations

from typing import Any

from kubejobs.executor.admission import Admission
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome, Timeouts
from kubejobs.executor.reconcile import (
    DELETE_RECHECK_SECONDS,
    DELETING,
    FINISHED,
    RUNNING,
    Actions,
    Reconciler,
)

PID = "cd" * 32
NAME = "kj-" + PID[:40]


class Recorded(Actions):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def report(self, process_id: str, outcome: Outcome) -> tuple[Any, ...]:
        self.calls.append(("report", process_id, outcome))
        return ("reported", process_id, True)

    def delete(self, process_id: str, job_name: str, indexed: bool) -> tuple[Any, ...]:
        self.calls.append(("delete", process_id, job_name))
        return ("deleted", process_id)

    def note(self, process_id: str, line: str) -> tuple[Any, ...]:
        self.calls.append(("note", process_id, line))
        return ("noted", process_id)


def job(executor: str = "e", **status: Any) -> dict[str, Any]:
    conditions = [{"type": t, "status": "True"} for t in status.get("conditions", [])]
    return {
        "metadata": {
            "name": NAME,
            "annotations": {"kubejobs.io/executor": executor, "kubejobs.io/process-id": PID},
        },
        "spec": {
            "parallelism": 1,
            "template": {
                "spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "1"}}}]}
            },
        },
        "status": {"conditions": conditions},
    }


def reconciler(keep: int = 0) -> tuple[Reconciler, Recorded, Admission]:
    actions = Recorded()
    admission = Admission(10)
    r = Reconciler(
        "e", admission, actions, Metrics(), Timeouts(), keep, workers=1, clock=lambda: 1000.0
    )
    r.watch_sink("Pod", "SYNC", [])
    r.watch_sink("Job", "SYNC", [])
    r.drain()
    return r, actions, admission


def settle(r: Reconciler) -> None:
    """Let the pool's side effects come back and be handled."""
    for _ in range(20):
        r._pool.shutdown(wait=True)
        r.drain()
        from concurrent.futures import ThreadPoolExecutor

        r._pool = ThreadPoolExecutor(max_workers=1)
        if r.inbox.empty():
            return


def test_applied_job_completes_is_closed_then_deleted() -> None:
    r, actions, admission = reconciler()
    admission.adopt(NAME, admission.used())
    r.post("applying", PID, NAME, False, 999.0)
    r.watch_sink("Job", "ADDED", job())
    r.post("applied", PID)
    r.drain()
    assert r.flights[PID].phase == RUNNING
    r.watch_sink("Job", "MODIFIED", job(conditions=["Complete"]))
    r.drain()
    settle(r)
    kinds = [c[0] for c in actions.calls]
    assert kinds == ["report", "delete"]
    assert actions.calls[0][2].success
    assert not admission.holds(NAME)
    r.watch_sink("Job", "DELETED", job(conditions=["Complete"]))
    r.drain()
    assert PID not in r.flights


def test_unknown_job_of_this_executor_is_adopted_and_counted() -> None:
    r, _actions, admission = reconciler()
    r.watch_sink("Job", "ADDED", job())
    r.drain()
    assert r.flights[PID].phase == RUNNING and admission.holds(NAME)
    assert str(admission.used().cpu) == "1"


def test_jobs_of_other_executors_are_ignored() -> None:
    r, _actions, admission = reconciler()
    r.watch_sink("Job", "ADDED", job(executor="other"))
    r.drain()
    assert not r.flights and admission.in_flight == 0


def test_adopted_finished_job_is_reported_without_counting_capacity() -> None:
    r, actions, admission = reconciler()
    r.watch_sink("Job", "ADDED", job(conditions=["Failed"]))
    r.drain()
    settle(r)
    assert [c[0] for c in actions.calls] == ["report", "delete"]
    assert admission.in_flight == 0


def test_taken_back_process_has_its_job_deleted() -> None:
    r, actions, admission = reconciler()
    r.watch_sink("Job", "ADDED", job())
    r.post("takenback", PID, "maxexectime")
    r.drain()
    settle(r)
    assert [c[0] for c in actions.calls] == ["delete"]
    assert not admission.holds(NAME)
    assert r.flights[PID].phase == DELETING


def test_failed_job_is_kept_for_the_keep_period() -> None:
    r, actions, _admission = reconciler(keep=60)
    r.watch_sink("Job", "ADDED", job(conditions=["Failed"]))
    r.drain()
    settle(r)
    assert [c[0] for c in actions.calls] == ["report"]
    assert r.flights[PID].phase == FINISHED and r.flights[PID].delete_at == 1060.0


def test_job_deleted_by_someone_else_fails_the_process() -> None:
    r, actions, _admission = reconciler()
    r.watch_sink("Job", "ADDED", job())
    r.watch_sink("Job", "DELETED", job())
    r.drain()
    settle(r)
    report = actions.calls[0]
    assert report[0] == "report" and not report[2].success
    assert "was deleted before it finished" in report[2].errors[0]


def test_relist_notices_jobs_deleted_while_not_watching() -> None:
    r, actions, _admission = reconciler()
    r.watch_sink("Job", "ADDED", job())
    r.drain()
    r.watch_sink("Job", "SYNC", [])
    r.drain()
    settle(r)
    assert actions.calls and actions.calls[0][0] == "report"


def failed_create(uid: str, message: str = "exceeded quota: q") -> dict[str, Any]:
    return {
        "involvedObject": {"kind": "Job", "name": NAME, "uid": uid},
        "reason": "FailedCreate",
        "type": "Warning",
        "message": f"Error creating: {message}",
    }


def with_uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    obj["metadata"]["uid"] = uid
    return obj


def test_failed_create_of_its_job_fails_the_process_and_deletes_the_job() -> None:
    r, actions, _ = reconciler()
    r.watch_sink("Event", "SYNC", [failed_create("old-attempt")])  # an earlier Job's
    r.watch_sink("Job", "ADDED", with_uid(job(), "u1"))
    r.drain()
    assert r.flights[PID].phase == RUNNING  # the earlier Job's refusal is not this one's
    r.watch_sink("Event", "ADDED", failed_create("u1"))
    r.drain()
    settle(r)
    outcome = actions.calls[0][2]
    assert (actions.calls[0][0], outcome.kind) == ("report", "cannot_create")
    assert "FailedCreate): Error creating: exceeded quota: q" in outcome.errors[0]
    assert ("delete", PID, NAME) in actions.calls


def test_failed_create_seen_before_the_job_counts_when_the_job_arrives() -> None:
    r, actions, _ = reconciler()
    r.watch_sink("Event", "ADDED", failed_create("u2"))
    r.watch_sink("Job", "ADDED", with_uid(job(), "u2"))
    r.drain()
    settle(r)
    assert actions.calls and actions.calls[0][2].kind == "cannot_create"
    r.watch_sink("Job", "DELETED", with_uid(job(), "u2"))
    r.drain()
    assert "u2" not in r.create_failures  # forgotten with its Job


def test_pods_of_other_executors_are_not_kept() -> None:
    """Two replicas in one namespace each watch every kubejobs pod; keeping the other's cost
    each replica all of them (10,000 processes over two replicas: 829 MiB a replica)."""
    r, _actions, _admission = reconciler()

    def pod(name: str, executor: str | None) -> dict[str, Any]:
        annotations = {} if executor is None else {"kubejobs.io/executor": executor}
        labels = {"kubejobs.io/process": PID[:40]}
        return {"metadata": {"name": name, "labels": labels, "annotations": annotations}}

    r.watch_sink("Pod", "SYNC", [pod("theirs-1", "other")])
    r.watch_sink("Pod", "ADDED", pod("theirs-2", "other"))
    r.watch_sink("Pod", "ADDED", pod("mine", "e"))
    r.watch_sink("Pod", "ADDED", pod("unmarked", None))  # a template without the annotation
    r.drain()
    assert sorted(r.pods[NAME]) == ["mine", "unmarked"]


def test_a_deleted_job_the_watch_still_shows_is_not_deleted_again_every_tick() -> None:
    """1,000 at once on a loaded machine: the Jobs' watch lagged and every tick sent the delete
    again (6.4 writes a process instead of 2); once in DELETE_RECHECK_SECONDS is enough."""
    now = [1000.0]
    actions = Recorded()
    r = Reconciler(
        "e", Admission(10), actions, Metrics(), Timeouts(), 0, workers=1, clock=lambda: now[0]
    )
    r.watch_sink("Pod", "SYNC", [])
    r.watch_sink("Job", "SYNC", [job(conditions=["Complete"])])
    r.drain()
    settle(r)
    for _ in range(10):
        now[0] += 1.0
        r.tick()
        settle(r)
    assert [c[0] for c in actions.calls] == ["report", "delete"]
    now[0] += DELETE_RECHECK_SECONDS
    r.tick()
    settle(r)
    assert [c[0] for c in actions.calls] == ["report", "delete", "delete"]  # a lost one is redone
