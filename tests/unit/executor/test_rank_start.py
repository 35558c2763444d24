"""A rank that never comes up fails its multi-node process, naming the rank, its pod and why.

The other ranks of an Indexed Job run and wait for it (in their rendezvous), so without a
verdict the process would hold its nodes until the walltime. The Job is the one kubejobs
renders for a 2-node spec; its pods are built from that template as the Job controller
would (name, completion index), with the status a kubelet or scheduler writes. The
reconciler runs with recorded side effects and a clock the test moves.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubejobs.executor import reconcile
from kubejobs.executor.admission import Admission
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import (
    RECHECK_SECONDS,
    SETTLE_SECONDS,
    Outcome,
    Timeouts,
    job_outcome,
)
from kubejobs.executor.reconcile import RUNNING, Reconciler
from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec
from tests.unit.executor.test_reconcile import Recorded

PID = "ef" * 32
T0 = 1_800_000_000.0  # the Job's creation
UNSCHEDULABLE, START = 60, 120
INSUFFICIENT = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rendered_job(fs: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "funcname": "execute",
        "conditions": {"executortype": "kubejobs", "nodes": 2, "processespernode": 2},
        "kwargs": {"docker-image": "trainer:1", "cmd": "python3 -m trainer"},
    }
    if fs:
        data["fs"] = {"mount": "/cfs", "dirs": [{"label": "/data", "dir": "/data"}]}
    manifests = Renderer(RenderSettings(executor_name="e")).render(validate_spec(data), PID)
    job = next(m for m in manifests if m["kind"] == "Job")
    job["metadata"].update(uid="u1", creationTimestamp=at(0))
    job["status"] = {"startTime": at(0), "active": 2}
    return job


def pod(job: dict[str, Any], index: int, **status: Any) -> dict[str, Any]:
    """The Job controller's pod for `index`, with the given status."""
    template = copy.deepcopy(job["spec"]["template"])
    meta = template["metadata"]
    meta["name"] = f"{job['metadata']['name']}-{index}-x{index}z"
    meta["creationTimestamp"] = at(1)
    meta["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
    return {"metadata": meta, "spec": template["spec"], "status": status}


def running(job: dict[str, Any], index: int) -> dict[str, Any]:
    mains = [c["name"] for c in job["spec"]["template"]["spec"]["containers"]]
    return pod(
        job,
        index,
        phase="Running",
        conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": at(2)}],
        containerStatuses=[{"name": n, "state": {"running": {"startedAt": at(5)}}} for n in mains],
    )


def scheduled_at(seconds: float) -> dict[str, Any]:
    return {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(seconds)}


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"name": name, "state": {"waiting": state}}


def start(job: dict[str, Any], *pods: dict[str, Any]) -> tuple[Reconciler, Recorded, Clock]:
    actions, clock = Recorded(), Clock()
    r = Reconciler(
        "e",
        Admission(10),
        actions,
        Metrics(),
        Timeouts(unschedulable=UNSCHEDULABLE, start=START),
        0,
        workers=1,
        clock=clock,
    )
    r.watch_sink("Pod", "SYNC", list(pods))
    r.watch_sink("Job", "SYNC", [job])  # adopted: this executor's annotation
    settle(r)
    assert r.flights[PID].phase == RUNNING
    return r, actions, clock


def settle(r: Reconciler) -> None:
    for _ in range(20):
        r.drain()
        r._pool.shutdown(wait=True)
        r._pool = ThreadPoolExecutor(max_workers=1)
        if r.inbox.empty():
            return


def after(r: Reconciler, clock: Clock, seconds: float) -> None:
    clock.now = T0 + seconds
    r.tick()
    settle(r)


def reports(actions: Recorded) -> list[Outcome]:
    return [c[2] for c in actions.calls if c[0] == "report"]


def failed_with(actions: Recorded, kind: str) -> str:
    (outcome,) = reports(actions)
    assert not outcome.success and outcome.kind == kind and not outcome.pods_done
    assert ("delete", PID, outcome_job(actions)) in actions.calls  # its running ranks go too
    (error,) = outcome.errors
    return error


