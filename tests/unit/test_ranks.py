"""The rank environment of multi-node and multi-process specs (render/ranks.py), as rendered.

Each pod of an Indexed Job is the same template; Kubernetes fills in the completion
index. `resolve` does what the kubelet does with the fieldRefs kubejobs uses, so the
tests read each rank's environment as the program sees it.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubejobs.errors import SettingsError
from kubejobs.render import RenderSettings
from kubejobs.render.inject import Injection, inject
from kubejobs.render.ranks import COMPLETION_INDEX
from kubejobs.settings import load_settings
from kubejobs.spec import SpecDocument, validate_document, validate_spec
from kubejobs.spec.names import RANK_ENV
from tests.unit.helpers import env_of, job_of, mains, pod_of, render, spec_with
from tests.unit.test_podsecurity import complies

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
HOSTFILE_ANNOTATION = "kubejobs.io/hostfile"
TORCH = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def resolve(container: dict[str, Any], pod_annotations: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet gives it, for one pod's annotations."""
    out: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            out[var["name"]] = var["value"]
            continue
        path = var["valueFrom"]["fieldRef"]["fieldPath"]
        assert path.startswith("metadata.annotations['"), path
        out[var["name"]] = pod_annotations[path[len("metadata.annotations['") : -2]]
    return out


def ranks_of(manifests: list[dict[str, Any]], nodes: int) -> list[dict[str, str]]:
    """Every rank's resolved environment: each index's pod, each main container."""
    annotations = job_of(manifests)["spec"]["template"]["metadata"]["annotations"]
    return [
        resolve(c, {**annotations, INDEX_ANNOTATION: str(i)})
        for i in range(nodes)
        for c in mains(manifests)
    ]


def nodes_spec(nodes: int, per_node: int, **changes: Any) -> dict[str, Any]:
    return spec_with(conditions={"nodes": nodes, "processespernode": per_node}, **changes)


def test_one_process_per_node_gets_every_variable_rank_being_the_index() -> None:
    manifests = render(nodes_spec(3, 1))
    job = job_of(manifests)
    name = job["metadata"]["name"]
    service = next(m for m in manifests if m["kind"] == "Service")
    assert service["metadata"]["name"] == pod_of(manifests)["subdomain"] == name
    hosts = [f"{name}-{i}.{name}" for i in range(3)]
    (main,) = mains(manifests)
    env = env_of(main)
    index = {"fieldRef": {"fieldPath": COMPLETION_INDEX}}
    assert {k: env[k] for k in (*RANK_ENV, "KUBEJOBS_HOSTFILE")} == {
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": "29500",
        "WORLD_SIZE": "3",
        "RANK": index,
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "NODE_RANK": index,
        "GROUP_RANK": index,
        "KUBEJOBS_HOSTFILE": "/var/run/kubejobs/hostfile/hostfile",
    }
    assert env["KUBEJOBS_HOSTS"] == ",".join(hosts)
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations[HOSTFILE_ANNOTATION] == "".join(f"{h} slots=1\n" for h in hosts)


def test_one_node_of_several_processes_rendezvous_on_localhost() -> None:
    manifests = render(nodes_spec(1, 3))
    assert [m["kind"] for m in manifests] == ["Job"]  # no Service: one pod
    for rank, main in enumerate(mains(manifests)):
        env = env_of(main)
        assert {k: env[k] for k in RANK_ENV} == {
            "MASTER_ADDR": "localhost",
            "MASTER_PORT": "29500",
            "WORLD_SIZE": "3",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "3",
            "NODE_RANK": "0",
            "GROUP_RANK": "0",
        }
        assert "KUBEJOBS_HOSTS" not in env
    annotations = job_of(manifests)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[HOSTFILE_ANNOTATION] == "localhost slots=3\n"


