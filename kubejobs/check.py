"""Offline Kubernetes schema checks of rendered manifests for a target version.

kubeconform is used when it is on PATH (the tool most CI pipelines already run);
otherwise the same strict schemas, shipped by the kubernetes-validate package,
are applied in-process with jsonschema. Both read the schemas from that package,
so nothing is fetched from the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from kubejobs.errors import KubejobsError, SettingsError
from kubejobs.render.kube_version import parse_kube_version
from kubejobs.spec.schema_errors import json_path


@dataclass(frozen=True)
class ManifestProblem:
    """One schema violation in one rendered object."""

    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} {self.path}: {self.message}"


@cache
def schema_root() -> Path:
    """The kubernetes-validate schema folder (one '<version>-local-strict' folder per minor)."""
    ref = files("kubernetes_validate").joinpath("kubernetes-json-schema")
    with as_file(ref) as path:
        return Path(path)


@cache
def schema_version(kube_version: str) -> str:
    """The newest shipped schema version not newer than the target, e.g. 'v1.29.0'."""
    wanted = parse_kube_version(kube_version)
    available = []
    for entry in schema_root().iterdir():
        match = re.match(r"^v(\d+)\.(\d+)\.(\d+)-local-strict$", entry.name)
        if match:
            available.append(((int(match[1]), int(match[2])), f"v{match[1]}.{match[2]}.{match[3]}"))
    fitting = sorted(v for v in available if v[0] <= wanted)
    if not fitting or wanted > max(available)[0]:
        known = ", ".join(v[1] for v in sorted(available))
        raise KubejobsError(f"no offline Kubernetes schemas for {kube_version} (have {known})")
    return fitting[-1][1]


def kubeconform_schema_location(kube_version: str) -> str:
    """kubeconform's -schema-location template, with the target version's schemas prepared.

    kubernetes-validate's files refer to "/api/_definitions.json" under an https $id,
    which kubeconform would fetch from the network; a converted copy with the $id
    dropped and the refs relative to the sibling file is kept in the user's cache.
    """
    version = schema_version(kube_version)
    root = _cache_dir() / f"kubernetes-validate-{_schemas_release()}"
    target = root / f"{version}-standalone-strict"
    if not (target / ".complete").exists():
        _convert(schema_root() / f"{version}-local-strict", target)
    return str(root) + (
        "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubejobs" / "kubeconform-schemas"


def _schemas_release() -> str:
    from importlib.metadata import version

    return version("kubernetes-validate")


_ABSOLUTE_REF = re.compile(r'"\$ref":\s*"/api/_definitions\.json#')


def _convert(source: Path, target: Path) -> None:
    # Written next to the target, then renamed: concurrent checks never see half a folder.
    staging = Path(
        tempfile.mkdtemp(
            prefix=".staging-",
            dir=target.parent if target.parent.exists() else _mkdir(target.parent),
        )
    )
    for schema in source.glob("*.json"):
        doc = json.loads(
            _ABSOLUTE_REF.sub('"$ref": "_definitions.json#', schema.read_text("utf-8"))
        )
        if isinstance(doc, dict):
            doc.pop("$id", None)
        (staging / schema.name).write_text(json.dumps(doc), encoding="utf-8")
    (staging / ".complete").touch()
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_manifests(
    manifests: list[dict[str, Any]], kube_version: str, use_kubeconform: bool | None = None
) -> list[ManifestProblem]:
    """Every schema problem in `manifests` for `kube_version` (empty when they are valid)."""
    return check_groups([manifests], kube_version, use_kubeconform)[0]


def check_groups(
    groups: list[list[dict[str, Any]]], kube_version: str, use_kubeconform: bool | None = None
) -> list[list[ManifestProblem]]:
    """The problems of each group of manifests (one group per spec), checked in one pass.

    kubeconform runs once for all groups, not once per spec: a pre-commit run over a
    repository of specs would otherwise pay a process start per spec.
    """
    if not groups:
        return []
    if use_kubeconform is None:
        use_kubeconform = shutil.which("kubeconform") is not None
    if use_kubeconform:
        return _kubeconform(groups, kube_version)
    return [[p for m in group for p in _in_process(m, kube_version)] for group in groups]


def _in_process(manifest: dict[str, Any], kube_version: str) -> list[ManifestProblem]:
    kind = str(manifest.get("kind", ""))
    name = str(manifest.get("metadata", {}).get("name", ""))
    validator = _validator(schema_version(kube_version), kind, str(manifest.get("apiVersion", "")))
    if validator is None:
        return [
            ManifestProblem(kind, name, "$", f"no schema for {manifest.get('apiVersion')} {kind}")
        ]
    return [
        ManifestProblem(kind, name, json_path(error.absolute_path), error.message)
        for error in sorted(
            validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))
        )
    ]


@cache
def _validator(version: str, kind: str, api_version: str) -> Draft202012Validator | None:
    # rbac.authorization.k8s.io/v1 -> rbac-v1; v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = schema_root() / f"{version}-local-strict"
    path = folder / f"{kind.lower()}-{group_version}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    # Both files carry absolute $ids (https://kubernetes.io/api/...); refs resolve against them.
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in (schema, definitions)
    )
    return Draft202012Validator(schema, registry=registry)


def _kubeconform(
    groups: list[list[dict[str, Any]]], kube_version: str
) -> list[list[ManifestProblem]]:
    if shutil.which("kubeconform") is None:
        raise SettingsError(
            "--kubeconform: kubeconform is not on PATH (install it, or drop --kubeconform "
            "to check in-process with the same schemas)"
        )
    version = schema_version(kube_version).lstrip("v")
    location = kubeconform_schema_location(kube_version)
    with tempfile.TemporaryDirectory(prefix="kubejobs-check-") as folder:
        # One file per group: kubeconform names the file in each result, which
        # maps problems back to their spec even when two specs render equal names.
        for index, group in enumerate(groups):
            text = yaml.safe_dump_all(group, sort_keys=False)
            (Path(folder) / f"{index:06d}.yaml").write_text(text, encoding="utf-8")
        result = subprocess.run(
            [
                "kubeconform",
                "-strict",
                "-summary=false",
                "-output",
                "json",
                "-kubernetes-version",
                version,
                "-schema-location",
                location,
                folder,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        report = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        raise KubejobsError(
            f"kubeconform failed: {result.stderr.strip() or result.stdout.strip()}"
        ) from None
    problems: list[list[ManifestProblem]] = [[] for _ in groups]
    for r in report.get("resources", []):
        if r.get("status") not in ("statusInvalid", "statusError"):
            continue
        index = int(Path(str(r.get("filename", ""))).stem)
        problems[index] += [
            ManifestProblem(str(r.get("kind", "")), str(r.get("name", "")), path, message)
            for path, message in _kubeconform_errors(r)
        ]
    found = any(problems)
    if result.returncode not in (0, 1) or (result.returncode == 1 and not found):
        raise KubejobsError(f"kubeconform failed: {result.stderr.strip() or result.stdout.strip()}")
    # kubeconform reports resources in the order its workers finish them.
    for found_in_group in problems:
        found_in_group.sort(key=lambda p: (p.kind, p.name, p.path))
    return problems


# kubeconform's validationErrors often say only "validation failed" at a parent path;
# its msg carries the detail: "... - at '/spec/template/spec': additional properties ...".
_DETAIL = re.compile(r"- at '([^']*)': (.+)")


def _kubeconform_errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    def path(pointer: str) -> str:
        return "$" + pointer.replace("/", ".") if pointer != "/" else "$"

    details = _DETAIL.findall(str(resource.get("msg", "")))
    if details:
        return [(path(pointer), message.strip()) for pointer, message in details]
    errors = resource.get("validationErrors") or [{"path": "", "msg": resource.get("msg", "")}]
    return [(path(str(e.get("path", ""))), str(e.get("msg", ""))) for e in errors]
