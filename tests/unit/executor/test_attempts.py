"""Attempts of a process (no servers): their names, their log notes, and how the reconciler
keeps a new attempt apart from the Job of the one the server took back."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from kubejobs.adapters.colonies import FAILED, RUNNING, WAITING, assignment_deadline
from kubejobs.executor.admission import Admission, Request
from kubejobs.executor.apply import Prepared, apply
from kubejobs.executor.attempts import is_current, notes
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome, Timeouts
from kubejobs.executor.reconcile import APPLYING, DELETING, Reconciler
from kubejobs.executor.reconcile import RUNNING as FLYING
from kubejobs.executor.report import report
from kubejobs.render import Renderer
from kubejobs.render.identity import attempt_of, attempt_of_process, job_name
from kubejobs.spec import validate_spec
from tests.unit.executor.test_kueue import settle
from tests.unit.executor.test_reconcile import Recorded

PID = "ef" * 32
FIRST, SECOND = job_name(PID), job_name(PID, 2)
ME = "exec-me"


def process(
    retries: int = 0, maxexectime: int = 6, maxretries: int = 2, **extra: Any
) -> dict[str, Any]:
    return {
        "processid": PID,
        "state": RUNNING,
        "assignedexecutorid": ME,
        "retries": retries,
        "starttime": "2027-01-15T08:00:00Z",
        "spec": {"maxexectime": maxexectime, "maxretries": maxretries},
        **extra,
    }


# --- names ----------------------------------------------------------------------


def test_attempt_one_keeps_the_old_name_later_ones_are_numbered() -> None:
    assert "kj-" + PID[:40] == FIRST and SECOND == FIRST + "-2"
    assert attempt_of_process(process(retries=4)) == 5 and attempt_of_process({}) == 1
    assert attempt_of({"kubejobs.io/attempt": "3"}) == 3 and attempt_of({}) == 1
    assert attempt_of({"kubejobs.io/attempt": "x"}) == 1


@pytest.mark.parametrize("attempt", [2, 99_999, 10**9])
def test_indexed_pod_hostnames_fit_63_characters(attempt: int) -> None:
    # the Job controller names an Indexed Job's pod hostname "<job>-<index>"
    assert len(f"{job_name(PID, attempt)}-{10**7}") <= 63


def test_a_later_attempt_renders_its_name_label_and_the_shippers_attempt() -> None:
    spec = validate_spec(
        {
            "conditions": {"executortype": "k8s", "nodes": 2},
            "funcname": "execute",
            "kwargs": {"docker-image": "busybox:1", "cmd": "true"},
        },
        "t",
    )
    renderer = Renderer()
    first = renderer.render(spec, PID)
    second = renderer.render(spec, PID, None, 2)
    job, service = second[0], second[1]
    assert job["metadata"]["name"] == service["metadata"]["name"] == SECOND
    assert job["metadata"]["labels"]["kubejobs.io/attempt"] == "2"
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["kubejobs.io/attempt"] == "2"
    assert pod["spec"]["subdomain"] == SECOND
    shipper = pod["spec"]["initContainers"][0]
    assert {"name": "KUBEJOBS_ATTEMPT", "value": "2"} in shipper["env"]
    hosts = next(e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "KUBEJOBS_HOSTS")
    assert hosts["value"].startswith(f"{SECOND}-0.{SECOND}")
    # attempt 1 renders as before attempts had names
    assert "kubejobs.io/attempt" not in first[0]["metadata"]["labels"]
    assert all(
        e["name"] != "KUBEJOBS_ATTEMPT"
        for e in first[0]["spec"]["template"]["spec"]["initContainers"][0]["env"]
    )


# --- notes ----------------------------------------------------------------------


def test_notes_mark_each_attempt_and_the_take_back_of_the_one_before() -> None:
    assert notes(process(), "ex") == [
        "kubejobs: attempt 1 of 3 starts on executor ex; the server takes it back if it runs "
        "longer than maxexectime 6 s"
    ]
    assert notes(process(retries=1), "ex") == [
        "kubejobs: attempt 1 was taken back by the server after maxexectime 6 s",
        "kubejobs: attempt 2 of 3 starts on executor ex; the server takes it back if it runs "
        "longer than maxexectime 6 s",
    ]
    assert notes(process(retries=2), "ex")[1] == (
        "kubejobs: attempt 3 of 3 starts on executor ex; the last one: the server fails the "
        "process if it runs longer than maxexectime 6 s"
    )
    assert notes(process(retries=5, maxretries=-1), "")[1].startswith("kubejobs: attempt 6 starts;")


def test_a_process_that_cannot_be_retried_gets_no_notes() -> None:
    assert notes(process(maxretries=0), "ex") == []
    assert notes(process(maxexectime=-1, maxretries=-1), "ex") == []


def test_current_means_running_here_in_this_attempt() -> None:
    assert is_current(process(), ME, 1) and is_current(process(retries=1), ME)
    assert not is_current(process(retries=1), ME, 1)
    assert not is_current({**process(), "state": WAITING}, ME, 1)
    assert not is_current({**process(), "assignedexecutorid": "other"}, ME, 1)
    assert assignment_deadline(process()) == 1_800_000_006.0
    assert assignment_deadline(process(maxexectime=-1)) == math.inf


# --- the reconciler -----------------------------------------------------------------


class Retiring(Recorded):
    def retire(self, process_id: str, job_name: str, indexed: bool) -> tuple[Any, ...]:
        self.calls.append(("retire", process_id, job_name))
        return ("deleted", process_id)


def job(name: str, attempt: int = 1, **meta: Any) -> dict[str, Any]:
    labels = {"kubejobs.io/process": PID[:40]}
    if attempt > 1:
        labels["kubejobs.io/attempt"] = str(attempt)
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kubejobs.io/executor": "e", "kubejobs.io/process-id": PID},
            **meta,
        },
        "spec": {"template": {"spec": {"containers": [{"name": "main"}]}}},
        "status": {},
    }


def reconciler(now: float = 1000.0) -> tuple[Reconciler, Retiring, Admission]:
    actions, admission = Retiring(), Admission(10)
    r = Reconciler("e", admission, actions, Metrics(), Timeouts(), 0, workers=1, clock=lambda: now)
    r.watch_sink("Pod", "SYNC", [])
    r.watch_sink("Job", "SYNC", [])
    r.drain()
    return r, actions, admission


def running_first(r: Reconciler, admission: Admission) -> None:
    admission.commit(FIRST, Request())
    r.post("applying", PID, FIRST, False, 999.0, 1, math.inf)
    r.watch_sink("Job", "ADDED", job(FIRST))
    r.post("applied", PID, FIRST)
    r.drain()


def test_a_new_attempt_retires_the_running_one_without_waiting_for_it() -> None:
    r, actions, admission = reconciler()
    running_first(r, admission)
    admission.commit(SECOND, Request())
    r.post("applying", PID, SECOND, False, 1001.0, 2, math.inf)
    r.drain()
    assert r.flights[PID].job_name == SECOND and r.flights[PID].phase == APPLYING
    settle(r)
    assert actions.calls == [("retire", PID, FIRST)]  # background: its pods stop on their own
    assert admission.holds(SECOND) and not admission.holds(FIRST)
    # the old Job's end and a late take-back of attempt 1 touch nothing of attempt 2
    r.post("takenback", PID, "the server no longer has attempt 1", 1)
    r.watch_sink("Job", "ADDED", job(SECOND, 2))
    r.post("applied", PID, SECOND)
    r.watch_sink("Job", "MODIFIED", job(FIRST, deletionTimestamp="2027-01-15T08:00:07Z"))
    r.watch_sink("Job", "DELETED", job(FIRST))
    settle(r)
    r.tick()
    assert r.flights[PID].phase == FLYING and admission.holds(SECOND)
    assert not r.retired and r.running_attempts() == {PID: 2}
    assert [c[0] for c in actions.calls] == ["retire"]


def test_a_take_back_of_the_current_attempt_deletes_its_job_in_the_background() -> None:
    r, actions, admission = reconciler()
    running_first(r, admission)
    r.post("takenback", PID, "FAILED", 1)
    settle(r)
    assert actions.calls == [("retire", PID, FIRST)]
    assert r.flights[PID].phase == DELETING and not admission.holds(FIRST)


def test_the_old_attempts_outcome_is_never_reported() -> None:
    r, actions, admission = reconciler()
    running_first(r, admission)
    admission.commit(SECOND, Request())
    r.post("applying", PID, SECOND, False, 1001.0, 2, math.inf)
    complete = job(FIRST)
    complete["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    r.watch_sink("Job", "MODIFIED", complete)
    settle(r)
    assert [c[0] for c in actions.calls] == ["retire"]


def test_pods_of_attempt_two_belong_to_its_job() -> None:
    r, _actions, admission = reconciler()
    admission.commit(SECOND, Request())
    r.post("applying", PID, SECOND, False, 999.0, 2, math.inf)
    r.watch_sink("Job", "ADDED", job(SECOND, 2))
    r.post("applied", PID, SECOND)
    pod = {
        "metadata": {"name": SECOND + "-x", "labels": job(SECOND, 2)["metadata"]["labels"]},
        "status": {"phase": "Running"},
    }
    r.watch_sink("Pod", "ADDED", pod)
    r.drain()
    assert list(r.pods[SECOND]) == [SECOND + "-x"]


def test_after_a_restart_the_earlier_of_two_found_jobs_is_deleted() -> None:
    for order in ([job(SECOND, 2), job(FIRST)], [job(FIRST), job(SECOND, 2)]):
        r, actions, admission = reconciler()
        r.watch_sink("Job", "SYNC", order)
        settle(r)
        assert r.flights[PID].job_name == SECOND and r.flights[PID].attempt == 2
        assert actions.calls == [("retire", PID, FIRST)]
        assert admission.holds(SECOND) and not admission.holds(FIRST)


def test_near_its_maxexectime_or_found_after_a_restart_a_result_names_its_attempt() -> None:
    r, actions, admission = reconciler(now=1000.0)
    admission.commit(FIRST, Request())
    r.post("applying", PID, FIRST, False, 999.0, 1, 1010.0)  # due in 10 s
    complete = job(FIRST)
    complete["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    r.watch_sink("Job", "ADDED", complete)
    r.post("applied", PID, FIRST)
    settle(r)
    assert actions.calls[0][0] == "report" and actions.calls[0][2].attempt == 1
    far, far_actions, far_admission = reconciler(now=1000.0)
    far_admission.commit(FIRST, Request())
    far.post("applying", PID, FIRST, False, 999.0, 1, math.inf)
    far.watch_sink("Job", "ADDED", complete)
    far.post("applied", PID, FIRST)
    settle(far)
    assert far_actions.calls[0][2].attempt == 0  # no deadline: nothing to check


class Server:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.calls: list[str] = []

    def get_process(self, pid: str) -> dict[str, Any]:
        self.calls.append("get")
        return self.doc

    def close(self, pid: str, output: list[Any]) -> None:
        self.calls.append("close")

    def fail(self, pid: str, errors: list[str]) -> None:
        self.calls.append("fail")


@pytest.mark.parametrize(
    ("doc", "closed"),
    [
        (process(), True),
        (process(retries=1), False),  # the server gave this executor attempt 2 meanwhile
        ({**process(retries=2), "state": FAILED}, False),
    ],
)
def test_a_result_of_an_attempt_that_is_over_is_not_reported(
    doc: dict[str, Any], closed: bool
) -> None:
    server = Server(doc)
    result = report(server, ME, Metrics(), PID, Outcome(True, "succeeded", attempt=1))  # type: ignore[arg-type]
    assert result == ("reported", PID, closed)
    assert server.calls == (["get", "close"] if closed else ["get"])


# --- applying and checking --------------------------------------------------------


def test_after_waiting_for_a_job_of_the_same_name_an_attempt_that_is_over_is_not_applied() -> None:
    from tests.unit.executor.test_apply_attempts import NAME, Jobs
    from tests.unit.executor.test_apply_attempts import job as other_job

    prepared = Prepared("ab" * 32, NAME, [other_job("me")], Request())
    for current, applied in ((False, ["create", "delete"]), (True, ["create", "delete", "apply"])):
        kube = Jobs(other_job("gone-replica"))
        done = apply(kube, prepared, "ns", threading.Event(), current=lambda c=current: c)  # type: ignore[arg-type, misc]
        assert (done, kube.calls) == (current, applied)
    # no wait, no question: a fresh assignment is applied at once
    kube = Jobs(None)
    asked: list[bool] = []
    assert apply(
        kube, prepared, "ns", threading.Event(), current=lambda: asked.append(True) or False
    )  # type: ignore[arg-type]
    assert kube.calls == ["create"] and asked == []


def test_the_take_back_check_names_the_attempt_that_ended() -> None:
    from tests.unit.executor.test_takeback import FakeColonies, FakeReconciler, checker

    class Attempts(FakeReconciler):
        def running_attempts(self) -> dict[str, int]:
            return {"p": 1}

    # the server lists p RUNNING here, but in attempt 2: attempt 1's Job is not confirmed
    colonies = FakeColonies(
        {"p": {**process(retries=1), "processid": "p", "assignedexecutorid": "exec-me"}}
    )
    reconciler = Attempts(["p"])
    checker(colonies, reconciler).check_once()  # type: ignore[arg-type]
    assert reconciler.posted == [
        ("takenback", "p", "the server no longer has attempt 1 RUNNING on this executor", 1)
    ]
