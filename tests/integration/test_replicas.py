"""More than one executor: the chart's StatefulSet, one executor per replica.

kwok plays the kubelet, so the StatefulSet's pods never run the executor; as in
test_chart_install.py, each replica runs here as a process configured exactly
as the chart configures that pod: the StatefulSet's command with `$(POD_NAME)`
expanded to the replica's pod name (`kj-kubejobs-<ordinal>`, what the
downward API gives the pod), the installed settings file, the container's
environment, and a token of the chart's ServiceAccount. Each replica generates
its own key into its own Secret, registers itself with the colony key and
marks and adopts only its own Jobs, which run on kwok nodes.

A pod the StatefulSet recreates after a crash has the same name; here that is
the same process command started again after SIGKILL.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv.colonies import ColoniesServer
from tests.integration.polling import until
from tests.integration.test_chart_install import (
    EXECUTOR_SA,
    KEY_SECRET,
    ChartExecutor,
    Install,
    _colonies_values,
    can_i,
    get,
    install,
    spec,
)
from tests.integration.test_executor_keepalive import stale_server

pytestmark = pytest.mark.integration
__all__ = ["install"]  # the fixture

SUCCESS = 2
WAIT = 600.0
PODS = ["kj-kubejobs-0", "kj-kubejobs-1"]


class Replicas:
    """The chart installed with replicaCount 2, and one executor process per replica pod."""

    def __init__(self, kube: Any, namespace: str, tmp: Path, colonies: Any) -> None:
        self.kube, self.namespace, self.tmp, self.colonies = kube, namespace, tmp, colonies
        self.runners: dict[str, ChartExecutor] = {}
        self.colony_key = ""

    def start(self, pod: str) -> ChartExecutor:
        folder = self.tmp / pod
        folder.mkdir(exist_ok=True)  # a restart appends to the same log
        runner = ChartExecutor(self.kube, self.namespace, folder)
        self.runners[pod] = runner
        return runner.start({"colony_prvkey_file": self.colony_key}, "statefulset", pod)

    def kill(self, pod: str) -> None:
        proc = self.runners[pod].proc
        assert proc is not None
        proc.kill()  # no SIGTERM: a crash, nothing tidied up
        proc.wait(30)

    def log(self, pod: str) -> str:
        """The replica's whole log, before and after any restart."""
        return self.runners[pod].log_path.read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(self.log(pod) for pod in self.runners)

    def stop(self) -> None:
        for runner in self.runners.values():
            runner.stop()


@pytest.fixture
def replicas(
    install: Install,
    kube: Any,
    kube_namespace: Any,
    colonies: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Replicas, str]]:
    """(the replicas, their executor type), installed with per-replica executors.

    Parametrized indirectly with True: in a namespace that enforces the
    `restricted` Pod Security level (the Jobs' pods are then refused, as the
    tests running Jobs leave restricted_pods to its own tests).
    """
    if getattr(request, "param", False):
        label = "pod-security.kubernetes.io/enforce=restricted"
        kube.kubectl("label", "namespace", kube_namespace.name, label)
    yield from _installed(install, kube, kube_namespace.name, colonies, tmp_path, "8s")


def _installed(
    install: Install, kube: Any, ns: str, colonies: Any, tmp: Path, run: str
) -> Iterator[tuple[Replicas, str]]:
    executor_type = f"kj-replicas-{os.urandom(4).hex()}"
    notes = install(
        *_colonies_values(colonies, executor_type, "kj-kubejobs"),
        "--set", "replicaCount=2,statefulSet.enabled=true,executorKey.source=generate",
        "--set", f"colonyKey.source=value,colonyKey.prvkey={colonies.colony_prvkey}",
        # how long a pod runs on kwok: long enough to be in flight when a replica goes
        "--set", f"config.extra_annotations.kwok\\.test/run={run},config.max_jobs=60",
    ).stdout  # fmt: skip
    assert '2 executors "kj-kubejobs-<ordinal>"' in notes
    runner = Replicas(kube, ns, tmp, colonies)
    secret = get(kube, ns, "secret", "kj-kubejobs-colony-key")
    runner.colony_key = base64.b64decode(secret["data"]["prvkey"]).decode()
    try:
        yield runner, executor_type
    finally:
        runner.stop()


