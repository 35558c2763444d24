"""The CLI as a user meets it: exit codes, output formats, messages on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.helpers import PID, spec_with

ROOT = Path(__file__).resolve().parents[2]


def kubejobs(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubejobs", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        env=env,
        check=False,
    )


def write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return str(path)


def test_validate_good_files_exits_0() -> None:
    result = kubejobs(
        "validate", "examples/hello-world.json", "examples/init-cmd.yaml", "examples/workflow.json"
    )
    assert result.returncode == 0, result.stderr
    assert "3 file(s) valid" in result.stderr


def test_validate_reports_every_error_of_every_file_and_exits_1(tmp_path: Path) -> None:
    bad = write(
        tmp_path, "bad.json", spec_with(conditions={"mem": "1 GB", "processes-per-node": 2})
    )
    worse = write(tmp_path, "worse.yaml", spec_with(maxexectime=0))
    result = kubejobs("validate", bad, worse)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        f"{bad}::$.conditions.mem: '1 GB' is not an amount of memory; write a whole number with Ki, Mi, Gi, M or G (512Mi, 4Gi)"
        in lines
    )
    assert (
        f"{bad}::$.conditions['processes-per-node']: unknown key 'processes-per-node'; did you mean 'processespernode'?"
        in lines
    )
    assert any(line.startswith(f"{worse}::$.maxexectime: 0 makes") for line in lines)
    assert len(lines) == 3


def test_validate_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    result = kubejobs("validate", str(tmp_path / "missing.json"))
    assert result.returncode == 1
    assert f"{tmp_path}/missing.json::$: cannot read file" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert kubejobs("validate").returncode == 2
    assert kubejobs("render", "examples/hello-world.json", "-o", "xml").returncode == 2
    assert kubejobs("nonsense").returncode == 2


def test_bad_setting_exits_2() -> None:
    result = kubejobs("render", "examples/hello-world.json", "--kube-version", "banana")
    assert result.returncode == 2
    assert "settings error: kube_version: 'banana' is not a Kubernetes version" in result.stderr


def test_render_yaml_is_parseable_and_deterministic() -> None:
    first = kubejobs("render", "examples/multi-node.json", "--process-id", PID)
    second = kubejobs("render", "examples/multi-node.json", "--process-id", PID)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(first.stdout)]
    assert kinds == ["Job", "Service"]


def test_render_without_process_id_derives_a_stable_one() -> None:
    a = kubejobs("render", "examples/hello-world.json", "-o", "json")
    b = kubejobs("render", "examples/hello-world.json", "-o", "json")
    assert a.stdout == b.stdout
    job = json.loads(a.stdout)["items"][0]
    assert len(job["metadata"]["annotations"]["kubejobs.io/process-id"]) == 64


def test_render_json_is_a_list() -> None:
    result = kubejobs("render", "examples/gpu.json", "-o", "json", "--process-id", PID)
    data = json.loads(result.stdout)
    assert data["kind"] == "List" and data["items"][0]["kind"] == "Job"


def test_render_from_stdin_and_env_settings() -> None:
    env = {"KUBEJOBS_NAMESPACE": "from-env", "PATH": "/usr/bin:/bin"}
    result = kubejobs("render", "-", stdin=json.dumps(spec_with()), env=env)
    assert result.returncode == 0, result.stderr
    assert next(yaml.safe_load_all(result.stdout))["metadata"]["namespace"] == "from-env"


def test_render_invalid_spec_exits_1_with_located_errors(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", spec_with(conditions={"nodes": 0}))
    result = kubejobs("render", bad)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"{bad}::$.conditions.nodes: must be at least 1, got 0"


def test_render_bad_process_id() -> None:
    result = kubejobs("render", "examples/hello-world.json", "--process-id", "xyz")
    assert result.returncode == 1
    assert "--process-id::$: 'xyz' is not a process id" in result.stderr


def test_render_workflow_renders_every_spec() -> None:
    result = kubejobs("render", "examples/workflow.json")
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["Job", "Job"]


def test_render_other_funcname_is_refused(tmp_path: Path) -> None:
    spec = write(tmp_path, "f.json", {"funcname": "train"})
    result = kubejobs("render", spec)
    assert result.returncode == 1
    assert (
        f"{spec}::$.funcname: the Kubernetes executor runs funcname 'execute', not 'train'"
        in result.stderr
    )


def test_template_error_exits_1(tmp_path: Path) -> None:
    (tmp_path / "job.yaml.j2").write_text("kind: {{ kind }}\n")
    result = kubejobs("render", "examples/hello-world.json", "--templates", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("template error: ")
    assert "job.yaml.j2:1: 'kind' is undefined" in result.stderr


def test_schema_prints_the_json_schema() -> None:
    result = kubejobs("schema")
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "functionspecs" in json.loads(kubejobs("schema", "--workflow").stdout)["properties"]


def test_templates_dump_writes_the_builtins_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = kubejobs("templates", "dump", str(tmp_path / "t"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "README.md",
        "job.yaml.j2",
        "service.yaml.j2",
    ]
    assert kubejobs("templates", "dump", str(tmp_path / "t")).returncode == 2
    # A dumped folder renders exactly like the built-ins.
    plain = kubejobs("render", "examples/multi-node.json")
    dumped = kubejobs("render", "examples/multi-node.json", "--templates", str(tmp_path / "t"))
    assert plain.stdout == dumped.stdout


@pytest.mark.parametrize("use_kubeconform", ["--no-kubeconform"])
def test_check_in_process(use_kubeconform: str, tmp_path: Path) -> None:
    result = kubejobs(
        "check",
        use_kubeconform,
        "examples/hello-world.json",
        "examples/multi-node.json",
        "--kube-version",
        "1.29",
    )
    assert result.returncode == 0, result.stderr
    bad_template = tmp_path / "job.yaml.j2"
    text = (
        (ROOT / "templates/job.yaml.j2")
        .read_text()
        .replace("restartPolicy: Never", "restartPolicy: Never\n      bogusField: 1")
    )
    bad_template.write_text(text)
    result = kubejobs(
        "check", use_kubeconform, "examples/hello-world.json", "--templates", str(tmp_path)
    )
    assert result.returncode == 1
    assert "examples/hello-world.json::$: Kubernetes 1.34: Job/kj-" in result.stderr
    assert "bogusField" in result.stderr


def test_secrets_never_reach_stdout(tmp_path: Path) -> None:
    env = {
        "KUBEJOBS_EXECUTOR_KEY_SECRET": "exec-key",
        "PATH": "/usr/bin:/bin",
        "COLONIES_PRVKEY": "f" * 64,
    }
    result = kubejobs("render", "examples/cfs-data.json", env=env)
    assert "f" * 64 not in result.stdout
    assert "secretKeyRef" in result.stdout
