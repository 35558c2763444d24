"""The server's echoed spec (Go zero values everywhere) validates as the user wrote it."""

from __future__ import annotations

from typing import Any

import pytest

from kubejobs.errors import InvalidInput
from kubejobs.executor.apply import prepare, rejection, spec_of
from kubejobs.render import Renderer, RenderSettings

PID = "ab" * 32


def echoed(kwargs: dict[str, Any], funcname: str = "execute", **conditions: Any) -> dict[str, Any]:
    cond = {
        "colonyname": "c",
        "executornames": None,
        "executortype": "kubejobs",
        "dependencies": [],
        "nodes": 0,
        # The v1.9.7 server rewrites cpu as millicores and memory as whole MiB,
        # so unset ones come back as "0m" and "0Mi".
        "cpu": "0m",
        "processes": 0,
        "processespernode": 0,
        "mem": "0Mi",
        "storage": "0Mi",
        "gpu": {"name": "", "mem": "0Mi", "count": 0, "nodecount": 0},
        "walltime": 0,
    }
    cond.update(conditions)
    return {
        "processid": PID,
        "spec": {
            "nodename": "",
            "funcname": funcname,
            "args": None,
            "kwargs": kwargs,
            "priority": 0,
            "maxwaittime": -1,
            "maxexectime": -1,
            "maxretries": 0,
            "conditions": cond,
            "label": "",
            "fs": {"mount": "", "snapshots": None, "dirs": None},
            "env": {},
        },
    }


def renderer() -> Renderer:
    return Renderer(RenderSettings(namespace="ns", executor_name="e", colony_name="c"))


def test_zero_values_are_dropped() -> None:
    spec = spec_of(echoed({"docker-image": "busybox", "cmd": "true"}, nodes=2, cpu="1000m"))
    assert "fs" not in spec and "env" not in spec and "nodename" not in spec
    assert spec["conditions"] == {
        "colonyname": "c",
        "executortype": "kubejobs",
        "nodes": 2,
        "cpu": "1000m",
    }


def test_server_zero_quantities_mean_not_given() -> None:
    kwargs = {"docker-image": "busybox", "cmd": "true"}
    spec = spec_of(echoed(kwargs, mem="1024Mi", gpu={"name": "a100", "mem": "0Mi", "count": 1}))
    assert spec["conditions"]["mem"] == "1024Mi"
    assert "cpu" not in spec["conditions"] and "storage" not in spec["conditions"]
    assert spec["conditions"]["gpu"] == {"name": "a100", "count": 1}
    manifests = prepare(echoed(kwargs), renderer()).manifests
    (main,) = manifests[0]["spec"]["template"]["spec"]["containers"]
    assert "resources" not in main or not main["resources"], main.get("resources")


def test_prepare_renders_job_and_service_first_for_multi_node() -> None:
    prepared = prepare(
        echoed({"docker-image": "busybox", "cmd": "true"}, nodes=2, cpu="1000m"), renderer()
    )
    assert [m["kind"] for m in prepared.manifests] == ["Service", "Job"]
    assert prepared.job_name == "kj-" + PID[:40]
    assert prepared.request.cpu == 2


def test_invalid_spec_gives_every_problem_located_in_the_process() -> None:
    with pytest.raises(InvalidInput) as caught:
        prepare(echoed({"docker-image": "", "cmd": ""}, mem="1 GB"), renderer())
    errors = rejection(caught.value)
    assert len(errors) >= 2
    assert all(e.startswith(f"process:{PID}::$.") for e in errors)
    assert any("conditions.mem" in e for e in errors)


def test_unknown_funcname_is_rejected_clearly() -> None:
    with pytest.raises(InvalidInput) as caught:
        prepare(echoed({"docker-image": "busybox", "cmd": "true"}, funcname="train"), renderer())
    assert "funcname" in rejection(caught.value)[0] and "'train'" in rejection(caught.value)[0]