def closes(log: str) -> dict[str, int]:
    """process id -> how many times an executor log says it closed it."""
    counted: dict[str, int] = {}
    for pid in re.findall(r"process ([0-9a-f]{64}) closed", log):
        counted[pid] = counted.get(pid, 0) + 1
    return counted


def executor_ids(colonies: Any, names: list[str]) -> dict[str, str]:
    """executor id -> name, of the replicas as the colony knows them."""
    found = {}
    for name in names:
        # asked as the test's own executor: only members may look executors up
        doc = colonies.rpc(
            {"msgtype": "getexecutormsg", "colonyname": colonies.colony_name, "executorname": name}
        )
        found[doc["executorid"]] = name
    return found


def wait_all(colonies: Any, pids: list[str], replicas: Replicas) -> list[dict[str, Any]]:
    done = []
    for pid in pids:
        try:
            process = colonies.wait_state(pid, (SUCCESS, 3), WAIT)
        except Exception as err:
            raise AssertionError(f"{err}\nexecutor logs:\n{replicas.logs()[-20000:]}") from None
        assert process["state"] == SUCCESS, process["errors"]
        done.append(process)
    return done


def no_jobs_left(kube_namespace: Any) -> None:
    def empty() -> bool:
        return kube_namespace.kubectl("get", "jobs", "-o", "name").stdout.strip() == ""

    until(empty, "the replicas to delete every Job", 180)


@pytest.mark.parametrize("replicas", [True], indirect=True, ids=["restricted"])
def test_the_statefulset_is_admitted_as_restricted_with_a_key_secret_per_replica(
    replicas: tuple[Replicas, str], kube: Any, kube_namespace: Any
) -> None:
    ns = kube_namespace.name
    set_ = get(kube, ns, "statefulset", "kj-kubejobs")
    assert set_["spec"]["replicas"] == 2 and set_["spec"]["podManagementPolicy"] == "Parallel"
    assert get(kube, ns, "service", "kj-kubejobs-replicas")["spec"]["clusterIP"] == "None"
    assert kube.kubectl("-n", ns, "get", "deployment", "kj-kubejobs", check=False).returncode

    def pods() -> list[str]:
        items = get(kube, ns, "pods", "-l", "app.kubernetes.io/component=executor")["items"]
        return sorted(p["metadata"]["name"] for p in items)

    until(lambda: pods() == PODS, "the StatefulSet's two pods, admitted as restricted")
    for i in (0, 1):
        assert can_i(kube, ns, EXECUTOR_SA, "get", f"secrets/{KEY_SECRET}-{i}", "-n", ns)
    assert not can_i(kube, ns, EXECUTOR_SA, "get", f"secrets/{KEY_SECRET}", "-n", ns)
    assert not can_i(kube, ns, EXECUTOR_SA, "get", f"secrets/{KEY_SECRET}-2", "-n", ns)


def test_two_replicas_share_200_processes_and_close_each_once(
    replicas: tuple[Replicas, str], colonies: Any, kube: Any, kube_namespace: Any
) -> None:
    runner, executor_type = replicas
    for pod in PODS:
        runner.start(pod)
    ids = executor_ids(colonies, PODS)  # each registered itself under its pod's name
    assert len(ids) == 2
    keys = {
        pod: get(kube, kube_namespace.name, "secret", f"{KEY_SECRET}-{pod[-1]}") for pod in PODS
    }
    assert len({k["data"]["prvkey"] for k in keys.values()}) == 2  # a key each

    pids = [colonies.submit(spec(executor_type))["processid"] for _ in range(200)]
    done = wait_all(colonies, pids, runner)
    by_executor = {ids[p["assignedexecutorid"]] for p in done}
    assert by_executor == set(PODS), "both replicas took work"
    assert all(p["retries"] == 0 for p in done), "no process was handed out twice"
    counted = closes(runner.logs())
    assert set(counted) == set(pids) and set(counted.values()) == {1}
    assert "no longer running on this executor" not in runner.logs()
    no_jobs_left(kube_namespace)


