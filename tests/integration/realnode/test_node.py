"""The real node itself: registered beside the kwok nodes, tainted, and running real containers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testenv.node import BUSYBOX_IMAGE, NODE_NAME, POD_PLACEMENT, RealNode, kubejobs_image
from tests.integration.polling import until

pytestmark = pytest.mark.integration


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", **POD_PLACEMENT, "containers": containers, **spec},
    }


def finished(kube_namespace: Any, name: str) -> dict[str, Any] | None:
    out = kube_namespace.kubectl("get", "pod", name, "-o", "json").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc if doc["status"].get("phase") in ("Succeeded", "Failed") else None


def test_node_is_ready_tainted_and_beside_the_kwok_nodes(real_node: RealNode, kube: Any) -> None:
    nodes = {n["metadata"]["name"]: n for n in kube.get_json("/api/v1/nodes")["items"]}
    assert "kwok-node-0" in nodes and NODE_NAME in nodes
    node = nodes[NODE_NAME]
    assert {"key": "kubejobs.io/real-node", "value": "true", "effect": "NoSchedule"} in node[
        "spec"
    ]["taints"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    images = real_node.images()
    for image in (BUSYBOX_IMAGE, kubejobs_image(), "localhost/pause:1"):
        assert image in images


def test_pod_without_the_toleration_stays_off_the_real_node(
    real_node: RealNode, kube_namespace: Any
) -> None:
    manifest = pod("plain", [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["true"]}])
    del manifest["spec"]["tolerations"]
    kube_namespace.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def refusal() -> str:
        out = kube_namespace.kubectl("get", "events", "-o", "json").stdout
        messages = [
            e.get("message", "")
            for e in json.loads(out)["items"]
            if e.get("reason") == "FailedScheduling"
        ]
        return "\n".join(messages)

    # no kwok node runs the pod either: kwok's nodes are not in its node selector
    assert "untolerated taint" in until(refusal, "the scheduler's refusal", 60)
    doc = json.loads(kube_namespace.kubectl("get", "pod", "plain", "-o", "json").stdout)
    assert not doc["spec"].get("nodeName")


def test_real_container_exit_code_termination_message_logs_and_native_sidecar(
    real_node: RealNode, kube_namespace: Any
) -> None:
    sidecar = {
        "name": "side",
        "image": BUSYBOX_IMAGE,
        "restartPolicy": "Always",
        "command": ["sh", "-c", "echo side up; exec sleep 3600"],
    }
    main = {
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "command": [
            "sh",
            "-c",
            "echo out-1; echo err-1 >&2; printf gone-with-3 >/dev/termination-log; exit 3",
        ],
    }
    manifest = pod("real", [main], initContainers=[sidecar], terminationGracePeriodSeconds=2)
    kube_namespace.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    doc = until(lambda: finished(kube_namespace, "real"), "the pod to finish", 120)
    assert doc["spec"]["nodeName"] == NODE_NAME
    assert doc["status"]["phase"] == "Failed"
    state = doc["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (state["exitCode"], state["reason"], state["message"]) == (3, "Error", "gone-with-3")
    logs = kube_namespace.kubectl("logs", "real", "-c", "main").stdout
    # stdout and stderr are separate pipes: their lines may interleave either way
    assert sorted(logs.splitlines()) == ["err-1", "out-1"]
    assert "side up" in kube_namespace.kubectl("logs", "real", "-c", "side").stdout


def test_injected_image_runs_non_root_on_a_read_only_root(
    real_node: RealNode, kube_namespace: Any
) -> None:
    container = {
        "name": "main",
        "image": kubejobs_image(),
        "command": [
            "python3",
            "-c",
            "import os, kubejobs; open('/dev/termination-log','w').write(f'{os.getuid()}:{os.getgid()}')",
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    kube_namespace.kubectl("apply", "-f", "-", input=json.dumps(pod("image", [container])))
    doc = until(lambda: finished(kube_namespace, "image"), "the pod to finish", 120)
    state = doc["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (doc["status"]["phase"], state["message"]) == ("Succeeded", "65532:65532")
