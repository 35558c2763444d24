"""The Helm chart for real: its executor runs as a pod on real-node-0 and runs a spec submitted
with the `colonies` CLI.

The chart is installed with the image images/build.sh built, on the real node
(its toleration and selector; the pod network, no hostNetwork: the executor reaches
the API server through the ``kubernetes`` Service and the Colonies server through a
Service named ``colonies`` whose endpoint is the server outside the cluster, as an
operator would set it up). The executor uses in-cluster config with the chart's
ServiceAccount, RBAC and key Secret; the Jobs it makes run on the real node too,
with the chart's log-shipper account.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from kubejobs import __version__
from kubejobs.adapters.colonies import key_id
from testenv.node import LABEL, NODE_NAME, TAINT, RealNode
from tests.integration import test_chart_install as chart_tests
from tests.integration.polling import until
from tests.integration.realnode.conftest import job_spec
from tests.integration.test_colonies_cli import process_json, submit_and_wait
from tests.integration.test_executor_e2e import SUCCESS

pytestmark = pytest.mark.integration
install = chart_tests.install  # `helm install` of charts/kubejobs into this test's namespace
WAIT = 240.0


def executor_pod(kube_namespace: Any) -> dict[str, Any] | None:
    items = kube_namespace.get_json("pods", selector="app.kubernetes.io/component=executor")[
        "items"
    ]
    return items[0] if items else None


def ready(pod: dict[str, Any] | None) -> bool:
    if pod is None:
        return False
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def node_values(
    real_node: RealNode,
    colonies: Any,
    namespace: str,
    executor_name: str,
    executor_type: str,
    config: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """Chart values whose executor pod and Jobs run on the real node; `top` adds top-level
    values (keys), `config` more executor settings."""
    toleration = {**TAINT, "operator": "Equal"}
    return {
        "image": {"repository": "localhost/kubejobs", "tag": __version__},
        "nodeSelector": LABEL,
        "tolerations": [toleration],
        **top,
        "config": {
            "colonies_host": real_node.expose("colonies", colonies.port, namespace),
            "colonies_port": colonies.port,
            "executor_name": executor_name,
            "executor_type": executor_type,
            "assign_timeout": 2,
            "node_selector": LABEL,
            "tolerations": [toleration],
            "termination_grace_seconds": 30,
            **(config or {}),
        },
    }


def install_values(
    install: chart_tests.Install, values: dict[str, Any], colonies: Any, tmp_path: Path
) -> None:
    """`helm install -f` a values file (it holds keys: never printed), colony last."""
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))  # JSON is YAML
    install("-f", str(values_file), "--set", colony_value(colonies))


def colony_value(colonies: Any) -> str:
    """The --set of the colony name (after the install fixture's default)."""
    return f"config.colony_name={colonies.colony_name}"


def ready_executor_pod(kube_namespace: Any) -> dict[str, Any] | None:
    pod = executor_pod(kube_namespace)
    return pod if ready(pod) else None


def test_chart_executor_runs_on_the_real_node_and_a_cli_submit_succeeds(
    install: chart_tests.Install,
    real_node: RealNode,
    kube_namespace: Any,
    colonies: Any,
    tmp_path: Path,
) -> None:
    suffix = os.urandom(4).hex()
    executor_type = f"kj-chart-type-{suffix}"
    name, prvkey = colonies.add_executor(f"kj-chart-{suffix}", executor_type)
    values = node_values(
        real_node, colonies, kube_namespace.name, name, executor_type,
        executorKey={"source": "value", "prvkey": prvkey},
    )  # fmt: skip
    install_values(install, values, colonies, tmp_path)

    pod = until(lambda: ready_executor_pod(kube_namespace), "the executor pod Ready", WAIT)
    assert pod["spec"]["nodeName"] == NODE_NAME and not pod["spec"].get("hostNetwork")
    executor = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "executor")
    assert executor["restartCount"] == 0 and "running" in executor["state"]

    spec_file = tmp_path / "hello.json"
    script = "echo hello from the chart; printf chart-answer=7 >/dev/termination-log"
    spec_file.write_text(json.dumps(job_spec(executor_type, "sh", ["-c", script])))
    code, pid = submit_and_wait(colonies, spec_file)
    assert code == 0
    process = process_json(colonies, pid)
    assert (process["state"], process["out"]) == (SUCCESS, ["chart-answer=7"])
    assert colonies.log_text(pid).splitlines() == ["hello from the chart"]
    # the executor that ran it is the chart's pod: its own log names the process
    log = kube_namespace.kubectl("logs", pod["metadata"]["name"], "-c", "executor").stdout
    assert pid in log