def test_several_nodes_of_several_processes_get_no_rank_that_kubernetes_cannot_compute() -> None:
    manifests = render(nodes_spec(2, 4))
    name = job_of(manifests)["metadata"]["name"]
    for local, main in enumerate(mains(manifests)):
        env = env_of(main)
        assert "RANK" not in env
        assert env["MASTER_ADDR"] == f"{name}-0.{name}"
        assert (env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == (
            "8",
            str(local),
            "4",
        )
    annotations = job_of(manifests)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[HOSTFILE_ANNOTATION] == (
        f"{name}-0.{name} slots=4\n{name}-1.{name} slots=4\n"
    )


def test_a_single_process_spec_gets_none_of_it() -> None:
    manifests = render(spec_with())
    env = env_of(mains(manifests)[0])
    assert not set(env) & {*RANK_ENV, "KUBEJOBS_HOSTFILE", "KUBEJOBS_HOSTS"}
    pod = job_of(manifests)["spec"]["template"]
    assert HOSTFILE_ANNOTATION not in pod["metadata"]["annotations"]
    assert all(v["name"] != "kubejobs-hostfile" for v in pod["spec"]["volumes"])


def test_master_port_is_a_setting() -> None:
    env = env_of(mains(render(nodes_spec(2, 1), master_port=23456))[0])
    assert env["MASTER_PORT"] == "23456"
    loaded = load_settings(RenderSettings, None, {"KUBEJOBS_MASTER_PORT": "40000"})
    assert loaded.master_port == 40000
    with pytest.raises(SettingsError, match="master_port: 70000 is not a port"):
        RenderSettings(master_port=70000)


def test_the_hostfile_is_a_read_only_downward_api_file_in_every_main_container() -> None:
    manifests = render(nodes_spec(2, 2), restricted_pods=True)
    pod = pod_of(manifests)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kubejobs-hostfile"]
    assert volume["downwardAPI"]["items"] == [
        {
            "path": "hostfile",
            "fieldRef": {"fieldPath": f"metadata.annotations['{HOSTFILE_ANNOTATION}']"},
        }
    ]
    for main in mains(manifests):
        assert {
            "name": "kubejobs-hostfile",
            "mountPath": "/var/run/kubejobs/hostfile",
            "readOnly": True,
        } in main["volumeMounts"]
        assert env_of(main)["KUBEJOBS_HOSTFILE"] == "/var/run/kubejobs/hostfile/hostfile"
    shipper = pod["initContainers"][0]
    assert all(m["name"] != "kubejobs-hostfile" for m in shipper["volumeMounts"])
    complies(manifests)  # the restricted Pod Security level, non-root, read-only mounts


def test_injecting_a_multi_node_job_twice_changes_nothing() -> None:
    data = nodes_spec(2, 2)
    job = job_of(render(data))
    again = copy.deepcopy(job)
    injection = Injection(
        spec=validate_spec(data),
        settings=RenderSettings(),
        process_id="a" * 40 + "0123456789abcdef01234567",
        colony_name="",
        job_name=job["metadata"]["name"],
    )
    inject(again, injection, "job.yaml.j2")
    assert again == job


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.integers(1, 6), per_node=st.integers(1, 4))
def test_every_rank_is_told_a_unique_global_rank_and_the_same_world(
    nodes: int, per_node: int
) -> None:
    manifests = render(nodes_spec(nodes, per_node))
    world = nodes * per_node
    ranks = ranks_of(manifests, nodes)
    assert len(ranks) == world
    # The documented formula holds for every rank, whether or not RANK itself is rendered.
    computed = [
        int(r["KUBEJOBS_NODE_RANK"]) * int(r["KUBEJOBS_LOCAL_WORLD_SIZE"])
        + int(r["KUBEJOBS_LOCAL_RANK"])
        for r in ranks
    ]
    assert sorted(computed) == list(range(world))
    if world == 1:
        assert not set(ranks[0]) & RANK_ENV
        return
    given_ranks = [r.get("RANK") for r in ranks]
    if nodes > 1 and per_node > 1:
        assert given_ranks == [None] * world  # never faked
    else:
        assert [int(str(r)) for r in given_ranks] == computed
        assert sorted(computed) == list(range(world))
    for r in ranks:
        assert r["WORLD_SIZE"] == r["KUBEJOBS_WORLD_SIZE"] == str(world)
        assert r["NODE_RANK"] == r["GROUP_RANK"] == r["KUBEJOBS_NODE_RANK"]
        assert r["LOCAL_RANK"] == r["KUBEJOBS_LOCAL_RANK"]
        assert r["LOCAL_WORLD_SIZE"] == str(per_node)
        assert r["MASTER_ADDR"] == ranks[0]["MASTER_ADDR"]
    annotations = job_of(manifests)["spec"]["template"]["metadata"]["annotations"]
    lines = annotations[HOSTFILE_ANNOTATION].splitlines()
    assert lines == [f"{h} slots={per_node}" for h in _hosts(ranks[0], nodes)]
    assert lines[0].split()[0] == ranks[0]["MASTER_ADDR"]


def _hosts(env: dict[str, str], nodes: int) -> list[str]:
    return env["KUBEJOBS_HOSTS"].split(",") if nodes > 1 else ["localhost"]


def test_the_documented_init_cmd_gives_every_rank_its_global_rank() -> None:
    """README: with several nodes of several ranks, init-cmd computes RANK in the rank's shell.
    Each container's command runs here in /bin/sh with its environment as the kubelet gives it
    (`$$` being Kubernetes' escape of `$`)."""
    init = "export RANK=$((NODE_RANK * LOCAL_WORLD_SIZE + LOCAL_RANK))"
    manifests = render(
        nodes_spec(3, 2, kwargs={"cmd": ["/bin/sh", "-c", 'echo "$RANK"'], "init-cmd": init})
    )
    annotations = job_of(manifests)["spec"]["template"]["metadata"]["annotations"]
    seen = []
    for index in range(3):
        for main in mains(manifests):
            env = resolve(main, {**annotations, INDEX_ANNOTATION: str(index)})
            argv = [w.replace("$$", "$") for w in main["command"] + main["args"]]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            seen.append(int(done.stdout))
    assert sorted(seen) == list(range(6))


# --- names a spec may not set -------------------------------------------------------


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_document(SpecDocument("spec.json", data))]


@pytest.mark.parametrize("name", sorted(RANK_ENV))
def test_a_multi_rank_spec_may_not_set_a_rank_variable(name: str) -> None:
    found = problems(nodes_spec(2, 1, env={name: "1"}))
    assert found == [
        f"spec.json::$.env.{name}: {name!r} is set by kubejobs for a spec with more than one "
        "rank (nodes x processespernode = 2 x 1); choose another name"
        + (" (the port is the executor's master_port setting)" if name == "MASTER_PORT" else "")
    ]
    assert problems(nodes_spec(1, 2, env={name: "1"}))


@pytest.mark.parametrize("name", sorted(RANK_ENV))
def test_a_single_process_spec_may_set_them_itself(name: str) -> None:
    assert problems(spec_with(env={name: "1"})) == []


@pytest.mark.parametrize(
    "name", ["KUBEJOBS_HOSTFILE", "KUBEJOBS_INPUT", "KUBEJOBS_INPUT_FILE", "KUBEJOBS_OUTPUT_FILE"]
)
def test_kubejobs_file_variables_are_reserved_for_every_spec(name: str) -> None:
    assert problems(spec_with(env={name: "x"})) == [
        f"spec.json::$.env.{name}: {name!r} is set by kubejobs; choose another name"
    ]
