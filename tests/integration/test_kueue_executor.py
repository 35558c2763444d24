"""The executor behind a real Kueue (testenv/kueue.py) on the real control plane; kwok runs the pods.

Jobs are created suspended in a LocalQueue and Kueue admits them by quota; the
executor must wait for it without failing, say so in the process log, hold no
more than max_queued unadmitted processes, refuse to start without the
LocalQueue, and fail a Workload Kueue can never admit with Kueue's words.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.polling import until
from tests.integration.test_executor_e2e import (
    FAILED,
    RUNNING,
    SUCCESS,
    WAITING,
    ExecutorRun,
    executor,  # noqa: F401
    spec,
)

pytestmark = pytest.mark.integration
WAIT = 300.0


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in job.get("status", {}).get("conditions", [])
    )


def live_pods(namespace: Any) -> list[str]:
    """Pods not yet Succeeded or Failed: what holds cpu on the nodes. (An unsuspended Job is
    not the measure: Kueue frees a Job's quota when its pod succeeds, a moment before the Job
    controller marks the Job Complete.)"""
    return [
        p["metadata"]["name"]
        for p in namespace.get_json("pods")["items"]
        if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]


def suspended(jobs: list[dict[str, Any]]) -> list[str]:
    return [j["metadata"]["name"] for j in jobs if j["spec"].get("suspend")]


def states(run: ExecutorRun, pids: list[str]) -> list[int]:
    return [int(run.colonies.get_process(p)["state"]) for p in pids]


def pending(run: ExecutorRun, pids: list[str], deadline: float) -> bool:
    """Whether some process is not final yet; an AssertionError past `deadline` (bounded wait)."""
    now = states(run, pids)
    if time.monotonic() > deadline:
        raise AssertionError(f"not final in time: states {now}\nexecutor log:\n{run.log()}")
    return any(s not in (SUCCESS, FAILED) for s in now)


def test_twenty_processes_share_a_quota_of_four_cpus_and_all_succeed(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
) -> None:
    queues = kueue.create_queues(kube_namespace.name, cpu="4")
    run = executor({"kwok.test/run": "2s"}, queue_name=queues.local_queue, max_queued=20)
    pids = [run.submit(spec(run.type, conditions={"cpu": "1000m"})) for _ in range(20)]
    most = 0
    deadline = time.monotonic() + WAIT
    while pending(run, pids, deadline):
        now = live_pods(kube_namespace)
        most = max(most, len(now))
        assert len(now) <= 4, now
        time.sleep(0.2)
    done = [run.wait_done(p) for p in pids]
    assert [p["state"] for p in done] == [SUCCESS] * 20, [p["errors"] for p in done]
    assert most >= 2, most
    logs = [run.colonies.log_text(p) for p in pids]
    admitted = "kubejobs: admitted by Kueue to ClusterQueue " + queues.cluster_queue
    assert all(admitted in t for t in logs), [t for t in logs if admitted not in t]
    waited = [
        t for t in logs if f"kubejobs: queued in Kueue LocalQueue {queues.local_queue}: " in t
    ]
    assert waited, "with 20 processes on 4 cpus some must have waited"
    assert all("insufficient unused quota for cpu" in t for t in waited)
    assert all(t.count("kubejobs: queued in Kueue") == 1 for t in waited)  # said once
    run.wait_no_jobs()
    kueue.delete_queues(queues)


def test_max_queued_leaves_the_backlog_to_other_executors(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
    tmp_path: Any,
) -> None:
    queues = kueue.create_queues(kube_namespace.name, cpu="2")
    first = executor({"kwok.test/run": "3s"}, queue_name=queues.local_queue, max_queued=1)
    pids = [first.submit(spec(first.type, conditions={"cpu": "1000m"})) for _ in range(12)]
    # the first executor takes what Kueue runs plus one waiting, and no more
    until(lambda: len(suspended(first.jobs())) == 1, "one Job waiting in the queue")
    time.sleep(3)  # long enough for several assign rounds: it must still not take more
    jobs = first.jobs()
    assert len(suspended(jobs)) <= 1 and len(jobs) <= 3, [j["metadata"]["name"] for j in jobs]
    assert states(first, pids).count(WAITING) >= 9

    # a second executor of the same type takes from the backlog the first left on the server
    name, prvkey = first.colonies.add_executor(f"kj-second-{os.urandom(4).hex()}", first.type)
    secret = "kubejobs-executor-key-second"
    kube_namespace.kubectl(
        "create", "secret", "generic", secret, f"--from-literal=prvkey={prvkey}"
    )  # fmt: skip
    env = dict(first.env)
    env.update(
        KUBEJOBS_EXECUTOR_NAME=name,
        KUBEJOBS_EXECUTOR_PRVKEY=prvkey,
        KUBEJOBS_EXECUTOR_KEY_SECRET=secret,
    )
    second = ExecutorRun(
        first.colonies, kube_namespace, name, first.type, prvkey, tmp_path / "second.log", env
    ).start()
    try:
        deadline = time.monotonic() + WAIT
        while pending(first, pids, deadline):
            mine = [
                j
                for j in first.jobs()
                if j["metadata"]["annotations"].get("kubejobs.io/executor") == first.name
            ]
            assert len(suspended(mine)) <= 1, suspended(mine)
            time.sleep(0.3)
        done = [first.wait_done(p) for p in pids]
        assert [p["state"] for p in done] == [SUCCESS] * 12, [p["errors"] for p in done]
        by_second = [p for p in done if p["assignedexecutorid"] != done[0]["assignedexecutorid"]]
        owners = {p["assignedexecutorid"] for p in done}
        assert len(owners) == 2 and by_second, owners
    finally:
        second.stop()
    first.wait_no_jobs()
    kueue.delete_queues(queues)


def test_not_ready_without_the_local_queue_then_ready_once_it_exists(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
) -> None:
    run = executor({"kwok.test/run": "1s"}, queue_name="kj-late-queue", wait_ready=False)
    kube_namespace.kubectl(
        "create", "secret", "generic", "kubejobs-executor-key", f"--from-literal=prvkey={run.prvkey}"
    )  # fmt: skip
    pid = run.submit(spec(run.type))
    body = until(
        lambda: (r := run.readyz())[0] == 503 and "kj-late-queue" in r[1] and r[1],
        "/readyz naming the missing LocalQueue",
    )
    assert (
        f'LocalQueue "kj-late-queue" (setting queue_name) is missing in namespace "{kube_namespace.name}"'
        in body
    )
    assert "kind LocalQueue" in body and "spec.clusterQueue" in body
    assert run.colonies.get_process(pid)["state"] == WAITING  # nothing taken while not ready
    queues = kueue.create_queues(kube_namespace.name, name="kj-late-queue")
    until(run.ready, "ready once the LocalQueue exists")
    assert run.wait_done(pid)["state"] == SUCCESS
    kueue.delete_queues(queues)


def test_a_workload_kueue_can_never_admit_fails_with_kueues_message(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
) -> None:
    queues = kueue.create_queues(kube_namespace.name, cpu="4")
    run = executor({"kwok.test/run": "1s"}, queue_name=queues.local_queue)
    started = time.monotonic()
    pid = run.submit(spec(run.type, conditions={"cpu": "8000m"}))
    process = run.wait_done(pid, timeout=60)
    took = time.monotonic() - started
    assert process["state"] == FAILED
    (error,) = process["errors"]
    assert error.startswith(
        f"Job kj-{pid[:40]} in LocalQueue {queues.local_queue}: Kueue cannot ever admit it: "
    )
    assert "> maximum capacity (4)" in error, error
    print(f"refused by Kueue, failed after {took:.1f} s")
    run.wait_no_jobs()
    # the executor went on: a process that fits runs
    ok = run.submit(spec(run.type, conditions={"cpu": "1000m"}))
    assert run.wait_done(ok)["state"] == SUCCESS
    kueue.delete_queues(queues)


def test_a_running_process_is_not_failed_while_its_job_waits(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
) -> None:
    """A queued Job waits past start_timeout: no pods is not a failure while Kueue holds it."""
    queues = kueue.create_queues(kube_namespace.name, cpu="1")
    run = executor({"kwok.test/run": "8s"}, queue_name=queues.local_queue, start_timeout=3)
    first = run.submit(spec(run.type, conditions={"cpu": "800m"}))
    second = run.submit(spec(run.type, conditions={"cpu": "800m"}))
    until(lambda: run.colonies.get_process(second)["state"] == RUNNING, "second assigned")
    done = [run.wait_done(p) for p in (first, second)]
    assert [p["state"] for p in done] == [SUCCESS, SUCCESS], [p["errors"] for p in done]
    log = run.colonies.log_text(first) + run.colonies.log_text(second)
    assert "kubejobs: queued in Kueue LocalQueue" in log
    run.wait_no_jobs()
    kueue.delete_queues(queues)


def test_a_workload_kueue_deactivates_fails_the_process_with_kueues_reason(
    executor: Callable[..., ExecutorRun],  # noqa: F811
    kueue: Any,
    kube_namespace: Any,
) -> None:
    queues = kueue.create_queues(kube_namespace.name, cpu="4")
    run = executor({"kwok.test/run-forever": "true"}, queue_name=queues.local_queue)
    pid = run.submit(spec(run.type, conditions={"cpu": "1000m"}))
    until(lambda: "kubejobs: admitted by Kueue" in run.colonies.log_text(pid), "admitted")
    job = run.jobs()[0]
    (workload,) = kueue.workloads_of_job(kube_namespace.name, job["metadata"]["uid"])
    kube_namespace.kubectl(
        "patch", "workloads.kueue.x-k8s.io", workload["metadata"]["name"], "--type=merge",
        "-p", json.dumps({"spec": {"active": False}}),
    )  # fmt: skip
    process = run.wait_done(pid, timeout=60)
    assert process["state"] == FAILED
    (error,) = process["errors"]
    # Kueue's words ("The workload is deactivated") when its Evicted condition has reached
    # the executor by then, else what spec.active says
    assert error.startswith(
        f"Job {job['metadata']['name']} in LocalQueue {queues.local_queue}: "
        "Kueue deactivated the Workload: "
    ), error
    run.wait_no_jobs()
    kueue.delete_queues(queues)
