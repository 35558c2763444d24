"""Workflows as ColonyOS users write them, on the real node, with the real `colonies` CLI.

A workflow file in the CLI's form (a JSON array of function specs, each with a
`nodename` and `conditions.dependencies`) is submitted with `colonies workflow
submit --spec`; the steps are busybox `sh -c` programs run by `kubejobs
executor` on real-node-0. Each program reads its process's `in` (its parents'
outputs, as the server assembled them at assignment) from `$KUBEJOBS_INPUT_FILE`
(and `$KUBEJOBS_INPUT` when small) and writes its output as JSON to
`$KUBEJOBS_OUTPUT_FILE`. States and outputs are read back with `colonies
workflow get --json` and `colonies process get --json`.

Waits are bounded by generous limits; nothing asserts on durations. That a
step never ran is shown by a process submitted after it that did run: the
executor had every chance to take the step and did not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.polling import until
from tests.integration.realnode.test_executor_realnode import WAIT, scheduled_to_real_node, sh
from tests.integration.test_colonies_cli import process_json
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun

pytestmark = pytest.mark.integration
OUTPUT_DIR = "/var/run/kubejobs/output"


def step(run: ExecutorRun, name: str, script: str, after: tuple[str, ...] = ()) -> dict[str, Any]:
    """One entry of a CLI-form workflow file: a busybox `sh -c` step for the real node."""
    doc = sh(run, script, nodename=name)
    if after:
        doc["conditions"]["dependencies"] = list(after)
    return doc


def submit_workflow(colonies: Any, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    """`colonies workflow submit --spec FILE` of the array form; the workflow id it logged."""
    spec_file = tmp_path / "workflow.json"
    spec_file.write_text(json.dumps(steps, indent=2))
    submitted = colonies.cli("workflow", "submit", "--spec", str(spec_file))
    found = [w for w in submitted.stderr.split() if w.startswith("WorkflowID=")]
    assert found, submitted.stderr
    return found[0].removeprefix("WorkflowID=")


def workflow_json(colonies: Any, workflow_id: str) -> dict[str, Any]:
    """`colonies workflow get --json` (v1.9.7 prints " <nil>" after the document)."""
    out = colonies.cli("workflow", "get", "--workflowid", workflow_id, "--json").stdout
    graph: dict[str, Any] = json.JSONDecoder().raw_decode(out)[0]
    return graph


def process_ids(graph: dict[str, Any]) -> dict[str, str]:
    """nodename -> process id, from the graph's nodes."""
    label = {node["id"]: node["data"]["label"] for node in graph["nodes"]}
    return {label[pid]: pid for pid in graph["processids"]}


def wait_workflow(run: ExecutorRun, colonies: Any, workflow_id: str) -> dict[str, Any]:
    """The graph once it is SUCCESS or FAILED (the server resolves it at every close)."""

    def done() -> dict[str, Any] | None:
        graph = workflow_json(colonies, workflow_id)
        return graph if graph["state"] in (SUCCESS, FAILED) else None

    try:
        found: dict[str, Any] = until(done, f"workflow {workflow_id} done", 2 * WAIT)
    except AssertionError as err:
        raise AssertionError(f"{err}\nexecutor log:\n{run.log()}") from None
    return found


def process_get(colonies: Any, pid: str) -> dict[str, Any]:
    """`colonies process get --json`, read once (a child the server failed has no errors)."""
    out = colonies.cli("process", "get", "-p", pid, "--json").stdout
    doc: dict[str, Any] = json.JSONDecoder().raw_decode(out)[0]
    return doc


def log_lines(colonies: Any, pid: str) -> list[str]:
    """`colonies log get` of the process (all of it)."""
    out = colonies.cli("log", "get", "-p", pid, "--count", "500").stdout
    return list(out.splitlines())


# --- fan-out / fan-in ----------------------------------------------------------------


