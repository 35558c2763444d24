"""The published hooks (.pre-commit-hooks.yaml) run by the real pre-commit tool against a
repository of good and bad specs, configured as the README says (`repo:` and `rev:` in the
spec repository's .pre-commit-config.yaml). The hook repository is a snapshot of this
checkout, uncommitted changes included; pre-commit builds the hooks' environment from it
once, as a user's first `pre-commit run` would, and every test reuses it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.helpers import spec_with

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def snapshot_of_this_checkout(dest: Path) -> str:
    """The working tree's files (tracked and new, not ignored) committed in `dest`; the sha."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    subprocess.run([*GIT, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*GIT, "add", "."], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-qm", "snapshot"], cwd=dest, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True, check=True
    ).stdout.strip()
    return sha


@pytest.fixture(scope="module")
def spec_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hooks = tmp_path_factory.mktemp("hooks-repo")
    rev = snapshot_of_this_checkout(hooks)
    repo = tmp_path_factory.mktemp("specs-repo")
    config = {
        "repos": [
            {
                "repo": str(hooks),
                "rev": rev,
                "hooks": [{"id": "kubejobs-validate"}, {"id": "kubejobs-check"}],
            }
        ]
    }
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    (repo / "specs").mkdir()
    (repo / "specs" / "good.json").write_text(json.dumps(spec_with()))
    shutil.copy(ROOT / "examples" / "init-cmd.yaml", repo / "specs" / "good.yaml")
    (repo / "specs" / "bad.json").write_text(
        json.dumps(spec_with(conditions={"mem": "1 GB", "processes-per-node": 2}))
    )
    (repo / "specs" / "bad-template-input.json").write_text(json.dumps(spec_with(maxexectime=0)))
    # Workflows in the CLI's form (an array of specs), as JSON and as YAML
    shutil.copy(ROOT / "examples" / "workflow-cli.json", repo / "specs" / "workflow-cli.json")
    steps = [spec_with(nodename="a"), spec_with(nodename="b", conditions={"dependencies": ["a"]})]
    (repo / "specs" / "workflow.yaml").write_text(yaml.safe_dump(steps))
    steps[1]["conditions"]["dependencies"] = ["a", "fetch"]
    (repo / "specs" / "dangling.yaml").write_text(yaml.safe_dump(steps))
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "."], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "specs"], cwd=repo, check=True)
    return repo


def pre_commit(repo: Path, hook: str, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"), "NO_COLOR": "1"}
    binary = str(Path(sys.executable).parent / "pre-commit")
    return subprocess.run(
        [binary, "run", hook, "--color", "never", "--files", *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_validate_hook_passes_good_specs(spec_repo: Path) -> None:
    result = pre_commit(spec_repo, "kubejobs-validate", "specs/good.json", "specs/good.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kubejobs validate (function specs)" in result.stdout and "Passed" in result.stdout


def test_validate_hook_fails_bad_specs_with_located_errors(spec_repo: Path) -> None:
    result = pre_commit(
        spec_repo,
        "kubejobs-validate",
        "specs/good.json",
        "specs/bad.json",
        "specs/bad-template-input.json",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "specs/bad.json::$.conditions.mem: '1 GB' is not an amount of memory" in result.stdout
    assert (
        "specs/bad.json::$.conditions['processes-per-node']: unknown key 'processes-per-node'; did you mean 'processespernode'?"
        in result.stdout
    )
    assert (
        "specs/bad-template-input.json::$.maxexectime: 0 makes the Colonies server expire"
        in result.stdout
    )


def test_validate_hook_passes_workflows_in_the_cli_form(spec_repo: Path) -> None:
    files = ("specs/workflow-cli.json", "specs/workflow.yaml")
    result = pre_commit(spec_repo, "kubejobs-validate", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_hook_refuses_a_dangling_dependency_with_its_path(spec_repo: Path) -> None:
    result = pre_commit(
        spec_repo, "kubejobs-validate", "specs/workflow.yaml", "specs/dangling.yaml"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "specs/dangling.yaml::$[1].conditions.dependencies[1]: "
        "no function spec in this workflow has nodename 'fetch' (nodenames: 'a', 'b')"
        in result.stdout
    )


def test_check_hook_renders_and_checks(spec_repo: Path) -> None:
    files = ("specs/good.json", "specs/good.yaml", "specs/workflow-cli.json")
    good = pre_commit(spec_repo, "kubejobs-check", *files)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = pre_commit(spec_repo, "kubejobs-check", "specs/bad.json")
    assert bad.returncode == 1
    assert "specs/bad.json::$.conditions.mem" in bad.stdout
