"""Fixtures for the tests whose pods run real containers on ``real-node-0`` (testenv/node.py).

- ``real_node`` (session) -> testenv.node.RealNode: containerd + kubelet
  registered with the session's ``kube`` cluster, images imported.
- ``executor`` -> the executor fixture of tests/integration/test_executor_e2e.py
  (the same subprocess, the same identity handling), reused here.
- ``real_executor`` -> ``start(**settings)``: an executor whose Jobs land on
  the real node (the node's toleration and selector, ``host_network``, the
  injected containers from the image built by images/build.sh and told where
  the API server is through ``inpod_env``), with the namespace prepared as the
  chart would: the log shipper's Role, the executor key Secret and the S3
  Secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testenv.node import BUSYBOX_IMAGE, LABEL, TAINT, RealNode, kubejobs_image
from tests.integration.conftest import _register
from tests.integration.test_executor_e2e import ExecutorRun, executor

__all__ = ["executor"]  # re-exported as a fixture of this directory


@pytest.fixture(scope="session")
def real_node(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    node = RealNode(kube, tmp_path_factory.mktemp("realnode"))
    try:
        node.start()
    finally:
        _register(*node.services.values())
    try:
        yield node
    finally:
        node.stop()


def real_node_settings(node: RealNode) -> dict[str, str]:
    """Executor settings (KUBEJOBS_<NAME> values) that put its Jobs on the real node."""
    return {
        "inpod_image": kubejobs_image(),
        "host_network": "true",
        "inpod_env": json.dumps(node.api_env),
        "node_selector": json.dumps(LABEL),
        "tolerations": json.dumps([{**TAINT, "operator": "Equal"}]),
        "termination_grace_seconds": "30",
    }


def prepare_namespace(kube_namespace: Any, prvkey: str, s3: Any | None) -> None:
    """What the chart gives a Jobs namespace: the shipper's Role, the key and S3 Secrets."""
    ns = kube_namespace.name
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kubejobs-log-shipper", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "kubejobs-log-shipper", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kubejobs-log-shipper",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "kubejobs-log-shipper", "namespace": ns}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kubejobs-executor-key", "namespace": ns},
            "stringData": {"prvkey": prvkey},
        },
    ]
    if s3 is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kubejobs-s3", "namespace": ns},
                "stringData": dict(s3.config.env),
            }
        )
    kube_namespace.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )


@pytest.fixture
def real_executor(
    executor: Callable[..., ExecutorRun], real_node: RealNode, kube_namespace: Any, s3: Any
) -> Callable[..., ExecutorRun]:
    """start(**settings) -> a running executor whose Jobs run on the real node."""

    def start(**settings: Any) -> ExecutorRun:
        run = executor(**{**real_node_settings(real_node), **settings})
        prepare_namespace(kube_namespace, run.prvkey, s3)
        return run

    return start


def job_spec(executor_type: str, cmd: str, args: list[str], **extra: Any) -> dict[str, Any]:
    """A function spec for the real node: busybox, no shell unless asked for."""
    conditions: dict[str, Any] = {"executortype": executor_type}
    conditions.update(extra.pop("conditions", {}))
    doc: dict[str, Any] = {
        "funcname": "execute",
        "kwargs": {"docker-image": BUSYBOX_IMAGE, "cmd": cmd, "args": args},
        "conditions": conditions,
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }
    doc.update(extra)
    return doc
