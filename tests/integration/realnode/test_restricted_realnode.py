"""restricted_pods against the real API server's Pod Security admission and the real kubelet.

The real node has no pod network, so its pods need hostNetwork, which the
restricted (and baseline) level forbids: no pod can both run there and be
admitted by a namespace that enforces restricted. So:

- enforcement, through the executor: in a namespace labelled
  `pod-security.kubernetes.io/enforce: restricted`, a process without
  restricted_pods fails promptly with the Pod Security message (real node);
  with restricted_pods its pods are admitted and the process succeeds (kwok
  nodes, the same API server and Job controller).
- the runtime, on the real node: the Job kubejobs renders with restricted_pods
  and a run_as_user that is not the injected containers' uid, with hostNetwork
  added (the one change this node needs), in a namespace that warns on
  restricted: the API server's warning names hostNetwork and nothing else, and
  the real stager, program and shipper run as their users, the program reads and
  writes the staged data, its lines are shipped and its results synced back.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec
from testenv.node import LABEL, POD_PLACEMENT, RealNode, kubejobs_image
from tests.integration.polling import until
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
    for named in ("host namespaces (hostNetwork=true)", "allowPrivilegeEscalation != false"):
        assert named in error, error
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


def test_restricted_pod_on_the_real_node_stages_runs_ships_and_syncs_as_run_as_user(
    real_node: RealNode, kube_namespace: Any, colonies: Any, s3: Any
) -> None:
    suffix = os.urandom(4).hex()
    name, prvkey = colonies.add_executor(f"kj-restricted-{suffix}", f"kj-rtype-{suffix}")
    namespace = kube_namespace.name
    real_node.prepare_namespace(namespace, prvkey, dict(s3.config.env))
    kube_namespace.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"
    )
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
        f"kj-rtype-{suffix}",
        "sh",
        ["-c", script],
        fs={"mount": "/cfs", "dirs": [{"label": f"{base}/data", "dir": "/data"}]},
    )
    pid = colonies.submit(doc)["processid"]
    assigned = colonies.assign(prvkey=prvkey)
    assert assigned["processid"] == pid
    settings = RenderSettings(
        restricted_pods=True,
        run_as_user=UID,
        namespace=namespace,
        colony_name=colonies.colony_name,
        executor_name=name,
        colonies_host=colonies.host,
        colonies_port=colonies.port,
        inpod_image=kubejobs_image(),
        inpod_env=real_node.api_env,
        node_selector=LABEL,
        tolerations=tuple(POD_PLACEMENT["tolerations"]),
    )
    (job,) = Renderer(settings).render(validate_spec(doc), pid)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == UID
    # The one change this node needs (no pod network); everything else as rendered.
    pod.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    applied = kube_namespace.kubectl("create", "-f", "-", input=json.dumps(job))
    warning = next(
        line for line in applied.stderr.splitlines() if "would violate PodSecurity" in line
    )
    assert warning.endswith('"restricted:latest": host namespaces (hostNetwork=true)'), warning

    def finished() -> list[str]:
        status = kube_namespace.get_json("jobs", job["metadata"]["name"])
        conditions = status.get("status", {}).get("conditions", [])
        return [c["type"] for c in conditions if c["status"] == "True"]

    until(lambda: {"Complete", "Failed"} & set(finished()), "the restricted Job to finish", WAIT)
    pods = kube_namespace.kubectl("get", "pods", "-o", "json").stdout
    assert "Complete" in finished(), pods
    log = colonies.log_text(pid).splitlines()
    assert f"uid={UID} gid={UID} groups={UID}" in log, log
    assert f"volume={UID} drwxrwsrwx" in log, log
    assert "hello restricted" in log and "done" in log, log
    out = latest(colonies, f"{base}/data/sub", "out.txt")
    assert out["checksum"] == hashlib.sha256(b"HELLO RESTRICTED\n").hexdigest()
    colonies.close(pid, prvkey=prvkey)