def outcome_job(actions: Recorded) -> str:
    return next(c[2] for c in actions.calls if c[0] == "delete")


def test_a_rank_that_stays_unschedulable_fails_the_process_naming_it_and_the_scheduler() -> None:
    job = rendered_job()
    stuck = pod(
        job,
        1,
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": INSUFFICIENT,
                "lastTransitionTime": at(2),
            }
        ],
    )
    r, actions, clock = start(job, running(job, 0), stuck)
    after(r, clock, 2 + UNSCHEDULABLE - 1)
    assert reports(actions) == []  # rank 0 runs, rank 1 may still get a node
    after(r, clock, 2 + UNSCHEDULABLE + RECHECK_SECONDS)  # a Job no event changed: looked at
    name = stuck["metadata"]["name"]
    assert failed_with(actions, "unschedulable") == (
        f"pod {name} (node rank 1) could not be scheduled for {UNSCHEDULABLE}s: {INSUFFICIENT}"
    )


def test_a_rank_stuck_on_its_node_fails_after_start_timeout_with_its_waiting_reasons() -> None:
    job = rendered_job()
    stuck = pod(
        job,
        1,
        phase="Pending",
        startTime=at(2),  # the kubelet took it up
        conditions=[
            scheduled_at(2),
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
        ],
        initContainerStatuses=[{"name": "kubejobs-log-shipper", "state": {"running": {}}}],
        containerStatuses=[
            waiting("main-0", "ContainerCreating"),
            waiting("main-1", "ContainerCreating"),
        ],
    )
    r, actions, clock = start(job, running(job, 0), stuck)
    after(r, clock, 2 + START - 1)
    assert reports(actions) == []
    after(r, clock, 2 + START + RECHECK_SECONDS)
    name = stuck["metadata"]["name"]
    assert failed_with(actions, "not_started") == (
        f"pod {name} (node rank 1) did not start within start_timeout {START}s: "
        "main-0: ContainerCreating; main-1: ContainerCreating. "
        f"`kubectl describe pod {name}` shows why in its events (a volume that cannot be "
        "mounted, an image that takes longer to pull than start_timeout)"
    )


def test_a_rank_whose_pod_has_no_status_yet_fails_after_start_timeout() -> None:
    job = rendered_job()
    stuck = pod(job, 0, phase="Pending")  # never seen by a scheduler
    r, actions, clock = start(job, stuck, running(job, 1))
    after(r, clock, 1 + START)
    assert failed_with(actions, "not_started").startswith(
        f"pod {stuck['metadata']['name']} (node rank 0) did not start within start_timeout "
        f"{START}s: no container status yet."
    )


def test_a_rank_whose_image_cannot_be_pulled_fails_at_once() -> None:
    job = rendered_job()
    message = 'Back-off pulling image "trainer:1"'

    def rank1(reason: str, text: str = "") -> dict[str, Any]:
        statuses = [waiting(f"main-{r}", reason, text) for r in range(2)]
        return pod(
            job,
            1,
            phase="Pending",
            conditions=[scheduled_at(2)],
            startTime=at(2),
            containerStatuses=statuses,
        )

    r, actions, clock = start(job, running(job, 0), rank1("ContainerCreating"))
    after(r, clock, 3)
    assert reports(actions) == []
    r.watch_sink("Pod", "MODIFIED", rank1("ImagePullBackOff", message))
    after(r, clock, 4)  # long before start_timeout: this will not change by itself
    assert failed_with(actions, "cannot_start") == (
        f"pod {rank1('')['metadata']['name']} (node rank 1) container main-0 cannot start: "
        f"ImagePullBackOff: {message}"
    )


