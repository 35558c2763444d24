"""Every class of validation error: located, explained, and all reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from kubejobs.errors import InvalidInput
from kubejobs.spec import SpecDocument, parse_document, validate_document, validate_spec
from tests.unit.helpers import BASE, spec_with


def problems(data: Any, source: str = "spec.json") -> list[str]:
    return [str(p) for p in validate_document(SpecDocument(source, data))]


def test_valid_spec_has_no_problems() -> None:
    assert problems(BASE) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"conditions": {"processes-per-node": 2}},
            "spec.json::$.conditions['processes-per-node']: unknown key 'processes-per-node'; did you mean 'processespernode'?",
        ),
        (
            {"conditions": {"processes_per_node": 2}},
            "spec.json::$.conditions.processes_per_node: unknown key 'processes_per_node'; did you mean 'processespernode'?",
        ),
        (
            {"conditions": {"executortypes": "x"}},
            "spec.json::$.conditions.executortypes: unknown key 'executortypes'; did you mean 'executortype'?",
        ),
        (
            {"fs": {"mount": "/cfs", "snapshots": [{"dir": "/in", "keepsnaphot": True}]}},
            "spec.json::$.fs.snapshots[0].keepsnaphot: unknown key 'keepsnaphot'; did you mean 'keepsnapshot'?",
        ),
        (
            {"kwargs": {"docker_image": "x"}},
            "spec.json::$.kwargs.docker_image: unknown key 'docker_image'; did you mean 'docker-image'?",
        ),
        ({"conditions": {"nodes": 0}}, "spec.json::$.conditions.nodes: must be at least 1, got 0"),
        (
            {"conditions": {"processespernode": 0}},
            "spec.json::$.conditions.processespernode: must be at least 1, got 0",
        ),
        (
            {"conditions": {"nodes": "4"}},
            "spec.json::$.conditions.nodes: expected integer, got string '4'",
        ),
        (
            {"conditions": {"mem": "1 GB"}},
            "spec.json::$.conditions.mem: '1 GB' is not an amount of memory; write a whole number with Ki, Mi, Gi, M or G (512Mi, 4Gi)",
        ),
        ({"conditions": {"cpu": "-1"}}, "spec.json::$.conditions.cpu: '-1' is negative"),
        (
            {"conditions": {"gpu": {"count": 1, "mem": "lots"}}},
            "spec.json::$.conditions.gpu.mem: 'lots' is not an amount of memory",
        ),
        (
            {"maxexectime": 0},
            "spec.json::$.maxexectime: 0 makes the Colonies server expire the process at once; use -1 for no limit",
        ),
        (
            {"maxexectime": -5},
            "spec.json::$.maxexectime: -5 makes the Colonies server expire the process at once",
        ),
        (
            {"maxwaittime": -2},
            "spec.json::$.maxwaittime: -2 makes the Colonies server fail the process at once",
        ),
        (
            {"conditions": {"cpu": "2"}},
            "spec.json::$.conditions.cpu: the Colonies server reads cpu only as whole millicores and would run '2' with no cpu at all; write '2000m'",
        ),
        (
            {"conditions": {"cpu": "0.25"}},
            "spec.json::$.conditions.cpu: the Colonies server reads cpu only as whole millicores and would run '0.25' with no cpu at all; write '250m'",
        ),
        (
            {"conditions": {"cpu": "two"}},
            "spec.json::$.conditions.cpu: 'two' is not a cpu amount; write whole millicores such as 500m or 2000m",
        ),
        (
            {"conditions": {"mem": "1.5Gi"}},
            "spec.json::$.conditions.mem: the Colonies server takes memory only as a whole number with Ki, Mi, Gi, M or G and refuses or misreads '1.5Gi'; write '1536Mi'",
        ),
        (
            {"conditions": {"storage": "2Ti"}},
            "spec.json::$.conditions.storage: the Colonies server takes memory only as a whole number with Ki, Mi, Gi, M or G and refuses or misreads '2Ti'; write '2048Gi'",
        ),
        (
            {"conditions": {"mem": "1e9"}},
            "write '953Mi'",
        ),
        (
            {"conditions": {"gpu": {"count": 1, "mem": "512Ki"}}},
            "spec.json::$.conditions.gpu.mem: the Colonies server keeps memory in whole MiB, so '512Ki' would become 0 (no request at all); write at least 1Mi",
        ),
        (
            {"conditions": {"walltime": 60}, "maxexectime": 60},
            "spec.json::$.conditions.walltime: walltime 60s must be greater than maxexectime 60s",
        ),
        (
            {"kwargs": {"docker-image": "Busybox:latest"}},
            "spec.json::$.kwargs['docker-image']: 'Busybox:latest' is not a valid image reference",
        ),
        ({"kwargs": {"docker-image": "busybox:has space"}}, "is not a valid image reference"),
        (
            {"env": {"1BAD": "x"}},
            "spec.json::$.env['1BAD']: '1BAD' is not a valid environment variable name",
        ),
        (
            {"env": {"COLONIES_PROCESS_ID": "x"}},
            "spec.json::$.env.COLONIES_PROCESS_ID: 'COLONIES_PROCESS_ID' is set by kubejobs",
        ),
        ({"env": {"A": 1}}, "spec.json::$.env.A: expected string, got integer 1"),
        (
            {"kwargs": {"cmd": "echo 'unclosed"}},
            "spec.json::$.kwargs.cmd: cannot split into words: No closing quotation",
        ),
        (
            {"kwargs": {"cmd": "echo hi | wc -l"}},
            "spec.json::$.kwargs.cmd: '|' is a shell operator, but cmd runs without a shell",
        ),
        ({"kwargs": {"cmd": "make && make install"}}, "'&&' is a shell operator"),
        ({"kwargs": {"cmd": "   "}}, "spec.json::$.kwargs.cmd: must name a program"),
        (
            {"kwargs": {"cmd": 5}},
            "spec.json::$.kwargs.cmd: expected a string or a list of strings, got integer 5",
        ),
        (
            {"kwargs": {"cmd": ""}},
            "spec.json::$.kwargs.cmd: expected a string or a list of strings",
        ),
        (
            {"kwargs": {"args": [{"a": 1}]}},
            "spec.json::$.kwargs.args[0]: expected string or number or boolean",
        ),
        ({"fs": {"mount": "cfs"}}, "spec.json::$.fs.mount: must start with '/', got 'cfs'"),
        (
            {"fs": {"mount": "/cfs", "dirs": [{"label": "/a"}]}},
            "spec.json::$.fs.dirs[0]: missing required key 'dir'",
        ),
        (
            {"conditions": {"nodes": 2, "processespernode": 2, "processes": 3}},
            "spec.json::$.conditions.processes: 3 processes do not fit nodes x processespernode = 2 x 2",
        ),
        (
            {"conditions": {"gpu": {"count": 1, "name": "A100 80GB"}}},
            "spec.json::$.conditions.gpu.name: 'A100 80GB' cannot be a node label value",
        ),
        ({"priority": 60000}, "spec.json::$.priority: must be at most 50000, got 60000"),
    ],
)
def test_error_points_at_the_input(change: dict[str, Any], expected: str) -> None:
    found = problems(spec_with(**change))
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_missing_kwargs_for_execute() -> None:
    data = {k: v for k, v in BASE.items() if k != "kwargs"}
    assert problems(data) == ["spec.json::$: missing required key 'kwargs'"]


def test_missing_cmd() -> None:
    data = spec_with(kwargs={"docker-image": "busybox"})
    del data["kwargs"]["cmd"]
    assert problems(data) == ["spec.json::$.kwargs: missing required key 'cmd'"]


def test_every_error_is_reported_at_once() -> None:
    data = spec_with(conditions={"nodes": 0, "processes-per-node": 1}, kwargs={"cmd": 3})
    found = problems(data)
    assert len(found) == 3, found


def test_schema_and_semantic_errors_are_reported_together() -> None:
    data = spec_with(
        conditions={"nodes": "2", "mem": "1 GB"}, maxexectime=0, env={"9": "x", "A": 3}
    )
    found = problems(data)
    assert [p.split("::")[1].split(":")[0] for p in found] == [
        "$.conditions.mem",
        "$.conditions.nodes",
        "$.env.A",
        "$.env['9']",
        "$.maxexectime",
    ], found


def test_semantic_errors_are_all_reported_too() -> None:
    data = spec_with(conditions={"mem": "1 GB", "cpu": "lots"}, maxexectime=0, env={"9": "x"})
    assert len(problems(data)) == 4


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    (found,) = problems(spec_with(conditions={"zzzzzz": 1}))
    assert "unknown key 'zzzzzz' (known keys: colonyname, cpu," in found


def test_other_funcnames_are_schema_valid_but_not_executable() -> None:
    data = {"funcname": "train", "kwargs": {"anything": [1, 2]}}
    assert problems(data) == []
    with pytest.raises(InvalidInput) as err:
        validate_spec(data, "spec.json")
    assert (
        str(err.value)
        == "spec.json::$.funcname: the Kubernetes executor runs funcname 'execute', not 'train'"
    )


def test_valid_forms() -> None:
    ok = spec_with(
        conditions={"cpu": "1500m", "mem": "1G", "walltime": 0, "gpu": {"count": 0}},
        kwargs={"cmd": ["echo", "a | b"], "args": [1, 2.5, True, "x"], "init-cmd": "cd /tmp"},
        env={"_A1": "x"},
        maxexectime=-1,
        maxretries=0,
        maxwaittime=0,
    )
    assert problems(ok) == []
    for mem in ("1Mi", "2048Ki", "4Gi", "500M", "1G"):
        assert problems(spec_with(conditions={"mem": mem, "storage": mem})) == [], mem
    quoted = spec_with(kwargs={"cmd": "echo ';' \"a && b\""})
    assert problems(quoted) == []


def test_parse_errors_carry_line_and_column() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_document('{"funcname": "execute",\n  "kwargs": }', "bad.json")
    assert str(err.value) == "bad.json::$: invalid JSON at line 2 column 13: Expecting value"
    with pytest.raises(InvalidInput) as err:
        parse_document("a: [1\nb: 2", "bad.yaml")
    assert str(err.value).startswith("bad.yaml::$: invalid YAML at line 2 column 2:")


def test_not_an_object() -> None:
    assert problems(3) == ["spec.json::$: expected object, got integer 3"]
    # an array is a workflow (the form `colonies workflow submit` reads): each item is a spec
    assert problems([1]) == ["spec.json::$[0]: expected object, got integer 1"]
