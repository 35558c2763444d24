"""Small builders shared by the unit tests."""

from __future__ import annotations

import copy
from typing import Any

from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec

PID = "a" * 40 + "0123456789abcdef01234567"

BASE: dict[str, Any] = {
    "funcname": "execute",
    "conditions": {"executortype": "kubejobs", "cpu": "500m", "mem": "256Mi"},
    "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo hi"},
    "maxexectime": 60,
    "maxretries": 3,
}


def spec_with(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced; `conditions` and `kwargs` are merged."""
    spec = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key in ("conditions", "kwargs") and isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


def render(data: dict[str, Any], **settings: Any) -> list[dict[str, Any]]:
    return Renderer(RenderSettings(**settings)).render(validate_spec(data), PID)


def job_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == "Job")


def pod_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = job_of(manifests)["spec"]["template"]["spec"]
    return pod


def mains(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in pod_of(manifests)["containers"] if not c["name"].startswith("kubejobs-")]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
