"""kubejobs as users meet it: specs submitted with the real `colonies` CLI, and the process's
state, output, errors and logs read back with it.

The executor runs as a subprocess against the real Colonies server and the real control
plane (kwok plays the kubelet, steered by pod annotations). The log test runs the real log
shipper program against a kwok pod's log, and follows it with `colonies log get --follow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testenv.colonies import colonies_binary
from tests.integration import test_executor_e2e as e2e
from tests.integration.inpod_support import (
    EXECUTOR_TYPE,
    complete_pod,
    create_pod,
    cri_log,
    inpod_executor,
    pod_manifest,
    shipper,
)
from tests.integration.polling import until
from tests.integration.test_executor_e2e import FAILED, RUNNING, SUCCESS, WAITING, ExecutorRun, spec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
executor = e2e.executor  # the executor subprocess fixture, in this test's namespace


def cli(colonies: Any, *args: str, prvkey: str | None = None) -> subprocess.Popen[str]:
    """The CLI as a user runs it: COLONIES_* in the environment, --insecure for plain HTTP."""
    env = {**os.environ, **colonies.env, "COLONIES_PRVKEY": prvkey or colonies.executor_prvkey}
    return subprocess.Popen(
        [colonies_binary(), *args, "--insecure"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def submit_and_wait(colonies: Any, spec_file: Path) -> tuple[int, str]:
    """`colonies function submit --spec F --wait`: its exit code and the process id it logged."""
    proc = cli(colonies, "function", "submit", "--spec", str(spec_file), "--wait")
    _, err = proc.communicate(timeout=180)
    found = [w for w in err.split() if w.startswith("ProcessId=")]
    assert found, err
    return proc.returncode, found[0].removeprefix("ProcessId=")


def process_json(colonies: Any, pid: str) -> dict[str, Any]:
    """`colonies process get --json`; a FAILED process is read until its errors are stored
    (v1.9.7 writes the state and the errors in separate statements)."""

    def read() -> dict[str, Any] | None:
        result = colonies.cli("process", "get", "-p", pid, "--json")
        # v1.9.7 prints the document followed by " <nil>" (its error value): read the first
        doc: dict[str, Any] = json.JSONDecoder().raw_decode(result.stdout)[0]
        return None if doc["state"] == FAILED and not doc.get("errors") else doc

    found: dict[str, Any] = until(read, f"the errors of failed process {pid}", 10)
    return found


def test_submit_wait_then_get_output(
    executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    run = executor({"kwok.test/message": "answer=42"})
    spec_file = tmp_path / "hello.json"
    spec_file.write_text(json.dumps(spec(run.type)))
    code, pid = submit_and_wait(colonies, spec_file)
    assert code == 0
    process = process_json(colonies, pid)
    assert (process["state"], process["out"]) == (SUCCESS, ["answer=42"])
    assert colonies.cli("process", "get", "-p", pid, "--out").stdout == "answer=42\n"
    run.wait_no_jobs()


def test_submit_wait_of_a_failing_program_shows_why(
    executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    run = executor({"kwok.test/exit-code": "3", "kwok.test/message": "no input"})
    spec_file = tmp_path / "fails.json"
    spec_file.write_text(json.dumps(spec(run.type)))
    code, pid = submit_and_wait(colonies, spec_file)
    assert code != 0
    process = process_json(colonies, pid)
    assert process["state"] == FAILED
    assert "container main exited with code 3 (Error): no input" in process["errors"][0]


def test_an_invalid_spec_fails_with_every_problem_in_process_get(
    executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    run = executor()
    bad = spec(run.type)
    bad["kwargs"] = {"cmd": "echo hi | wc"}  # no image, and a shell pipe in an exec-form cmd
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps(bad))
    code, pid = submit_and_wait(colonies, spec_file)
    assert code != 0
    errors = process_json(colonies, pid)["errors"]
    assert any("docker-image" in e for e in errors), errors
    assert any("'|'" in e or "shell" in e for e in errors), errors
    assert not run.jobs()


def test_the_cli_form_workflow_example_is_valid_and_submitted_by_the_cli(colonies: Any) -> None:
    """examples/workflow-cli.json is the file `colonies workflow submit --spec` reads (an
    array of specs); kubejobs validates the same file, and the server builds the graph."""
    example = ROOT / "examples" / "workflow-cli.json"
    valid = subprocess.run(
        [str(Path(sys.executable).parent / "kubejobs"), "validate", str(example)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert valid.returncode == 0, valid.stderr
    submitted = colonies.cli("workflow", "submit", "--spec", str(example))
    found = [w for w in submitted.stderr.split() if w.startswith("WorkflowID=")]
    assert found, submitted.stderr
    workflow_id = found[0].removeprefix("WorkflowID=")
    got = colonies.cli("workflow", "get", "--workflowid", workflow_id, "--json").stdout
    graph = json.JSONDecoder().raw_decode(got)[0]  # v1.9.7 prints " <nil>" after it
    label = {node["id"]: node["data"]["label"] for node in graph["nodes"]}
    assert sorted(label[pid] for pid in graph["processids"]) == sorted(
        spec["nodename"] for spec in json.loads(example.read_text())
    )
    assert [label[pid] for pid in graph["rootprocessids"]] == ["prepare"]
    edges = {(label[e["source"]], label[e["target"]]) for e in graph["edges"]}
    assert edges == {
        ("prepare", "count-words"),
        ("prepare", "count-lines"),
        ("count-words", "report"),
        ("count-lines", "report"),
    }
    for pid in graph["processids"]:  # every step is a process waiting for an executor
        assert colonies.get_process(pid)["state"] == WAITING


def test_the_cli_refuses_the_api_form_that_kubejobs_also_accepts(colonies: Any) -> None:
    """The API form (examples/workflow.json) is for the API and pycolonies, not the CLI."""
    example = ROOT / "examples" / "workflow.json"
    refused = colonies.cli("workflow", "submit", "--spec", str(example), check=False)
    assert refused.returncode != 0
    assert "trying to submit a function spec" in refused.stderr


def test_log_get_and_follow_show_the_shipped_lines_while_the_process_runs(
    kube: Any, kube_namespace: Any, colonies: Any, tmp_path: Path
) -> None:
    owner = inpod_executor(colonies)
    doc = {"funcname": "inpod", "conditions": {"executortype": EXECUTOR_TYPE}}
    doc.update(maxexectime=-1, maxretries=-1, maxwaittime=-1)
    spec_file = tmp_path / "logs.json"
    spec_file.write_text(json.dumps(doc))
    submitted = cli(colonies, "function", "submit", "--spec", str(spec_file))
    _, err = submitted.communicate(timeout=60)
    pid = next(w for w in err.split() if w.startswith("ProcessId=")).removeprefix("ProcessId=")
    assigned = colonies.assign(timeout=10, prvkey=owner.prvkey)
    assert assigned["processid"] == pid

    log = cri_log(kube_namespace, "main", "follow")
    create_pod(kube_namespace, pod_manifest("follow", ["main"]))
    program = shipper(
        kube, kube_namespace, "follow", ["main"], colonies, owner, pid, tmp_path
    ).start()
    follow = cli(colonies, "log", "get", "-p", pid, "--follow")
    try:
        first = [f"step {i}" for i in range(5)]
        log.write(first)
        assert follow.stdout is not None
        seen = [follow.stdout.readline().rstrip("\n") for _ in first]
        assert seen == first  # streamed while the pod still runs
        assert colonies.get_process(pid)["state"] == RUNNING
        last = [f"step {i}" for i in range(5, 150)]
        log.write(last)
        seen += [follow.stdout.readline().rstrip("\n") for _ in last]
        assert seen == first + last
    finally:
        follow.kill()  # --follow keeps waiting for more; a user stops it
        follow.communicate()
    complete_pod(kube_namespace, "follow")
    assert program.wait() == 0, program.output()
    # `log get` shows the latest 100 by default; --count reaches them all
    everything = colonies.cli("log", "get", "-p", pid, "--count", "500").stdout
    assert everything.splitlines() == first + last
    colonies.close(pid, [], prvkey=owner.prvkey)
    until(lambda: colonies.get_process(pid)["state"] == SUCCESS, "closed")
