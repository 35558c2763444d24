"""Applying a process's Job over what an earlier attempt left (no servers)."""

from __future__ import annotations

import threading
from typing import Any

from kubejobs.adapters.kube import KubeError
from kubejobs.executor.admission import Request
from kubejobs.executor.apply import Prepared, apply

NAME = "kj-" + "ab" * 20


class Jobs:
    """One namespace's Jobs by name; deletes take effect at once; calls recorded."""

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.objects = {NAME: existing} if existing else {}
        self.calls: list[str] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground") -> bool:
        self.calls.append("delete")
        return self.objects.pop(name, None) is not None

    def apply(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        self.calls.append("apply")
        self.objects[obj["metadata"]["name"]] = obj
        return obj

    def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        self.calls.append("create")
        if obj["metadata"]["name"] in self.objects:
            raise KubeError("jobs.batch already exists", 409, "AlreadyExists")
        self.objects[obj["metadata"]["name"]] = obj
        return obj


def job(executor: str, **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": NAME, "annotations": {"kubejobs.io/executor": executor}, **meta},
    }


def run(existing: dict[str, Any] | None) -> Jobs:
    kube = Jobs(existing)
    prepared = Prepared("ab" * 32, NAME, [job("me")], Request())
    apply(kube, prepared, "ns", threading.Event())  # type: ignore[arg-type]
    return kube


def test_a_job_left_by_another_executor_is_deleted_before_this_attempt_is_applied() -> None:
    kube = run(job("gone-replica"))
    assert kube.calls == ["create", "delete", "apply"]
    assert kube.objects[NAME]["metadata"]["annotations"]["kubejobs.io/executor"] == "me"


def test_this_executors_own_job_of_the_attempt_is_left_as_it_is() -> None:
    mine = job("me", uid="the-running-one")
    kube = run(mine)
    assert kube.calls == ["create"]  # its 409, then a GET: no apply over a Job that runs
    assert kube.objects[NAME] is mine
    assert run(None).calls == ["create"]  # a new name (nearly always): no GET, no apply


def test_a_job_already_being_deleted_is_waited_for_not_deleted_again() -> None:
    kube = Jobs(job("gone-replica", deletionTimestamp="2026-12-05T10:00:00Z"))
    original_get = kube.get
    seen = []

    def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        seen.append(name)
        if len(seen) > 2:  # gone after a while
            kube.objects.pop(name, None)
        return original_get(kind, namespace, name)

    kube.get = get  # type: ignore[method-assign]
    prepared = Prepared("ab" * 32, NAME, [job("me")], Request())
    apply(kube, prepared, "ns", threading.Event())  # type: ignore[arg-type]
    assert kube.calls == ["create", "apply"]
