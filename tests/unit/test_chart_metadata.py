"""The Helm chart against the package: versions, settings and schema agree (no helm needed).

The chart passes executor settings as a settings file whose keys are the
ExecutorSettings field names, so a field added, renamed or re-defaulted in the
package without the chart following fails here.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubejobs import __version__
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.settings import thaw

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubejobs"

# Settings the chart derives from other values (they are not under `config`).
DERIVED = {
    "executor_prvkey": "never passed: the key is read from a file (executorKey)",
    "executor_prvkey_file": "executorKey (mounted Secret)",
    "executor_key_secret": "executorKey.secretName",
    "colony_prvkey": "never passed: the key is read from a file (colonyKey)",
    "colony_prvkey_file": "colonyKey (mounted Secret)",
    "service_account": "logShipper.serviceAccount.name",
    "templates_dir": "templates / templatesConfigMap",
    "kubeconfig": "not settable: in a pod the executor uses its service account",
    "colonies_ca_file": "colonies_ca_configmap / colonies_ca_secret (mounted into the executor)",
}
# `config` values whose empty default the chart fills in (so they differ from the field default).
CHART_DEFAULTED = {"executor_name", "namespace", "kube_version", "inpod_image", "s3_secret"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(CHART / "values.yaml")
    return data


def test_chart_version_and_app_version_follow_the_package() -> None:
    chart = _yaml(CHART / "Chart.yaml")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == __version__
    assert chart["version"] == __version__, "charts/kubejobs/Chart.yaml version"
    assert chart["appVersion"] == __version__, "charts/kubejobs/Chart.yaml appVersion"


def test_config_values_are_exactly_the_settings_the_chart_does_not_derive(
    schema: dict[str, Any], values: dict[str, Any]
) -> None:
    fields = {f.name for f in dataclasses.fields(ExecutorSettings)}
    in_schema = set(schema["definitions"]["config"]["properties"])
    assert set(DERIVED) <= fields, f"derived settings that no longer exist: {set(DERIVED) - fields}"
    assert in_schema == fields - set(DERIVED), (
        f"settings missing from the chart: {sorted(fields - set(DERIVED) - in_schema)}; "
        f"chart values that are no setting: {sorted(in_schema - fields)}"
    )
    assert set(values["config"]) == in_schema


def test_config_defaults_are_the_settings_defaults(values: dict[str, Any]) -> None:
    defaults = ExecutorSettings()
    differing = {
        name: (value, thaw(getattr(defaults, name)))
        for name, value in values["config"].items()
        if name not in CHART_DEFAULTED and value != thaw(getattr(defaults, name))
    }
    assert not differing, f"values.yaml config defaults differ from ExecutorSettings: {differing}"
    for name in CHART_DEFAULTED:
        assert values["config"][name] == "", f"{name}: empty means the chart's default"


def test_per_release_names_default_to_the_chart_and_the_rest_to_the_settings(
    values: dict[str, Any],
) -> None:
    """The objects every release has one of in the Jobs' namespace get release-scoped names
    from the chart (empty values), so two releases in one namespace neither collide nor
    share a key; the executor's own defaults are for running it by hand."""
    defaults = ExecutorSettings()
    assert values["logShipper"]["serviceAccount"]["name"] == ""
    assert values["executorKey"]["secretName"] == ""
    assert values["config"]["s3_secret"] == ""
    assert values["config"]["health_port"] == defaults.health_port


def _object_schemas(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node or "patternProperties" in node:
            found.append((path, node))
        for key, child in node.items():
            found += _object_schemas(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _object_schemas(child, f"{path}/{i}")
    return found


def test_every_object_in_the_schema_refuses_unknown_keys(schema: dict[str, Any]) -> None:
    open_objects = [
        path
        for path, node in _object_schemas(schema, "#")
        # if/then branches only add constraints to objects defined (closed) elsewhere
        if "/allOf/" not in path
        and path != "#/properties/global"  # Helm's global values belong to a parent chart
        and node.get("additionalProperties") is not False
    ]
    assert not open_objects


@pytest.mark.parametrize(
    "name",
    [
        "values.yaml",
        *sorted(p.relative_to(CHART).as_posix() for p in (CHART / "examples").glob("*.yaml")),
    ],
)
def test_values_files_validate_against_the_schema(name: str, schema: dict[str, Any]) -> None:
    data = _yaml(CHART / name)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=str)
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"statefulSet": {"enabled": "yes"}}, "statefulSet/enabled"),
        ({"config": {"max_jobs": 0}}, "config/max_jobs"),
        ({"config": {"capacity_mem": "1 GB"}}, "config/capacity_mem"),
        ({"config": {"health_port": 0}}, "config/health_port"),
        ({"executorKey": {"source": "value", "prvkey": "abc"}}, "executorKey/prvkey"),
        ({"extraEnv": [{"name": "KUBEJOBS_MAX_JOBS", "value": "1"}]}, "extraEnv/0/name"),
        ({"templates": {"sub/job.yaml.j2": "x"}}, "templates"),
    ],
)
def test_schema_rejects_bad_values_at_their_path(
    override: dict[str, Any], where: str, schema: dict[str, Any], values: dict[str, Any]
) -> None:
    merged = _merge(values, override)
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(merged))
    assert errors
    paths = {"/".join(map(str, e.absolute_path)) for e in errors}
    assert where in paths, paths


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_every_value_is_in_the_readme_values_reference(values: dict[str, Any]) -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    reference = readme[readme.index("## Values") :]

    def documented(path: str) -> bool:
        parts = path.split(".")
        prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
        return any(f"`{p}`" in reference or f"`{p}.*`" in reference for p in prefixes)

    missing = [p for p in _leaf_paths(values) if not documented(p)]
    assert not missing, f"values missing from charts/kubejobs/README.md: {missing}"


def test_schema_patterns_are_go_regular_expressions(schema: dict[str, Any]) -> None:
    """helm checks values with Go's regexp (RE2): no look-around, no back-references."""
    import re

    def patterns(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
            found += list(node.get("patternProperties", {}))
            return found + [p for v in node.values() for p in patterns(v)]
        if isinstance(node, list):
            return [p for v in node for p in patterns(v)]
        return []

    found = patterns(schema)
    assert found
    unsupported = re.compile(r"\(\?[=!<]|\\[1-9]")
    assert [p for p in found if unsupported.search(p)] == []
