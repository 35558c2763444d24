"""A real Kueue for the integration tests that need one (issue 15).

Use in a test module::

    from tests.integration.kueue_fixtures import kueue, kueue_queues  # noqa: F401

- ``kueue`` (session) -> testenv.kueue.KueueServer on the session's ``kube``:
  ``.create_queues(ns, name="kj-queue", cpu="4", memory="64Gi", preemption=False,
  resources=None)`` -> KueueQueues, ``.delete_queues(q)``,
  ``.create_priority_class(name, value)``, ``.delete_priority_class(name)``,
  ``.workloads_of_job(ns, job_uid)``, ``.service`` (its log).
- ``kueue_queues`` (per test) -> KueueQueues in the test's ``kube_namespace``
  (cpu 4, memory 64Gi, no preemption): label Jobs with ``.job_labels`` and
  create them with ``spec.suspend: true``. Tests that need other quotas call
  ``kueue.create_queues`` themselves.

Only Jobs labelled ``kueue.x-k8s.io/queue-name`` reach Kueue's webhooks; every
other test on the shared API server is unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv.kube import KubeCluster
from testenv.kueue import KueueQueues, KueueServer

_CONFTEST = Path(__file__).resolve().parent / "conftest.py"


def _register_logs(config: pytest.Config, server: KueueServer) -> None:
    """Hand Kueue's log to conftest's per-test log sections (as its own fixtures do).

    conftest.py is loaded by pytest as a plugin under a module name of its
    choosing; importing it again would make a second copy with an empty
    registry, so the loaded one is looked up.
    """
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == _CONFTEST:
            register: Any = getattr(plugin, "_register", None)
            if register is not None:
                register(*server.services.values())
            return


@pytest.fixture(scope="session")
def kueue(
    kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[KueueServer]:
    server = KueueServer(kube, tmp_path_factory.mktemp("kueue"))
    _register_logs(pytestconfig, server)
    server.start()
    try:
        yield server
    finally:
        # removes the webhooks before stopping the process
        server.stop()


@pytest.fixture
def kueue_queues(kueue: KueueServer, kube_namespace: Any) -> Iterator[KueueQueues]:
    queues = kueue.create_queues(kube_namespace.name)
    try:
        yield queues
    finally:
        with contextlib.suppress(Exception):
            kueue.delete_queues(queues)