def test_a_killed_replica_comes_back_under_its_name_and_adopts_its_jobs(
    replicas: tuple[Replicas, str], colonies: Any, kube_namespace: Any
) -> None:
    runner, executor_type = replicas
    for pod in PODS:
        runner.start(pod)
    ids = executor_ids(colonies, PODS)
    pids = [colonies.submit(spec(executor_type))["processid"] for _ in range(40)]

    def jobs_of(name: str) -> list[str]:
        out = kube_namespace.kubectl(
            "get", "jobs", "-o",
            "jsonpath={range .items[*]}{.metadata.annotations.kubejobs\\.io/executor}{'\\n'}{end}",
        ).stdout  # fmt: skip
        return [line for line in out.splitlines() if line == name]

    until(lambda: len(jobs_of(PODS[1])) >= 3, "replica 1 running Jobs")
    runner.kill(PODS[1])
    left = len(jobs_of(PODS[1]))
    assert left >= 3, "the killed replica's Jobs outlive it"
    runner.start(PODS[1])  # the StatefulSet's new pod: same name, same key Secret
    assert runner.log(PODS[1]).count("generated an executor key") == 1
    assert executor_ids(colonies, PODS) == ids  # the same executors, not new ones

    done = wait_all(colonies, pids, runner)
    assert {ids[p["assignedexecutorid"]] for p in done} == set(PODS)
    assert all(p["retries"] == 0 for p in done), "nothing went back to the queue"
    counted = closes(runner.logs())
    assert set(counted) == set(pids) and set(counted.values()) == {1}, counted
    assert "found Job" in runner.log(PODS[1])  # adopted, not re-created
    no_jobs_left(kube_namespace)


# --- scale-down: what becomes of the Jobs of the replica that goes -----------------------

STALE_SECONDS = 6


@pytest.fixture
def stale_colonies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColoniesServer]:
    """A Colonies server that unregisters executors silent for 6 s instead of 600 s."""
    yield from stale_server(tmp_path_factory.mktemp("colonies-scale-down"), STALE_SECONDS)


def test_scale_down_requeues_the_gone_replicas_processes_and_its_return_cleans_up(
    install: Install,
    kube: Any,
    kube_namespace: Any,
    stale_colonies: ColoniesServer,
    tmp_path: Path,
) -> None:
    """replicaCount 2 -> 1 with replica 1's Jobs running, then back to 2.

    The StatefulSet deletes pod kj-kubejobs-1 (SIGTERM: it stops taking work and
    leaves its Jobs running). Replica 0 does not adopt Jobs marked with another
    executor's name. Once replica 1 has been silent for the server's stale
    duration, the server unregisters it and puts its RUNNING processes back to
    WAITING, and replica 0 takes them again (a second attempt, same Job name).
    Replica 0 deletes the gone replica's Job of the same name before applying its
    own, so the second attempt starts afresh and succeeds. When replica 1 comes
    back it is approved again with its kept key; none of its Jobs is left.
    """
    gen = _installed(install, kube, kube_namespace.name, stale_colonies, tmp_path, "30s")
    runner, executor_type = next(gen)
    try:
        requeued, done = _scale_down(runner, executor_type, install, kube, kube_namespace)
        # the stale-executor requeue is no retry in the server's count (retries stays 0):
        # that they are replica 0's now (_scale_down) is what says they were handed out again
        assert requeued
        # The second attempt replaces the gone replica's Job of the same name (another
        # executor's annotation, key Secret and template) instead of failing on it.
        assert [(p["processid"], p["errors"]) for p in done if p["state"] != SUCCESS] == []
        assert f"was left by executor {PODS[1]} (an earlier assignment): deleting it" in runner.log(
            PODS[0]
        )
        colonies = stale_colonies
        install(
            *_colonies_values(colonies, executor_type, "kj-kubejobs"),
            "--reuse-values", "--set", "replicaCount=2", command="upgrade",
        )  # fmt: skip
        ids = executor_ids(colonies, PODS)
        runner.start(PODS[1])  # same name, same key: registered and approved again
        assert executor_ids(colonies, PODS) == ids
        back = colonies.rpc(
            {"msgtype": "getexecutormsg", "colonyname": colonies.colony_name,
             "executorname": PODS[1]},
        )  # fmt: skip
        assert back["state"] == 1  # approved
        until(lambda: not _jobs_of(kube_namespace, PODS[1]), "replica 1's leftover Jobs gone")
        later = [colonies.submit(spec(executor_type))["processid"] for _ in range(10)]
        wait_all(colonies, later, runner)
        no_jobs_left(kube_namespace)
    finally:
        gen.close()


