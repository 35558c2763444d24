"""The executor as a subprocess against the test Colonies server and a real kube control plane.

Each test gets its own namespace and its own executor name and type, so the
session's colony is shared without one test's processes reaching another's
executor. kwok plays the kubelet; pod behaviour (exit code, reason, run time,
run forever) is steered by the executor's extra pod annotations. Waits are
bounded (a hung executor fails the test) but nothing asserts on durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubejobs.render import job_name
from testenv._proc import free_port
from testenv.executor import executor_env
from tests.integration.executor_support import executor_ready
from tests.integration.polling import until

pytestmark = pytest.mark.integration

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
ROOT = Path(__file__).resolve().parents[2]
WAIT = 120.0


def spec(executor_type: str, **extra: Any) -> dict[str, Any]:
    conditions = {"executortype": executor_type, "cpu": "100m", "mem": "64Mi"}
    conditions.update(extra.pop("conditions", {}))
    doc = {
        "funcname": "execute",
        "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo hello"},
        "conditions": conditions,
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }
    doc.update(extra)
    return doc


@dataclass
class ExecutorRun:
    """One executor subprocess (restartable with the same identity)."""

    colonies: Any
    namespace: Any
    name: str
    type: str
    prvkey: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> ExecutorRun:
        self.env["KUBEJOBS_HEALTH_PORT"] = str(free_port())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubejobs.executor"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        if wait_ready:
            until(self.ready, "executor /readyz", 60)
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        return executor_ready(self.proc, self.env["KUBEJOBS_HEALTH_PORT"], self.log())

    def readyz(self) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.env['KUBEJOBS_HEALTH_PORT']}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as err:
            with err:
                return int(err.code), err.read().decode()
        except OSError:
            return 0, ""  # not listening yet

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.env['KUBEJOBS_HEALTH_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def submit(self, doc: dict[str, Any]) -> str:
        return str(self.colonies.submit(doc)["processid"])

    def wait_done(self, pid: str, timeout: float = WAIT) -> dict[str, Any]:
        try:
            process: dict[str, Any] = self.colonies.wait_state(pid, (SUCCESS, FAILED), timeout)
        except Exception as err:
            raise AssertionError(f"{err}\nexecutor log:\n{self.log()}") from None
        return process

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.namespace.get_json("jobs")["items"])

    def services(self) -> list[str]:
        return [s["metadata"]["name"] for s in self.namespace.get_json("services")["items"]]

    def wait_no_jobs(self) -> None:
        until(lambda: not self.jobs(), f"no Jobs left in {self.namespace.name}")


@pytest.fixture
def executor(
    colonies: Any, kube: Any, kube_namespace: Any, tmp_path: Path
) -> Iterator[Callable[..., ExecutorRun]]:
    """start(annotations=..., **settings) -> a running executor in this test's namespace."""
    kube_namespace.kubectl("create", "serviceaccount", "kubejobs-log-shipper")
    suffix = os.urandom(4).hex()
    name, prvkey = colonies.add_executor(f"kj-test-{suffix}", f"kj-type-{suffix}")
    runs: list[ExecutorRun] = []

    def start(
        annotations: dict[str, str] | None = None,
        self_register: bool = False,
        wait_ready: bool = True,
        **settings: Any,
    ) -> ExecutorRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
        env.update(
            executor_env(
                colonies, kube, kube_namespace.name, name, f"kj-type-{suffix}", prvkey,
                **{"assign_timeout": 2, "takeback_check_seconds": 1, "log_level": "DEBUG",
                   "extra_annotations": json.dumps(annotations or {}), **settings},
            )
        )  # fmt: skip
        if self_register:
            env.pop("KUBEJOBS_EXECUTOR_PRVKEY")
            env["KUBEJOBS_COLONY_PRVKEY"] = colonies.colony_prvkey
            env["KUBEJOBS_EXECUTOR_NAME"] = f"kj-self-{suffix}"
        elif wait_ready:
            # the key Secret the log shipper mounts, as the chart or an operator makes it
            kube_namespace.kubectl(
                "create", "secret", "generic", "kubejobs-executor-key",
                f"--from-literal=prvkey={prvkey}", check=False,
            )  # fmt: skip
        run = ExecutorRun(
            colonies,
            kube_namespace,
            name,
            f"kj-type-{suffix}",
            prvkey,
            tmp_path / "executor.log",
            env,
        )
        runs.append(run)
        return run.start(wait_ready)

    yield start
    for run in runs:
        if run.proc and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(30)


