"""A process's input and output files: rendered into the pod, collected by the shipper, read by the executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubejobs.errors import InvalidInput
from kubejobs.executor.outcome import cut_messages, job_outcome
from kubejobs.inpod.output import collect, say_output_set
from kubejobs.process_io import INPUT_ANNOTATION, OUTPUT_MAX_BYTES, OUTPUT_SET
from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec
from tests.unit.helpers import PID

SPEC = {
    "funcname": "execute",
    "kwargs": {"docker-image": "busybox:1", "cmd": "sh", "args": ["-c", "true"]},
    "conditions": {"executortype": "k8s"},
}


def rendered(inputs: list[Any] | None) -> dict[str, Any]:
    job: dict[str, Any] = Renderer(RenderSettings()).render(validate_spec(SPEC), PID, inputs)[0]
    return job


def main_env(job: dict[str, Any]) -> dict[str, str]:
    main = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in main["env"]}


def test_the_input_is_an_annotation_the_program_reads_as_a_file_and_in_its_environment() -> None:
    job = rendered(["out-of-a", {"n": 1, "price": "$5"}])
    text = '["out-of-a",{"n":1,"price":"$5"}]'
    assert job["spec"]["template"]["metadata"]["annotations"][INPUT_ANNOTATION] == text
    env = main_env(job)
    assert env["KUBEJOBS_INPUT"] == text.replace("$", "$$")  # Kubernetes expands $(...)
    assert env["KUBEJOBS_INPUT_FILE"] == "/var/run/kubejobs/input/input.json"
    assert env["KUBEJOBS_OUTPUT_FILE"] == "/var/run/kubejobs/output/main.json"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    field = volumes["kubejobs-input"]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
    assert field == f"metadata.annotations['{INPUT_ANNOTATION}']"


def test_no_parents_is_an_empty_list() -> None:
    assert main_env(rendered(None))["KUBEJOBS_INPUT"] == "[]"


def test_a_large_input_is_only_in_the_file() -> None:
    job = rendered(["x" * 40_000])
    assert "KUBEJOBS_INPUT" not in main_env(job)
    assert len(job["spec"]["template"]["metadata"]["annotations"][INPUT_ANNOTATION]) > 40_000


def test_an_input_over_the_limit_fails_the_process_pointing_at_cfs() -> None:
    with pytest.raises(InvalidInput) as err:
        rendered(["x" * 210_000])
    (problem,) = err.value.problems
    assert problem.path == "$.in" and "at most 204800" in problem.message
    assert "CFS" in problem.message


def test_the_shipper_reads_the_output_files_in_container_order(tmp_path: Path) -> None:
    (tmp_path / "main-1.json").write_text('{"rank": 1}')
    (tmp_path / "main-0.json").write_text('["a", "b"]')
    output, used, problems = collect(["main-0", "main-1", "main-2"], tmp_path)
    assert output == ["a", "b", {"rank": 1}] and used == 2 and problems == []


def test_no_file_means_no_output_from_files(tmp_path: Path) -> None:
    assert collect(["main"], tmp_path) == (None, 0, [])


def test_bad_and_oversized_files_are_named_and_left_out(tmp_path: Path) -> None:
    (tmp_path / "main-0.json").write_text("not json")
    (tmp_path / "main-1.json").write_bytes(b" " * (OUTPUT_MAX_BYTES + 1))
    output, used, problems = collect(["main-0", "main-1"], tmp_path)
    assert output is None and used == 0
    assert "main-0.json is not JSON" in problems[0]
    assert f"over the {OUTPUT_MAX_BYTES}-byte limit" in problems[1]


def test_the_shipper_tells_the_executor_through_its_termination_message(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    say_output_set(2, log)
    assert log.read_text() == f"{OUTPUT_SET}2 file(s)"


def pod(main_message: str, shipper_message: str = "", containers: int = 1) -> dict[str, Any]:
    def terminated(name: str, message: str) -> dict[str, Any]:
        return {"name": name, "state": {"terminated": {"exitCode": 0, "message": message}}}

    return {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": f"c{i}"} for i in range(containers)],
            "initContainers": [{"name": "kubejobs-log-shipper"}],
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [terminated("main", main_message)],
            "initContainerStatuses": [terminated("kubejobs-log-shipper", shipper_message)],
        },
    }


COMPLETE = {
    "metadata": {"name": "j"},
    "status": {"conditions": [{"type": "Complete", "status": "True"}]},
}


def test_output_set_by_the_shipper_is_not_replaced_by_termination_messages() -> None:
    result = job_outcome(COMPLETE, [pod("from-termination", f"{OUTPUT_SET}1 file(s)")], 0.0)
    assert result is not None and result.success and result.output == []


def test_termination_messages_remain_the_output_without_a_file() -> None:
    result = job_outcome(COMPLETE, [pod("answer=42")], 0.0)
    assert result is not None and result.output == ["answer=42"] and result.notes == []


def test_a_termination_message_at_the_kubelets_limit_is_noted() -> None:
    # 6 containers: the kubelet keeps 12 KiB / 6 = 2048 bytes of each message.
    cut = pod("y" * 2048, containers=5)
    notes = cut_messages([cut])
    assert len(notes) == 1 and "reached the kubelet's limit (2048 bytes" in notes[0]
    assert "$KUBEJOBS_OUTPUT_FILE" in notes[0]
    assert cut_messages([pod("y" * 2047, containers=5)]) == []
    result = job_outcome(COMPLETE, [cut], 0.0)
    assert result is not None and result.notes == notes


def test_input_json_is_compact_and_keeps_unicode() -> None:
    job = rendered(["å"])
    assert json.loads(main_env(job)["KUBEJOBS_INPUT"]) == ["å"]