def test_fan_out_fan_in_each_child_gets_its_parents_outputs(
    real_executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    """a before b and c, both before d: a's output is b's and c's input, d gets b's and c's."""
    run = real_executor()
    # each child echoes its input to its log, and puts the file and the variable in its output
    relay = (
        'cat "$KUBEJOBS_INPUT_FILE"; echo; '
        'printf \'{"step":"%s","file":%s,"env":%s}\' "$STEP" '
        '"$(cat "$KUBEJOBS_INPUT_FILE")" "$KUBEJOBS_INPUT" >"$KUBEJOBS_OUTPUT_FILE"'
    )
    steps = [
        step(run, "a", 'echo a runs; printf \'"from-a"\' >"$KUBEJOBS_OUTPUT_FILE"'),
        step(run, "b", f"STEP=b; {relay}", after=("a",)),
        step(run, "c", f"STEP=c; {relay}", after=("a",)),
        step(run, "d", f"STEP=d; {relay}", after=("b", "c")),
    ]
    workflow_id = submit_workflow(colonies, tmp_path, steps)
    graph = wait_workflow(run, colonies, workflow_id)
    ids = process_ids(graph)
    assert sorted(ids) == ["a", "b", "c", "d"]
    procs = {name: process_json(colonies, pid) for name, pid in ids.items()}
    assert {n: p["state"] for n, p in procs.items()} == dict.fromkeys(ids, SUCCESS), {
        n: p.get("errors") for n, p in procs.items()
    }
    assert graph["state"] == SUCCESS

    assert procs["a"]["in"] in (None, [])  # a root: no parents, no input
    assert procs["a"]["out"] == ["from-a"]
    for child in ("b", "c"):
        assert procs[child]["in"] == ["from-a"]
        assert procs[child]["out"] == [{"step": child, "file": ["from-a"], "env": ["from-a"]}]
        assert log_lines(colonies, ids[child]) == ['["from-a"]']
    # d's input: its parents' outputs in the order the server lists its parents
    parents = [next(n for n, pid in ids.items() if pid == p) for p in procs["d"]["parents"]]
    assert sorted(parents) == ["b", "c"]
    expected = [item for parent in parents for item in procs[parent]["out"]]
    assert procs["d"]["in"] == expected
    assert procs["d"]["out"] == [{"step": "d", "file": expected, "env": expected}]
    assert log_lines(colonies, ids["a"]) == ["a runs"]
    # what a user reads: the output through the CLI
    out = colonies.cli("process", "get", "-p", ids["a"], "--out").stdout
    assert out.strip() == "from-a"
    assert scheduled_to_real_node(run) == 4
    run.wait_no_jobs()


# --- a large output ----------------------------------------------------------------


def test_a_100kb_output_reaches_the_child_intact(
    real_executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    """100,000 characters as the parent's output, far past a termination message's 4 KiB."""
    run = real_executor()
    big = "x" * 100_000
    parent = 'printf \'"%s"\' "$(head -c 100000 /dev/zero | tr \'\\0\' x)" >"$KUBEJOBS_OUTPUT_FILE"'
    child = (
        'n=$(wc -c <"$KUBEJOBS_INPUT_FILE" | tr -d " "); '
        's=$(sha256sum <"$KUBEJOBS_INPUT_FILE" | cut -d" " -f1); '
        'if [ -n "${KUBEJOBS_INPUT+set}" ]; then e=true; else e=false; fi; '
        'printf \'{"bytes":%s,"sha256":"%s","env":%s}\' "$n" "$s" "$e" >"$KUBEJOBS_OUTPUT_FILE"'
    )
    workflow_id = submit_workflow(
        colonies,
        tmp_path,
        [step(run, "parent", parent), step(run, "child", child, after=("parent",))],
    )
    graph = wait_workflow(run, colonies, workflow_id)
    ids = process_ids(graph)
    first, second = process_json(colonies, ids["parent"]), process_json(colonies, ids["child"])
    assert (first["state"], second["state"]) == (SUCCESS, SUCCESS), (
        first.get("errors"),
        second.get("errors"),
    )
    assert first["out"] == [big]
    assert second["in"] == [big]
    # the file holds the input as compact JSON; over 32 KiB there is no KUBEJOBS_INPUT
    text = json.dumps([big], separators=(",", ":")).encode()
    assert second["out"] == [
        {"bytes": len(text), "sha256": hashlib.sha256(text).hexdigest(), "env": False}
    ]
    run.wait_no_jobs()


# --- a failed parent ---------------------------------------------------------------


def test_a_failed_parent_fails_the_workflow_and_its_child_never_runs(
    real_executor: Callable[..., ExecutorRun], colonies: Any, tmp_path: Path
) -> None:
    """v1.9.7 resolves the graph when a process fails: every process of it is set FAILED
    (core.ProcessGraph.Resolve), and so is the graph; the child is never assigned."""
    run = real_executor()
    workflow_id = submit_workflow(
        colonies,
        tmp_path,
        [
            step(run, "a", "echo a fails; exit 3"),
            step(run, "b", 'echo b ran; printf \'"b"\' >"$KUBEJOBS_OUTPUT_FILE"', after=("a",)),
        ],
    )
    graph = wait_workflow(run, colonies, workflow_id)
    ids = process_ids(graph)
    assert graph["state"] == FAILED
    # `colonies workflow psf`: the failed workflows (a table; v1.9.7 has no --json for it)
    assert workflow_id in colonies.cli("workflow", "psf").stdout
    a, b = process_json(colonies, ids["a"]), process_get(colonies, ids["b"])
    assert a["state"] == FAILED
    assert "container main exited with code 3 (Error)" in a["errors"][0]
    # why: the graph is FAILED and a's errors say what failed; v1.9.7 sets b FAILED
    # (SetProcessState) with no error of its own
    assert b["state"] == FAILED
    assert not b.get("errors"), b["errors"]
    # a process submitted after the workflow runs to its end: the executor was free to take b
    later = run.submit(sh(run, "echo later"))
    assert run.wait_done(later, WAIT)["state"] == SUCCESS
    b = process_get(colonies, ids["b"])
    assert b["state"] == FAILED
    assert b["starttime"].startswith("0001-01-01"), b["starttime"]  # never started
    assert not b.get("out")
    assert log_lines(colonies, ids["b"]) == []
    assert scheduled_to_real_node(run) == 2  # a's pod and the later one's, none for b
    run.wait_no_jobs()


# --- outputs that cannot be used -------------------------------------------------------


def test_an_output_file_that_is_not_json_is_named_and_the_message_is_the_output(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    script = (
        "echo writing; printf 'not json {' >\"$KUBEJOBS_OUTPUT_FILE\"; "
        "printf fallback >/dev/termination-log"
    )
    pid = run.submit(sh(run, script))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    assert process["out"] == ["fallback"]
    lines = log_lines(colonies, pid)
    assert lines[0] == "writing"
    notes = [line for line in lines if line.startswith("kubejobs: ")]
    assert len(notes) == 1, lines
    assert f"{OUTPUT_DIR}/main.json is not JSON" in notes[0]
    run.wait_no_jobs()


def test_a_termination_message_over_the_kubelets_limit_is_noted_in_the_log(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    script = "echo long message; head -c 5000 /dev/zero | tr '\\0' y >/dev/termination-log"
    pid = run.submit(sh(run, script))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    (out,) = process["out"]
    # the kubelet keeps 4,096 bytes (this pod has two containers: 12 KiB / 2, at most 4 KiB);
    # the executor passes on all it kept
    assert out == "y" * 4096, (len(out), out[-40:])

    def note() -> str | None:
        return next(
            (line for line in log_lines(colonies, pid) if "reached the kubelet's limit" in line),
            None,
        )

    found = until(note, "the note on the cut termination message", 30)
    assert "(4096 bytes for each container of this pod)" in found
    assert found.startswith("kubejobs: the termination message of container main in pod ")
    assert "$KUBEJOBS_OUTPUT_FILE" in found
    run.wait_no_jobs()
