"""What the executor keeps of a watched object decides exactly what the whole one does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubejobs.executor.admission import Request
from kubejobs.executor.outcome import Timeouts, job_outcome
from kubejobs.executor.slim import slim_job, slim_pod
from kubejobs.process_io import INPUT_ANNOTATION

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
NOW = 1_800_000_000.0
WHEN = "2027-01-15T08:00:00Z"
MANAGED = [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {"x" * 40: {}}}}] * 20


def golden_jobs() -> list[dict[str, Any]]:
    jobs = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Job":
                jobs.append(doc)
    return jobs


def term(name: str, code: int, reason: str = "", message: str = "") -> dict[str, Any]:
    state = {"exitCode": code, "reason": reason, "message": message, "finishedAt": WHEN}
    return {"name": name, "state": {"terminated": state}, "restartCount": 0}


def waiting(name: str, reason: str) -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": "m"}}}


def pod_of(job: dict[str, Any], phase: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    template = copy.deepcopy(job["spec"]["template"])
    meta = template.get("metadata") or {}
    meta.update(name=job["metadata"]["name"] + "-x", uid="u", managedFields=MANAGED)
    meta.setdefault("annotations", {})[INPUT_ANNOTATION] = json.dumps(["in" * 10_000])
    names = {c["name"] for c in template["spec"].get("initContainers") or []}
    return {
        "metadata": meta,
        "spec": template["spec"],
        "status": {
            "phase": phase,
            "containerStatuses": [s for s in statuses if s["name"] not in names],
            "initContainerStatuses": [s for s in statuses if s["name"] in names],
        },
    }


def with_status(job: dict[str, Any], *conditions: str, reason: str = "") -> dict[str, Any]:
    found = copy.deepcopy(job)
    found["metadata"]["managedFields"] = MANAGED
    found["status"] = {
        "succeeded": 1 if "Complete" in conditions else 0,
        "startTime": WHEN,
        "conditions": [
            {"type": c, "status": "True", "reason": reason, "lastTransitionTime": WHEN}
            for c in conditions
        ],
    }
    return found


CASES = {
    "success with a message": (
        "Succeeded",
        ["Complete"],
        "",
        [term("main", 0, "Completed", "out")],
    ),
    "exit 3": ("Failed", ["Failed"], "BackoffLimitExceeded", [term("main", 3, "Error", "bad")]),
    "oom": ("Failed", ["Failed"], "BackoffLimitExceeded", [term("main", 137, "OOMKilled")]),
    "walltime, still starting": (
        "Pending",
        ["FailureTarget"],
        "DeadlineExceeded",
        [waiting("main", "ContainerCreating"), waiting("kubejobs-log-shipper", "PodInitializing")],
    ),
    "cannot start": ("Pending", [], "", [waiting("main", "ErrImagePull")]),
    "start error": ("Running", [], "", [term("main", 128, "StartError", "exec: not found")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_outcome_of_the_slim_objects_is_the_outcome_of_the_whole_ones(case: str) -> None:
    phase, conditions, reason, statuses = CASES[case]
    for job in golden_jobs():
        whole = with_status(job, *conditions, reason=reason)
        pods = [pod_of(job, phase, statuses)]
        want = job_outcome(whole, pods, NOW + 60, Timeouts())
        got = job_outcome(slim_job(whole), [slim_pod(p) for p in pods], NOW + 60, Timeouts())
        assert want is not None and got == want, job["metadata"]["name"]


def test_admission_counts_a_slim_job_as_the_whole_one_and_the_bulk_is_gone() -> None:
    for job in golden_jobs():
        whole = with_status(job, "Complete")
        assert Request.of_job(slim_job(whole)) == Request.of_job(whole)
        pod = pod_of(job, "Succeeded", [term("main", 0)])
        slim = slim_pod(pod)
        assert "managedFields" not in slim["metadata"] and "managedFields" not in slim_job(whole)
        assert INPUT_ANNOTATION not in slim["metadata"]["annotations"]
        assert len(json.dumps(slim)) < len(json.dumps(pod)) / 5
