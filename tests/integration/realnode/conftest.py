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

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testenv.node import BUSYBOX_IMAGE, RealNode
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


@pytest.fixture
def real_executor(
    executor: Callable[..., ExecutorRun], real_node: RealNode, kube_namespace: Any, s3: Any
) -> Callable[..., ExecutorRun]:
    """start(**settings) -> a running executor whose Jobs run on the real node."""

    def start(**settings: Any) -> ExecutorRun:
        run = executor(**{**real_node.executor_settings(), **settings})
        real_node.prepare_namespace(kube_namespace.name, run.prvkey, dict(s3.config.env))
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