def test_a_rank_whose_data_stager_is_still_at_work_is_not_failed() -> None:
    seconds = START * 10
    job = rendered_job(fs=True)
    staging = pod(
        job,
        1,
        phase="Pending",
        conditions=[scheduled_at(2)],
        startTime=at(2),  # the kubelet took it up
        initContainerStatuses=[
            {"name": "kubejobs-log-shipper", "state": {"running": {}}},
            {"name": "kubejobs-data-stager", "state": {"running": {"startedAt": at(4)}}},
        ],
        containerStatuses=[
            waiting("main-0", "PodInitializing"),
            waiting("main-1", "PodInitializing"),
        ],
    )
    r, actions, clock = start(job, running(job, 0), staging)
    after(r, clock, seconds)
    assert reports(actions) == []
    # the stager is done: from then on the main containers have start_timeout to start
    staged = copy.deepcopy(staging)
    staged["status"]["initContainerStatuses"][1]["state"] = {
        "terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": at(seconds)}
    }
    r.watch_sink("Pod", "MODIFIED", staged)
    after(r, clock, seconds + START - 1)
    assert reports(actions) == []
    after(r, clock, seconds + START + RECHECK_SECONDS)
    assert "(node rank 1) did not start within start_timeout" in failed_with(actions, "not_started")


def test_a_rank_scheduled_that_no_kubelet_has_taken_up_is_not_failed() -> None:
    """10,000 pods at once on kwok: scheduled, not yet taken up by the node (no startTime), and
    4,131 processes failed after start_timeout. The node's backlog, or a node gone (Kubernetes
    evicts its pods and the Job controller replaces them), is not the pod's failure."""
    job = rendered_job()
    queued = pod(job, 1, phase="Pending", conditions=[scheduled_at(2)])
    r, actions, clock = start(job, running(job, 0), queued)
    after(r, clock, START * 10)
    assert reports(actions) == []
    taken_up = copy.deepcopy(queued)
    taken_up["status"]["startTime"] = at(START * 10)
    r.watch_sink("Pod", "MODIFIED", taken_up)
    after(r, clock, START * 11)
    assert failed_with(actions, "not_started").startswith(
        f"pod {queued['metadata']['name']} (node rank 1) did not start within start_timeout"
    )


def test_a_running_job_no_event_changed_is_looked_at_every_recheck_seconds(
    monkeypatch: Any,
) -> None:
    """With 5,000 Jobs running per replica, looking at each one every tick cost a tenth of a
    core: a Job whose watch events are quiet is looked at again every RECHECK_SECONDS."""
    looked: list[float] = []

    def counted(job: dict[str, Any], pods: list[dict[str, Any]], now: float, *rest: Any) -> Any:
        looked.append(now)
        return job_outcome(job, pods, now, *rest)

    monkeypatch.setattr(reconcile, "job_outcome", counted)
    job = rendered_job()
    r, actions, clock = start(job, running(job, 0), running(job, 1))
    looked.clear()
    for second in range(1, 31):
        after(r, clock, second)
    assert reports(actions) == []
    assert len(looked) == 30 / RECHECK_SECONDS
    # an event is looked at at once, whatever the recheck
    r.watch_sink("Pod", "MODIFIED", running(job, 1))
    settle(r)
    assert len(looked) == 30 / RECHECK_SECONDS + 1


def test_a_rank_that_cannot_start_is_failed_by_the_ticks_alone_within_the_settle() -> None:
    """A container that could not start waits SETTLE_SECONDS for its shipper, then fails the
    process: settling Jobs are looked at every tick, not every RECHECK_SECONDS."""
    job = rendered_job()
    term = {"exitCode": 128, "reason": "StartError", "message": "exec: no such file",
            "finishedAt": at(3)}  # fmt: skip
    broken = pod(
        job,
        1,
        phase="Running",
        conditions=[scheduled_at(2)],
        startTime=at(2),
        initContainerStatuses=[{"name": "kubejobs-log-shipper", "state": {"running": {}}}],
        containerStatuses=[
            {"name": "main-0", "state": {"terminated": term}},
            {"name": "main-1", "state": {"running": {"startedAt": at(3)}}},
        ],
    )
    r, actions, clock = start(job, running(job, 0), running(job, 1))
    clock.now = T0 + 3
    r.watch_sink("Pod", "MODIFIED", broken)
    settle(r)
    assert reports(actions) == []
    after(r, clock, 3 + SETTLE_SECONDS)
    assert "container main-0" in failed_with(actions, "cannot_start")