# --- outcomes -----------------------------------------------------------------


def test_success_closes_the_process_and_deletes_the_job(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor()
    pid = run.submit(spec(run.type))
    process = run.wait_done(pid)
    assert process["state"] == SUCCESS, process["errors"]
    run.wait_no_jobs()
    metrics = run.metrics()
    assert 'kubejobs_processes_total{outcome="succeeded"} 1.0' in metrics
    assert "kubejobs_assign_to_apply_seconds_count 1.0" in metrics


def test_exit_code_fails_with_pod_container_and_code(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/exit-code": "3"})
    pid = run.submit(spec(run.type))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    assert "container main exited with code 3 (Error)" in process["errors"][0]
    assert "pod kj-" in process["errors"][0]
    run.wait_no_jobs()


def test_oom_killed_is_named(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/exit-code": "137", "kwok.test/reason": "OOMKilled"})
    process = run.wait_done(run.submit(spec(run.type)))
    assert process["state"] == FAILED
    assert "exited with code 137 (OOMKilled)" in process["errors"][0]


def test_success_output_is_the_termination_message(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/message": "answer=42"})
    process = run.wait_done(run.submit(spec(run.type)))
    assert process["state"] == SUCCESS, process["errors"]
    assert process["out"] == ["answer=42"]


def test_failure_carries_the_termination_message(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/exit-code": "2", "kwok.test/message": "input.csv: no such file"})
    process = run.wait_done(run.submit(spec(run.type)))
    assert process["state"] == FAILED
    assert "exited with code 2 (Error): input.csv: no such file" in process["errors"][0]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ErrImagePull", 'failed to pull image "busybox:nope": not found'),
        ("CreateContainerConfigError", 'secret "db-password" not found'),
    ],
)
def test_pod_that_cannot_start_fails_promptly_with_the_kubelet_reason(
    executor: Callable[..., ExecutorRun], reason: str, message: str
) -> None:
    run = executor({"kwok.test/waiting-reason": reason, "kwok.test/waiting-message": message})
    process = run.wait_done(run.submit(spec(run.type)))
    assert process["state"] == FAILED
    assert f"container main cannot start: {reason}: {message}" in process["errors"][0]
    run.wait_no_jobs()


def test_failed_job_is_kept_when_asked(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/exit-code": "1"}, keep_failed_seconds=3600)
    pid = run.submit(spec(run.type))
    assert run.wait_done(pid)["state"] == FAILED
    assert [j["metadata"]["name"] for j in run.jobs()] == ["kj-" + pid[:40]]


def test_unschedulable_pod_fails_with_the_scheduler_message(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor(unschedulable_timeout=2)
    # millicores: the Colonies server reads a cpu without "m" as 0
    pid = run.submit(spec(run.type, conditions={"cpu": "900000m"}))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    assert "could not be scheduled" in process["errors"][0]
    assert "Insufficient cpu" in process["errors"][0]
    run.wait_no_jobs()


REFUSALS = {
    "missing service account": (
        ("delete", "serviceaccount", "kubejobs-log-shipper"),
        'serviceaccount "kubejobs-log-shipper" not found',
    ),
    "exceeded quota": (
        ("create", "quota", "no-pods", "--hard=pods=0"),
        "exceeded quota: no-pods",
    ),
    "Pod Security": (
        ("label", "namespace", "{ns}", "pod-security.kubernetes.io/enforce=restricted"),
        'violates PodSecurity "restricted:latest"',
    ),
}


@pytest.mark.parametrize("cause", list(REFUSALS))
def test_pods_the_api_server_refuses_fail_the_process_with_its_message(
    executor: Callable[..., ExecutorRun], kube_namespace: Any, cause: str
) -> None:
    """FailedCreate: no pod will ever exist, so neither the walltime nor start_timeout applies."""
    change, says = REFUSALS[cause]
    run = executor()
    # after start: the start-up check would have caught the missing account
    kube_namespace.kubectl(*(arg.format(ns=kube_namespace.name) for arg in change))
    pid = run.submit(spec(run.type, conditions={"walltime": 86400}))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    assert "cannot create its pods (FailedCreate): Error creating: " in process["errors"][0]
    assert says in process["errors"][0], process["errors"]
    run.wait_no_jobs()
    assert 'kubejobs_processes_total{outcome="cannot_create"} 1.0' in run.metrics()


def test_not_ready_until_what_its_jobs_need_exists(
    executor: Callable[..., ExecutorRun], kube_namespace: Any, colonies: Any
) -> None:
    kube_namespace.kubectl("delete", "serviceaccount", "kubejobs-log-shipper")
    run = executor(wait_ready=False)
    pid = run.submit(spec(run.type))
    body = until(
        lambda: (r := run.readyz())[0] == 503 and "kubejobs-log-shipper" in r[1] and r[1],
        "/readyz saying what is missing",
    )
    assert "kubectl -n " + kube_namespace.name + " create serviceaccount" in body
    assert 'Secret "kubejobs-executor-key"' in body and "create secret generic" in body
    assert "not ready: service account" in run.log()
    assert colonies.get_process(pid)["state"] == WAITING  # nothing taken while not ready
    kube_namespace.kubectl("create", "serviceaccount", "kubejobs-log-shipper")
    kube_namespace.kubectl(
        "create", "secret", "generic", "kubejobs-executor-key", f"--from-literal=prvkey={run.prvkey}"
    )  # fmt: skip
    until(run.ready, "ready once both exist")
    assert run.wait_done(pid)["state"] == SUCCESS


def test_walltime_fails_with_deadline_exceeded(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/run-forever": "true"})
    pid = run.submit(spec(run.type, conditions={"walltime": 3}))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    assert "walltime=3s" in process["errors"][0] and "DeadlineExceeded" in process["errors"][0]
    run.wait_no_jobs()


def test_maxexectime_takeback_deletes_the_job(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/run-forever": "true"})
    pid = run.submit(spec(run.type, maxexectime=3, maxretries=0))
    until(lambda: run.jobs(), "the Job")
    process = run.wait_done(pid)
    assert process["state"] == FAILED  # by the server, not the executor
    run.wait_no_jobs()
    assert 'kubejobs_processes_total{outcome="taken_back"} 1.0' in run.metrics()


def test_takeback_then_reassignment_runs_a_fresh_job(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/run": "6s"})
    pid = run.submit(spec(run.type, maxexectime=2, maxretries=1))
    process = run.wait_done(pid)
    # attempt 1 is taken back at 2 s; attempt 2 is taken back too and fails at maxretries
    assert process["state"] == FAILED and process["retries"] >= 1
    run.wait_no_jobs()


def test_reassignment_before_the_takeback_check_starts_a_fresh_job(
    executor: Callable[..., ExecutorRun],
) -> None:
    # The take-back check never runs here: only the second assign can tell that the
    # server gave the process back. The first Job would complete at 6 s and close the
    # process with the abandoned attempt's result; the fresh Job outlives maxexectime.
    run = executor({"kwok.test/run": "6s"}, takeback_check_seconds=3600)
    pid = run.submit(spec(run.type, maxexectime=3, maxretries=1))
    process = run.wait_done(pid)
    assert process["state"] == FAILED, run.log()
    assert process["retries"] == 1
    assert "assigned again (a new attempt)" in run.log()
    run.wait_no_jobs()


def test_invalid_spec_fails_at_once_with_every_problem(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor()
    # The server refuses an unparsable mem at submit; a bad GPU name reaches the executor.
    bad = spec(run.type, conditions={"gpu": {"name": "not a label!"}})
    bad["kwargs"] = {"docker-image": "busybox:1.36"}
    process = run.wait_done(run.submit(bad))
    assert process["state"] == FAILED
    text = "\n".join(process["errors"])
    assert "$.conditions.gpu.name" in text and "$.kwargs" in text
    train = run.wait_done(run.submit(spec(run.type, funcname="train")))
    assert train["state"] == FAILED and "'train'" in train["errors"][0]
    assert run.jobs() == []
    assert run.proc is not None and run.proc.poll() is None


def test_multi_node_runs_an_indexed_job_with_a_service(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor({"kwok.test/run": "3s"})
    pid = run.submit(spec(run.type, conditions={"nodes": 3, "processespernode": 2}))
    job = until(lambda: run.jobs(), "the Job")[0]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    assert "kj-" + pid[:40] in run.services()
    assert run.wait_done(pid)["state"] == SUCCESS
    run.wait_no_jobs()
    until(lambda: "kj-" + pid[:40] not in run.services(), "the Service to be deleted")


def test_a_rank_stuck_on_its_node_fails_the_process_naming_it(
    executor: Callable[..., ExecutorRun],
) -> None:
    """Scheduled, but its containers never start (as with a volume that cannot be mounted)."""
    run = executor({"kwok.test/waiting-reason": "ContainerCreating"}, start_timeout=2)
    pid = run.submit(spec(run.type, conditions={"nodes": 2}))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    error = process["errors"][0]
    assert f"pod kj-{pid[:40]}-0-" in error and "(node rank 0)" in error, error
    assert "did not start within start_timeout 2s: main: ContainerCreating" in error, error
    run.wait_no_jobs()


# --- faults -------------------------------------------------------------------


def test_sigkill_mid_run_then_restart_finishes_every_process(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor({"kwok.test/run": "5s"})
    pids = [run.submit(spec(run.type)) for _ in range(3)]
    until(lambda: len(run.jobs()) == 3, "three Jobs")
    uids = {j["metadata"]["name"]: j["metadata"]["uid"] for j in run.jobs()}
    run.stop(signal.SIGKILL)
    run.start()
    for pid in pids:
        assert run.wait_done(pid)["state"] == SUCCESS
    run.wait_no_jobs()
    assert sorted(uids) == sorted("kj-" + p[:40] for p in pids)
    for pid in pids:  # one attempt each: no process was lost and re-run
        assert run.colonies.get_process(pid)["retries"] == 0


def test_sigterm_stops_cleanly_and_leaves_running_jobs(
    executor: Callable[..., ExecutorRun],
) -> None:
    run = executor({"kwok.test/run": "4s"})
    pid = run.submit(spec(run.type))
    until(lambda: run.jobs(), "the Job")
    assert run.stop(signal.SIGTERM) == 0
    assert [j["metadata"]["name"] for j in run.jobs()] == ["kj-" + pid[:40]]
    run.start()
    assert run.wait_done(pid)["state"] == SUCCESS
    run.wait_no_jobs()


def test_colonies_server_restart(executor: Callable[..., ExecutorRun], colonies: Any) -> None:
    run = executor({"kwok.test/run": "2s"})
    pid = run.submit(spec(run.type))
    until(lambda: run.jobs(), "the Job")
    colonies.restart(down_seconds=4)  # the Job completes while the server is down
    assert run.wait_done(pid)["state"] == SUCCESS
    later = run.submit(spec(run.type))
    assert run.wait_done(later)["state"] == SUCCESS
    run.wait_no_jobs()


def test_kube_apiserver_restart(executor: Callable[..., ExecutorRun], kube: Any) -> None:
    run = executor({"kwok.test/run": "2s"})
    pid = run.submit(spec(run.type))
    until(lambda: run.jobs(), "the Job")
    kube.restart_apiserver(down_seconds=4)
    assert run.wait_done(pid)["state"] == SUCCESS
    later = run.submit(spec(run.type))
    assert run.wait_done(later)["state"] == SUCCESS
    run.wait_no_jobs()


# --- startup, admission, recovery ----------------------------------------------


def test_self_registration_keeps_its_key_in_a_secret(
    executor: Callable[..., ExecutorRun], kube_namespace: Any
) -> None:
    run = executor(self_register=True)
    pid = run.submit(spec(run.type))
    assert run.wait_done(pid)["state"] == SUCCESS
    secret = json.loads(
        kube_namespace.kubectl("get", "secret", "kubejobs-executor-key", "-o", "json").stdout
    )
    assert secret["data"]["prvkey"]
    assert run.stop() == 0
    run.start()  # the same identity again: it may add, approve and assign
    assert run.wait_done(run.submit(spec(run.type)))["state"] == SUCCESS


def test_self_registered_restart_keeps_its_running_process(
    executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    # Adding the executor again would unregister it and requeue its RUNNING processes.
    run = executor({"kwok.test/run": "6s"}, self_register=True)
    pid = run.submit(spec(run.type))
    until(lambda: run.jobs(), "the Job")
    started = colonies.get_process(pid)["starttime"]
    assert run.stop() == 0
    run.start()
    process = run.wait_done(pid)
    assert process["state"] == SUCCESS, process["errors"]
    assert process["starttime"] == started and process["retries"] == 0
    assert "registered and approved already" in run.log()


def test_max_jobs_bounds_the_jobs_in_flight(executor: Callable[..., ExecutorRun]) -> None:
    run = executor({"kwok.test/run": "2s"}, max_jobs=2, concurrency=4)
    pids = [run.submit(spec(run.type)) for _ in range(5)]
    most = 0
    while any(run.colonies.get_process(p)["state"] not in (SUCCESS, FAILED) for p in pids):
        running = [
            j
            for j in run.jobs()
            if not any(
                c["type"] in ("Complete", "Failed") and c["status"] == "True"
                for c in j.get("status", {}).get("conditions", [])
            )
        ]
        most = max(most, len(running))
        assert most <= 2, [j["metadata"]["name"] for j in running]
        time.sleep(0.2)
    assert all(run.wait_done(p)["state"] == SUCCESS for p in pids)
    assert most >= 1


def test_process_assigned_before_a_crash_gets_its_job_on_restart(
    executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = executor()
    assert run.stop() == 0
    pid = run.submit(spec(run.type))
    assigned = colonies.assign(timeout=5, prvkey=run.prvkey)  # as if the executor died here
    assert assigned["processid"] == pid and assigned["state"] == RUNNING
    run.start()
    assert run.wait_done(pid)["state"] == SUCCESS
    run.wait_no_jobs()


def test_a_job_the_api_server_refuses_fails_the_process_naming_the_field(
    executor: Callable[..., ExecutorRun], tmp_path: Path
) -> None:
    """A template author's typo reaches the API server (strict field validation on the
    create): the process fails with its message, and nothing is left."""
    templates = tmp_path / "templates"
    templates.mkdir()
    for path in (ROOT / "templates").iterdir():
        if path.is_file():
            text = path.read_text()
            if path.name == "job.yaml.j2":
                text = text.replace(
                    "restartPolicy: Never", "restartPolicy: Never\n      restartPolicyy: Never"
                )
            (templates / path.name).write_text(text)
    run = executor(templates_dir=str(templates))
    pid = run.submit(spec(run.type))
    process = run.wait_done(pid)
    assert process["state"] == FAILED
    (error,) = process["errors"]
    assert error.startswith(f"Kubernetes refused the Job {job_name(pid)}: "), error
    assert 'unknown field "spec.template.spec.restartPolicyy"' in error, error
    run.wait_no_jobs()