def _scale_down(
    runner: Replicas, executor_type: str, install: Install, kube: Any, kube_namespace: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scale 2 -> 1 while replica 1 runs Jobs; (its processes, all processes) once final."""
    colonies = runner.colonies
    for pod in PODS:
        runner.start(pod)
    ids = executor_ids(colonies, PODS)
    pids = [colonies.submit(spec(executor_type))["processid"] for _ in range(8)]
    until(lambda: len(_jobs_of(kube_namespace, PODS[1])) >= 2, "replica 1 running Jobs")
    # Replica 1's processes are read while it runs: once it is stopped, the server requeues
    # them after STALE_SECONDS of silence and replica 0 takes them, which on a loaded
    # machine can happen before a read after the stop (ci14: none was replica 1's by then).
    on_one = {p for p in pids if colonies.get_process(p)["assignedexecutorid"] == _id(ids, 1)}
    # The pod the StatefulSet deletes gets SIGTERM; stopped, and what it leaves read, before
    # the (slow) helm upgrade rather than after it: under load the upgrade outlasted the
    # Jobs' 30 s (replica 1 closed them itself, or they were over by the time they were read).
    runner.runners[PODS[1]].stop()
    assert _jobs_of(kube_namespace, PODS[1]), "the gone replica's Jobs keep running"
    install(
        *_colonies_values(colonies, executor_type, "kj-kubejobs"),
        "--reuse-values", "--set", "replicaCount=1", command="upgrade",
    )  # fmt: skip
    assert get(kube, kube_namespace.name, "statefulset", "kj-kubejobs")["spec"]["replicas"] == 1
    done = [colonies.wait_state(pid, (SUCCESS, 3), WAIT) for pid in pids]
    assert {ids[p["assignedexecutorid"]] for p in done} == {PODS[0]}, "replica 0 ran them all"
    gone = colonies.rpc(
        {"msgtype": "getexecutormsg", "colonyname": colonies.colony_name, "executorname": PODS[1]}
    )
    assert gone["state"] == 3  # unregistered by the server
    return [p for p in done if p["processid"] in on_one], done


def _id(ids: dict[str, str], ordinal: int) -> str:
    return next(i for i, name in ids.items() if name == PODS[ordinal])


def _jobs_of(kube_namespace: Any, name: str) -> list[str]:
    """Names of the Jobs marked with executor `name`."""
    out = kube_namespace.kubectl(
        "get", "jobs", "-o",
        "jsonpath={range .items[*]}{.metadata.name} "
        "{.metadata.annotations.kubejobs\\.io/executor}{'\\n'}{end}",
    ).stdout  # fmt: skip
    return [line.split()[0] for line in out.splitlines() if line.endswith(f" {name}")]
