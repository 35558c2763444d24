"""Rendered manifests against real tools: kubeconform -strict with offline schemas, and a
server-side dry run (strict field validation) against the test kube-apiserver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.output import to_yaml
from kubejobs.spec import validate_spec
from tests.unit.test_golden import CASES, EXAMPLES, GOLDEN, PID

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GOLDEN_FILES = sorted(GOLDEN.glob("*.yaml"))


def kubejobs_check(*args: str) -> subprocess.CompletedProcess[str]:
    """`kubejobs check --kubeconform ARGS` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "kubejobs", "check", "--kubeconform", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def broken_template(folder: Path) -> Path:
    """The built-in Job template with an unknown field, written into `folder`."""
    text = (
        (ROOT / "templates/job.yaml.j2")
        .read_text()
        .replace("restartPolicy: Never", "restartPolicy: Never\n      restartPolicyy: Never")
    )
    folder.mkdir(exist_ok=True)
    (folder / "job.yaml.j2").write_text(text)
    return folder


@pytest.mark.parametrize("version", ["1.29.0", "1.34.0"])
@pytest.mark.parametrize("golden", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden_manifest_passes_kubeconform_strict(kubeconform, golden: Path, version: str) -> None:  # type: ignore[no-untyped-def]
    result = kubeconform.run(str(golden), kubernetes_version=version, strict=True)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (
        summary["valid"] == len(list(yaml.safe_load_all(golden.read_text())))
        and summary["invalid"] == 0
    )


def test_kubeconform_strict_catches_what_a_template_gets_wrong(kubeconform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = kubejobs_check(
        "--templates", str(broken_template(tmp_path)), "examples/hello-world.json"
    )
    assert result.returncode == 1, result.stderr
    assert "examples/hello-world.json::$: Kubernetes 1.34: Job/kj-" in result.stderr
    assert "restartPolicyy" in result.stderr


def test_kubeconform_runs_once_and_names_each_spec_with_its_problem(
    kubeconform: Any, tmp_path: Path
) -> None:
    # Two copies of one spec render the same Job name: each must still get its own report.
    same = tmp_path / "same.json"
    same.write_text((ROOT / "examples/hello-world.json").read_text())
    broken = tmp_path / "broken.json"
    broken.write_text('{"funcname": "execute", "conditions": {"executortype": "k8s", "cpu": "x"}}')
    result = kubejobs_check(
        "--templates",
        str(broken_template(tmp_path / "templates")),
        "examples/hello-world.json",
        str(same),
        "examples/multi-node.json",
        str(broken),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    for name in ("examples/hello-world.json", str(same), "examples/multi-node.json"):
        hits = [
            line for line in lines if line.startswith(f"{name}::$") and "restartPolicyy" in line
        ]
        assert len(hits) == 1, (name, result.stderr)
    assert any(line.startswith(f"{broken}::$.conditions.cpu") for line in lines), result.stderr


def test_kubejobs_check_with_kubeconform_passes_every_example(kubeconform) -> None:  # type: ignore[no-untyped-def]
    files = [str(p.relative_to(ROOT)) for p in EXAMPLES]
    for version in ("1.28", "1.29", "1.34"):
        result = kubejobs_check("--kube-version", version, *files)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("example", "suffix"), CASES, ids=[p.stem + s for p, s in CASES])
def test_server_side_dry_run_accepts_every_example(
    kube_namespace: Any, example: Path, suffix: str
) -> None:
    settings = RenderSettings(
        namespace=kube_namespace.name, kube_version="1.28" if suffix else "1.34"
    )
    from kubejobs.spec import load_documents

    (doc,), _ = load_documents([str(example)])
    specs = [data for _, data in doc.specs()]  # one spec, or each of a workflow in either form
    manifests = [m for s in specs for m in Renderer(settings).render(validate_spec(s), PID)]
    result = kube_namespace.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=to_yaml(manifests),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("(server dry run)") == len(manifests)
