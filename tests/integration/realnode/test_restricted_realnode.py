"""restricted_pods against the real API server's Pod Security admission and the real kubelet.

All through the executor, in namespaces labelled
`pod-security.kubernetes.io/enforce: restricted`:

- a process without restricted_pods fails promptly with the Pod Security message
  (real node);
- with restricted_pods its pods are admitted and the process succeeds: on kwok
  nodes (the admission is the API server's), and on the real node with its pod
  network (no hostNetwork), where the real stager, program and shipper run as
  their users with a run_as_user that is not the injected containers' uid, the
  program reads and writes the staged data, its lines are shipped and its results
  synced back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.realnode.conftest import job_spec
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun, spec
from tests.integration.test_inpod_stager import latest, put_file

pytestmark = pytest.mark.integration
WAIT = 240.0
ENFORCE = "pod-security.kubernetes.io/enforce=restricted"
UID = 1234  # not the injected containers' 65532: the data volume must work across uids


def test_without_restricted_pods_the_process_fails_promptly_with_the_pod_security_message(
    real_executor: Callable[..., ExecutorRun], kube_namespace: Any
) -> None:
    run = real_executor()
    kube_namespace.kubectl("label", "namespace", kube_namespace.name, ENFORCE)
    # walltime a day: only the FailedCreate report can end this process within WAIT
    pid = run.submit(job_spec(run.type, "echo", ["never"], conditions={"walltime": 86400}))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    (error,) = process["errors"]
    assert "cannot create its pods (FailedCreate): Error creating: " in error, error
    assert 'violates PodSecurity "restricted:latest"' in error, error
    for named in ("allowPrivilegeEscalation != false", "runAsNonRoot != true"):
        assert named in error, error
    assert "hostNetwork" not in error, error  # the real node's pods have their own network
    run.wait_no_jobs()


def test_with_restricted_pods_an_enforcing_namespace_admits_the_pods(
    executor: Callable[..., ExecutorRun], kube_namespace: Any
) -> None:
    """kwok nodes: the admission is the API server's, whatever node the pod lands on."""
    run = executor(restricted_pods="true")
    kube_namespace.kubectl("label", "namespace", kube_namespace.name, ENFORCE)
    fs = {"mount": "/cfs", "dirs": [{"label": "/restricted/in", "dir": "/in"}]}
    pid = run.submit(spec(run.type, fs=fs))
    process = run.wait_done(pid)
    assert process["state"] == SUCCESS, process["errors"]
    run.wait_no_jobs()
    events = json.loads(kube_namespace.kubectl("get", "events", "-o", "json").stdout)["items"]
    assert not [e for e in events if e.get("reason") == "FailedCreate"]


def test_restricted_process_on_the_real_node_stages_runs_ships_and_syncs_as_run_as_user(
    real_executor: Callable[..., ExecutorRun], kube_namespace: Any, colonies: Any, s3: Any
) -> None:
    """End to end in a namespace enforcing restricted: the executor's Job is admitted, the
    real stager, program and shipper run as their users on the real kubelet, the program
    reads and writes the staged data, its lines are shipped and its results synced back."""
    run = real_executor(restricted_pods="true", run_as_user=str(UID))
    kube_namespace.kubectl("label", "namespace", kube_namespace.name, ENFORCE)
    base = f"/restricted/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, f"{base}/data/sub", "in.txt", b"hello restricted\n")
    script = (
        'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; '
        # fsGroup: the kubelet gave the data volume to group UID, setgid (new files inherit it)
        "echo \"volume=$(stat -c '%g %A' /cfs)\"; "
        "cat /cfs/data/sub/in.txt && "
        # the stager (uid 65532) made sub/: the program (uid 1234) writes into it
        "tr a-z A-Z </cfs/data/sub/in.txt >/cfs/data/sub/out.txt && echo done"
    )
    doc = job_spec(
        run.type,
        "sh",
        ["-c", script],
        fs={"mount": "/cfs", "dirs": [{"label": f"{base}/data", "dir": "/data"}]},
    )
    pid = run.submit(doc)
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    log = colonies.log_text(pid).splitlines()
    assert f"uid={UID} gid={UID} groups={UID}" in log, log
    assert f"volume={UID} drwxrwsrwx" in log, log
    assert "hello restricted" in log and "done" in log, log
    out = latest(colonies, f"{base}/data/sub", "out.txt")
    assert out["checksum"] == hashlib.sha256(b"HELLO RESTRICTED\n").hexdigest()
    run.wait_no_jobs()
    events = json.loads(kube_namespace.kubectl("get", "events", "-o", "json").stdout)["items"]
    assert not [e for e in events if e.get("reason") == "FailedCreate"]
