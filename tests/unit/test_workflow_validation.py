"""Workflows in both forms (the CLI's array of specs, the API's {colonyname, functionspecs}):
each spec validated in place, and the graph checks located at the entry at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubejobs.spec import SpecDocument, parse_document, validate_document
from tests.unit.helpers import spec_with
from tests.unit.test_cli import kubejobs

FORMS = {  # how each form wraps a list of specs, and the JSON path of that list
    "cli": (lambda specs: specs, "$"),
    "api": (lambda specs: {"colonyname": "research", "functionspecs": specs}, "$.functionspecs"),
}


def step(name: str, *deps: str, **changes: Any) -> dict[str, Any]:
    conditions = {"dependencies": list(deps), **changes.pop("conditions", {})}
    return spec_with(nodename=name, conditions=conditions, **changes)


def problems(specs: list[Any], form: str, source: str = "wf.json") -> list[str]:
    wrap, _ = FORMS[form]
    return [str(p) for p in validate_document(SpecDocument(source, wrap(specs)))]


@pytest.fixture(params=sorted(FORMS))
def form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def at(form: str, rest: str) -> str:
    """wf.json::<the path of the list of specs in this form><rest>"""
    return f"wf.json::{FORMS[form][1]}{rest}"


def test_fan_out_fan_in_is_valid(form: str) -> None:
    specs = [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]
    assert problems(specs, form) == []


def test_kind_is_workflow_for_an_array_or_an_object_with_functionspecs() -> None:
    assert SpecDocument("f", [spec_with()]).kind == "workflow"
    assert SpecDocument("f", []).kind == "workflow"
    assert SpecDocument("f", {"functionspecs": []}).kind == "workflow"
    assert SpecDocument("f", spec_with()).kind == "spec"


def test_specs_are_listed_with_their_path_in_the_file() -> None:
    a, b = step("a"), step("b", "a")
    assert SpecDocument("f", [a, b]).specs() == [("$[0]", a), ("$[1]", b)]
    api = SpecDocument("f", {"functionspecs": [a, b]})
    assert api.specs() == [("$.functionspecs[0]", a), ("$.functionspecs[1]", b)]
    assert SpecDocument("f", a).specs() == [("$", a)]


def test_a_yaml_array_is_a_workflow() -> None:
    text = yaml.safe_dump([step("a"), step("b", "a", conditions={"cpu": "lots"})])
    doc = parse_document(text, "wf.yaml")
    found = [str(p) for p in validate_document(doc)]
    assert len(found) == 1 and found[0].startswith("wf.yaml::$[1].conditions.cpu: 'lots'")


def test_dangling_dependency_is_located_and_names_the_known_nodes(form: str) -> None:
    specs = [step("a"), step("b", "a", "nope")]
    assert problems(specs, form) == [
        at(form, "[1].conditions.dependencies[1]")
        + ": no function spec in this workflow has nodename 'nope' (nodenames: 'a', 'b')"
    ]


def test_duplicate_nodename_is_located_at_the_second_use(form: str) -> None:
    specs = [step("a"), step("b", "a"), step("a")]
    first = FORMS[form][1] + "[0].nodename"
    assert problems(specs, form) == [
        at(form, "[2].nodename") + f": nodename 'a' is used twice (first at {first})"
    ]


def test_cycle_is_named_and_located_at_the_dependency_closing_it(form: str) -> None:
    specs = [step("a", "b"), step("b", "c"), step("c", "a"), step("d", "c")]
    assert problems(specs, form) == [
        at(form, "[2].conditions.dependencies[0]")
        + ": dependency cycle c -> a -> b -> c (each waits for the next): "
        "none of them can ever start"
    ]


def test_a_spec_waiting_for_itself_is_a_cycle(form: str) -> None:
    assert problems([step("a", "a")], form) == [
        at(form, "[0].conditions.dependencies[0]")
        + ": dependency cycle a -> a (each waits for the next): none of them can ever start"
    ]


def test_every_cycle_is_reported() -> None:
    specs = [step("a", "b"), step("b", "a", "c"), step("c", "b")]
    assert problems(specs, "cli") == [
        "wf.json::$[1].conditions.dependencies[0]: dependency cycle b -> a -> b "
        "(each waits for the next): none of them can ever start",
        "wf.json::$[2].conditions.dependencies[0]: dependency cycle c -> b -> c "
        "(each waits for the next): none of them can ever start",
    ]


def test_schema_and_semantic_errors_are_located_in_the_list(form: str) -> None:
    specs = [step("a", conditions={"nodes": 0}), step("b", "a", conditions={"mem": "1 GB"})]
    found = problems(specs, form)
    assert found[0] == at(form, "[0].conditions.nodes") + ": must be at least 1, got 0"
    assert found[1].startswith(at(form, "[1].conditions.mem") + ": '1 GB'")
    assert len(found) == 2


def test_an_empty_workflow_is_refused() -> None:
    assert problems([], "cli") == ["wf.json::$: must have at least 1 item(s)"]
    assert problems([], "api") == ["wf.json::$.functionspecs: must have at least 1 item(s)"]


def test_wrong_types_in_the_graph_are_left_to_the_schema() -> None:
    found = problems([step("a"), spec_with(nodename=3, conditions={"dependencies": [1]})], "cli")
    assert found == [
        "wf.json::$[1].conditions.dependencies[0]: expected string, got integer 1",
        "wf.json::$[1].nodename: expected string, got integer 3",
    ]


def test_cli_validates_renders_and_checks_the_array_form(tmp_path: Path) -> None:
    assert (
        kubejobs("validate", "examples/workflow-cli.json", "examples/workflow.json").returncode == 0
    )
    rendered = kubejobs("render", "examples/workflow-cli.json")
    assert [d["kind"] for d in yaml.safe_load_all(rendered.stdout)] == ["Job"] * 4
    bad = tmp_path / "wf.yaml"
    bad.write_text(yaml.safe_dump([step("a"), step("b", "a", funcname="train")]))
    for command in ("render", "check"):
        result = kubejobs(command, str(bad))
        assert result.returncode == 1
        assert (
            f"{bad}::$[1].funcname: the Kubernetes executor runs funcname 'execute', not 'train'"
            in result.stderr
        ), command


def test_cli_refuses_a_dangling_dependency_with_its_path(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps([step("a"), step("b", "a", "fetch")]))
    result = kubejobs("validate", str(wf))
    assert result.returncode == 1
    assert result.stderr == (
        f"{wf}::$[1].conditions.dependencies[1]: "
        "no function spec in this workflow has nodename 'fetch' (nodenames: 'a', 'b')\n"
    )