def test_chart_statefulset_replica_names_itself_from_its_pod_on_the_real_node(
    install: chart_tests.Install,
    real_node: RealNode,
    kube_namespace: Any,
    colonies: Any,
    tmp_path: Path,
) -> None:
    """statefulSet.enabled on a real kubelet: `$(POD_NAME)` expands to kj-kubejobs-0, the
    replica generates its key into Secret kj-kubejobs-executor-key-0, registers itself as
    <executor_name>-0 and runs a spec (its Job's log shipper mounts that Secret).
    """
    suffix = os.urandom(4).hex()
    executor_type = f"kj-sts-type-{suffix}"
    values = node_values(
        real_node, colonies, kube_namespace.name, f"kj-sts-{suffix}", executor_type,
        replicaCount=1,
        statefulSet={"enabled": True},
        executorKey={"source": "generate"},
        colonyKey={"source": "value", "prvkey": colonies.colony_prvkey},
    )  # fmt: skip
    install_values(install, values, colonies, tmp_path)

    pod = until(lambda: ready_executor_pod(kube_namespace), "the replica's pod Ready", WAIT)
    assert pod["metadata"]["name"] == "kj-kubejobs-0"
    secret = json.loads(
        kube_namespace.kubectl("get", "secret", "kj-kubejobs-executor-key-0", "-o", "json").stdout
    )
    assert secret["data"]["prvkey"]
    registered = colonies.rpc(
        {"msgtype": "getexecutormsg", "colonyname": colonies.colony_name,
         "executorname": f"kj-sts-{suffix}-0"}
    )  # fmt: skip
    assert registered["state"] == 1  # approved, by itself with the colony key

    spec_file = tmp_path / "hello.json"
    spec_file.write_text(json.dumps(job_spec(executor_type, "sh", ["-c", "echo from replica 0"])))
    code, pid = submit_and_wait(colonies, spec_file)
    assert code == 0
    process = process_json(colonies, pid)
    assert process["state"] == SUCCESS
    assert process["assignedexecutorid"] == registered["executorid"]
    assert colonies.log_text(pid).splitlines() == ["from replica 0"]


def test_two_releases_in_one_namespace_each_run_their_own_type_on_the_real_node(
    install: chart_tests.Install,
    real_node: RealNode,
    kube_namespace: Any,
    colonies: Any,
    tmp_path: Path,
) -> None:
    """A CPU pool beside a GPU pool: two releases of the chart in one namespace, each
    self-registering with the colony key. They install (no shared object), each executor
    pod runs on the real node with its own key Secret and shipper account, and each runs
    its own executor type's process."""
    suffix = os.urandom(4).hex()
    pools = {pool: (f"e-{pool}-{suffix}", f"kj-{pool}-{suffix}") for pool in ("cpu", "gpu")}
    for pool, (name, executor_type) in pools.items():
        values = node_values(
            real_node, colonies, kube_namespace.name, name, executor_type,
            executorKey={"source": "generate"},
            colonyKey={"source": "value", "prvkey": colonies.colony_prvkey},
        )  # fmt: skip
        values_file = tmp_path / f"{pool}.json"
        values_file.write_text(json.dumps(values))  # JSON is YAML; it holds a key
        install("-f", str(values_file), "--set", colony_value(colonies), release=pool)

    def ready_pod(pool: str) -> dict[str, Any] | None:
        out = kube_namespace.kubectl(
            "get", "pods", "-l", f"app.kubernetes.io/instance={pool}", "-o", "json"
        ).stdout
        items = json.loads(out)["items"]
        return items[0] if items and ready(items[0]) else None

    for pool, (name, executor_type) in pools.items():
        pod = until(lambda pool=pool: ready_pod(pool), f"the {pool} executor pod Ready", WAIT)
        assert pod["spec"]["nodeName"] == NODE_NAME
        secret = json.loads(
            kube_namespace.kubectl(
                "get", "secret", f"{pool}-kubejobs-executor-key", "-o", "json"
            ).stdout
        )
        assert secret["metadata"]["annotations"]["kubejobs.io/executor"] == name
        executor_id = key_id(base64.b64decode(secret["data"]["prvkey"]).decode().strip())

        spec_file = tmp_path / f"{pool}-spec.json"
        script = f"echo hello from {pool}"
        spec_file.write_text(json.dumps(job_spec(executor_type, "sh", ["-c", script])))
        code, pid = submit_and_wait(colonies, spec_file)
        assert code == 0
        process = process_json(colonies, pid)
        assert process["state"] == SUCCESS
        assert process["assignedexecutorid"] == executor_id, pool
        assert colonies.log_text(pid).splitlines() == [f"hello from {pool}"]
