"""Smoke tests: the Kubernetes control plane and kwok nodes are real and behave."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.polling import until

pytestmark = pytest.mark.integration


def job(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox:1.36",
                "command": ["true"],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            }
        ],
    }
    pod_spec.update(spec.pop("pod_spec", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"kwok.test/run": "300ms", **(annotations or {})}},
                "spec": pod_spec,
            },
            **spec,
        },
    }


def create(ns: Any, obj: dict[str, Any]) -> None:
    ns.kubectl("create", "-f", "-", input=json.dumps(obj))


def wait_job(ns: Any, name: str, condition: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        j = json.loads(ns.kubectl("get", "job", name, "-o", "json").stdout)
        conds = {
            c["type"]: c for c in j.get("status", {}).get("conditions", []) if c["status"] == "True"
        }
        if condition in conds:
            return j
        if time.monotonic() > deadline:
            raise AssertionError(f"job {name} not {condition} after {timeout}s: {j.get('status')}")
        time.sleep(0.2)


def job_pods(ns: Any, name: str) -> list[dict[str, Any]]:
    out = ns.kubectl("get", "pods", "-l", f"job-name={name}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_version_reports_the_release(kube):
    assert kube.get_json("/version")["gitVersion"] == kube.version


def test_job_completes_on_a_kwok_node(kube_namespace):
    create(kube_namespace, job("ok"))
    j = wait_job(kube_namespace, "ok", "Complete")
    assert j["status"]["succeeded"] == 1
    (pod,) = job_pods(kube_namespace, "ok")
    assert pod["spec"]["nodeName"].startswith("kwok-")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_failing_job_reports_exit_code(kube_namespace):
    create(kube_namespace, job("bad", {"kwok.test/exit-code": "3"}))
    j = wait_job(kube_namespace, "bad", "Failed")
    assert j["status"].get("failed") == 1
    (pod,) = job_pods(kube_namespace, "bad")
    assert pod["status"]["phase"] == "Failed"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3
    assert term["reason"] == "Error"


def test_termination_message(kube_namespace):
    create(kube_namespace, job("said", {"kwok.test/message": "result: 42"}))
    wait_job(kube_namespace, "said", "Complete")
    (pod,) = job_pods(kube_namespace, "said")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term.get("message")) == (0, "result: 42")


def test_waiting_reason_keeps_the_pod_pending(kube_namespace):
    reason = {
        "kwok.test/waiting-reason": "ErrImagePull",
        "kwok.test/waiting-message": 'pull access denied for "nope"',
    }
    create(kube_namespace, job("stuck", reason))
    deadline = time.monotonic() + 30
    while True:
        pods = job_pods(kube_namespace, "stuck")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        if statuses:
            break
        assert time.monotonic() < deadline, f"no container status: {pods}"
        time.sleep(0.2)
    assert pods[0]["status"]["phase"] == "Pending"
    waiting = statuses[0]["state"]["waiting"]
    assert waiting == {"reason": "ErrImagePull", "message": 'pull access denied for "nope"'}


def test_oomkilled_reason(kube_namespace):
    create(
        kube_namespace, job("oom", {"kwok.test/exit-code": "137", "kwok.test/reason": "OOMKilled"})
    )
    wait_job(kube_namespace, "oom", "Failed")
    (pod,) = job_pods(kube_namespace, "oom")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


def test_active_deadline_fails_job(kube_namespace):
    create(kube_namespace, job("slow", {"kwok.test/run-forever": "true"}, activeDeadlineSeconds=2))
    j = wait_job(kube_namespace, "slow", "Failed", timeout=60)
    reasons = {c["type"]: c.get("reason") for c in j["status"]["conditions"]}
    assert reasons["Failed"] == "DeadlineExceeded"


def test_native_sidecar_job_completes(kube_namespace):
    sidecar = {
        "name": "shipper",
        "image": "busybox:1.36",
        "restartPolicy": "Always",
        "command": ["sleep", "infinity"],
    }
    stager = {"name": "stager", "image": "busybox:1.36", "command": ["true"]}
    create(kube_namespace, job("side", pod_spec={"initContainers": [sidecar, stager]}))
    wait_job(kube_namespace, "side", "Complete")
    (pod,) = job_pods(kube_namespace, "side")
    assert pod["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert pod["status"]["phase"] == "Succeeded"


def test_indexed_job_with_parallel_pods(kube_namespace):
    create(kube_namespace, job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    j = wait_job(kube_namespace, "idx", "Complete")
    assert j["status"]["succeeded"] == 3


def test_gpu_pod_lands_on_gpu_node(kube_namespace):
    gpu = {"limits": {"nvidia.com/gpu": "2"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    create(
        kube_namespace,
        job(
            "gpu",
            pod_spec={
                "containers": [
                    {
                        "name": "main",
                        "image": "cuda:12",
                        "command": ["nvidia-smi"],
                        "resources": gpu,
                    }
                ]
            },
        ),
    )
    wait_job(kube_namespace, "gpu", "Complete")
    (pod,) = job_pods(kube_namespace, "gpu")
    assert pod["spec"]["nodeName"] == "kwok-gpu-node-0"


def test_pod_logs_through_the_api(kube_namespace, kube):
    kube_namespace.set_logs("main", ["hello from kwok", "second line"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "logger", "annotations": {"kwok.test/run-forever": "true"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    }
    create(kube_namespace, pod)
    kube_namespace.kubectl("wait", "--for=condition=Ready", "pod/logger", "--timeout=30s")
    from kubernetes import client

    api = client.CoreV1Api(kube.api_client())
    deadline = time.monotonic() + 30
    while True:
        try:
            text = api.read_namespaced_pod_log("logger", kube_namespace.name, container="main")
            break
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert text == "hello from kwok\nsecond line\n"


def test_server_side_dry_run_rejects_what_the_schema_allows(kube_namespace, kubeconform, tmp_path):
    bad = job("bad-name")
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "main_container"
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(bad))
    schema = kubeconform.run(str(manifest))
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert json.loads(schema.stdout)["summary"]["valid"] == 1
    res = kube_namespace.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-f", str(manifest), check=False
    )
    assert res.returncode != 0
    assert "main_container" in res.stderr and "Invalid value" in res.stderr


def test_foreground_deletion_removes_pods(kube_namespace):
    create(kube_namespace, job("gone", {"kwok.test/run-forever": "true"}))
    # `kubectl wait -l` fails at once while no pod matches yet: wait for the pod first
    until(lambda: job_pods(kube_namespace, "gone"), "the Job's pod created", 30)
    kube_namespace.kubectl(
        "wait", "--for=condition=Ready", "pod", "-l", "job-name=gone", "--timeout=30s"
    )
    kube_namespace.kubectl("delete", "job", "gone", "--cascade=foreground", "--timeout=60s")
    assert job_pods(kube_namespace, "gone") == []


def test_ttl_after_finished_deletes_job(kube_namespace):
    # A short TTL from the start races the poll below (the Job can be gone before
    # it is seen Complete), so finish first, then shorten the TTL: it is mutable.
    create(kube_namespace, job("ttl", ttlSecondsAfterFinished=3600))
    wait_job(kube_namespace, "ttl", "Complete")
    kube_namespace.kubectl(
        "patch", "job", "ttl", "--type=merge", "-p", '{"spec":{"ttlSecondsAfterFinished":1}}'
    )
    deadline = time.monotonic() + 30
    while kube_namespace.kubectl("get", "job", "ttl", check=False).returncode == 0:
        assert time.monotonic() < deadline, "TTL controller did not delete the job"
        time.sleep(0.5)


def test_service_account_token_is_issued(kube_namespace):
    res = kube_namespace.kubectl("create", "token", "default")
    assert res.stdout.count(".") == 2
    # the root CA the controller-manager publishes into every namespace
    deadline = time.monotonic() + 30
    while kube_namespace.kubectl("get", "configmap", "kube-root-ca.crt", check=False).returncode:
        assert time.monotonic() < deadline, "kube-root-ca.crt not published"
        time.sleep(0.2)


def test_apiserver_restart(kube, kube_namespace):
    kube.restart_apiserver()
    create(kube_namespace, job("after-restart"))
    wait_job(kube_namespace, "after-restart", "Complete")
