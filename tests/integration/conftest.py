"""Fixtures that start real servers on loopback for the integration tests.

Servers are session-scoped and started lazily by the first test that asks
for them; everything is torn down at the end of the session. `make test` runs
the suite on pytest-xdist workers (``-n 4 --dist loadfile``, long files first: tests/conftest.py): each worker is a
session of its own, with its own servers on ports from its own block
(testenv/_proc.free_port), its own real node (cgroup root, containerd, kubelet)
and temporary directory; the tests of one file run on one worker, in order. A
test that stops or restarts a server therefore affects only its worker's later
tests, as in a serial run, and nothing is shared between workers but the
machine and the images built under a lock (images/build.sh). Setup once per
machine: ``testenv/install.sh``. When a test fails, the output each server
wrote during that test is attached to the report (sections "server log: X").

Fixtures (mark tests that use them with ``pytestmark = pytest.mark.integration``):

- ``kube`` -> testenv.kube.KubeCluster: ``.kubeconfig`` (Path), ``.server``,
  ``.env`` ({"KUBECONFIG": ...}), ``.kubectl(*args, input=None)``,
  ``.api_client()``, ``.get_json(path)``, ``.restart_apiserver(down_seconds=0)``,
  ``.stop_apiserver()`` / ``.start_apiserver()``, ``.add_node(FakeNode(...))``,
  ``.set_logs(ns, container, lines, pod=None, follow=False, append=False)``,
  ``.version`` ("v1.34.4"), ``.nodes``.
- ``kube_namespace`` -> KubeNamespace (fresh namespace per test): ``.name``,
  ``.kube``, ``.set_logs(container, lines, pod=None, follow=False, append=False)``,
  ``.kubectl(*args)`` (namespaced).
- ``colonies`` -> testenv.colonies.ColoniesServer: ``.host``, ``.port``, ``.url``,
  ``.env`` (COLONIES_*), ``.server_prvkey``, ``.colony_name``, ``.colony_prvkey``,
  ``.executor_name``, ``.executor_type``, ``.executor_prvkey``, ``.submit(spec)``,
  ``.get_process(id)``, ``.wait_state(id)``, ``.assign()``, ``.add_log()``,
  ``.close()``, ``.fail()``, ``.get_logs(id, count, since)``, ``.log_text(id)``,
  ``.add_executor(name)``, ``.remove_executor(name)``, ``.rpc(msg, prvkey)``,
  ``.stop()`` / ``.start()`` / ``.restart(down_seconds=0)``.
- ``s3`` -> testenv.s3.S3Server: ``.config`` (S3Config: endpoint host:port,
  accesskey, secretkey, bucket, region, tls, skipverify; ``.env`` AWS_S3_*),
  ``.client()`` (boto3).
- ``helm`` -> path of the helm binary (its directory is also put on PATH).
- ``kubeconform`` -> KubeconformTool: ``.path``, ``.schema_location``,
  ``.run(*files, kubernetes_version="1.34.0", strict=True)``.
- ``kueue`` -> testenv.kueue.KueueServer on the session's ``kube`` (one per
  session: two Kueue controllers on one API server would both admit):
  ``.create_queues(ns, name="kj-queue", cpu="4", memory="64Gi",
  preemption=False, resources=None)`` -> KueueQueues, ``.delete_queues(q)``,
  ``.create_priority_class(name, value)``, ``.delete_priority_class(name)``,
  ``.workloads_of_job(ns, job_uid)``. Only Jobs labelled
  ``kueue.x-k8s.io/queue-name`` reach its webhooks.
- ``kueue_queues`` -> KueueQueues in the test's ``kube_namespace`` (cpu 4,
  memory 64Gi, no preemption).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import testenv
from testenv._proc import Service
from testenv.colonies import ColoniesServer
from testenv.kube import KubeCluster
from testenv.kueue import KueueQueues, KueueServer
from testenv.s3 import S3Server

_SERVICES: list[Service] = []
_LOG_OFFSETS = pytest.StashKey[dict[str, int]]()
_MAX_SECTION = 20_000


def _register(*services: Service) -> None:
    for svc in services:
        if svc not in _SERVICES:
            _SERVICES.append(svc)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_OFFSETS] = {s.name: s.log_size() for s in _SERVICES}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = item.stash.get(_LOG_OFFSETS, {})
    for svc in _SERVICES:
        text = svc.read_log_from(offsets.get(svc.name, 0))
        if not text:
            continue
        if len(text) > _MAX_SECTION:
            text = "[...]\n" + text[-_MAX_SECTION:]
        report.sections.append((f"server log: {svc.name} ({svc.log_path})", text))
    # only once per phase: move the offsets on
    item.stash[_LOG_OFFSETS] = {s.name: s.log_size() for s in _SERVICES}


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster(tmp_path_factory.mktemp("kube"))
    try:
        cluster.start()
    finally:
        _register(*cluster.services.values())
    try:
        yield cluster
    finally:
        cluster.stop()


#: API path prefix of each kind KubeNamespace.get_json reads
_API_GROUPS = {"pods": "/api/v1", "services": "/api/v1", "jobs": "/apis/batch/v1"}


@dataclass
class KubeNamespace:
    name: str
    kube: KubeCluster

    def set_logs(
        self,
        container: str,
        lines: list[str] | str,
        pod: str | None = None,
        follow: bool = False,
        append: bool = False,
    ) -> Path:
        return self.kube.set_logs(
            self.name, container, lines, pod=pod, follow=follow, append=append
        )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("-n", self.name, *args, input=input, check=check)

    def get_json(self, kind: str, name: str = "", selector: str = "") -> dict[str, Any]:
        """`kubectl get KIND [NAME] [-l SELECTOR] -o json` of this namespace (a list has
        ``items``), without a kubectl process: for polls (KubeCluster.get_json)."""
        path = f"{_API_GROUPS[kind]}/namespaces/{self.name}/{kind}" + (f"/{name}" if name else "")
        query = "?" + urllib.parse.urlencode({"labelSelector": selector}) if selector else ""
        return self.kube.get_json(path + query)


@pytest.fixture
def kube_namespace(kube: KubeCluster, request: pytest.FixtureRequest) -> Iterator[KubeNamespace]:
    name = kube.create_namespace("t")
    try:
        yield KubeNamespace(name, kube)
    finally:
        with contextlib.suppress(Exception):
            kube.delete_namespace(name)


@pytest.fixture(scope="session")
def colonies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColoniesServer]:
    server = ColoniesServer(tmp_path_factory.mktemp("colonies"))
    _register(server.service)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    _register(server.service)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _prepend_path(directory: str) -> None:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if directory not in parts:
        os.environ["PATH"] = os.pathsep.join([directory, *parts])


@pytest.fixture(scope="session")
def helm() -> str:
    path = testenv.helm_path()
    _prepend_path(str(Path(path).parent))
    return path


@dataclass
class KubeconformTool:
    path: str
    schema_location: str

    def run(
        self,
        *files: str,
        kubernetes_version: str = "1.34.0",
        strict: bool = True,
        stdin: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            self.path,
            "-schema-location",
            self.schema_location,
            "-kubernetes-version",
            kubernetes_version,
            "-summary",
            "-output",
            "json",
            *extra,
        ]
        if strict:
            argv.append("-strict")
        argv += list(files) if files else ["-"]
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )


@pytest.fixture(scope="session")
def kubeconform() -> KubeconformTool:
    path = testenv.kubeconform_path()
    _prepend_path(str(Path(path).parent))
    return KubeconformTool(path, testenv.kubeconform_schema_location())


@pytest.fixture(scope="session")
def kueue(kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KueueServer]:
    server = KueueServer(kube, tmp_path_factory.mktemp("kueue"))
    _register(*server.services.values())
    server.start()
    try:
        yield server
    finally:
        server.stop()  # removes the webhooks before stopping the process


@pytest.fixture
def kueue_queues(kueue: KueueServer, kube_namespace: KubeNamespace) -> Iterator[KueueQueues]:
    queues = kueue.create_queues(kube_namespace.name)
    try:
        yield queues
    finally:
        with contextlib.suppress(Exception):
            kueue.delete_queues(queues)
