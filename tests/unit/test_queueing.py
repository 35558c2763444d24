"""Kueue settings reach every Job as data: queue label, priority class, suspend."""

from __future__ import annotations

import pytest

from kubejobs.errors import SettingsError
from kubejobs.render import RenderSettings
from tests.unit.helpers import job_of, render, spec_with

CLASSES = {"low": 0, "normal": 5, "high": 10}


def test_without_a_queue_the_job_is_neither_labelled_nor_suspended() -> None:
    job = job_of(render(spec_with()))
    assert "suspend" not in job["spec"]
    assert not any(k.startswith("kueue.x-k8s.io/") for k in job["metadata"]["labels"])


def test_a_queue_labels_and_suspends_the_job_but_not_its_pods() -> None:
    job = job_of(render(spec_with(), queue_name="team-a"))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/priority-class" not in job["metadata"]["labels"]
    pod_labels = job["spec"]["template"]["metadata"].get("labels", {})
    assert "kueue.x-k8s.io/queue-name" not in pod_labels


def test_custom_templates_are_queued_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "job.yaml.j2").write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: {{ job_name | tojson }}}\n"
        "spec:\n  suspend: false\n  template:\n    spec:\n      restartPolicy: Never\n"
        "      containers: [{name: main, image: busybox}]\n"
    )
    job = job_of(render(spec_with(), queue_name="q", templates_dir=str(tmp_path)))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (-3, "fallback"),
        (0, "low"),
        (4, "low"),
        (5, "normal"),
        (9, "normal"),
        (10, "high"),
        (99, "high"),
    ],
)
def test_the_spec_priority_picks_the_highest_class_bound_at_or_below_it(
    priority: int, expected: str
) -> None:
    job = job_of(
        render(
            spec_with(priority=priority),
            queue_name="q",
            workload_priority_class="fallback",
            workload_priority_classes=CLASSES,
        )
    )
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == expected


def test_priority_classes_need_a_queue_and_integer_bounds() -> None:
    with pytest.raises(SettingsError, match="set queue_name"):
        RenderSettings(workload_priority_class="high")
    with pytest.raises(SettingsError, match="'high' maps to '10'"):
        RenderSettings(queue_name="q", workload_priority_classes={"high": "10"})
