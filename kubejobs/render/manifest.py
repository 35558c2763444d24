"""Render a validated spec into Kubernetes manifests: template, parse, inject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from kubejobs.errors import InvalidInput, Problem, TemplateError
from kubejobs.process_io import input_json
from kubejobs.render.context import build_context
from kubejobs.render.identity import (
    INJECTED_ANNOTATION,
    MANAGED_BY,
    MANAGER,
    PROCESS_ANNOTATION,
    job_name,
)
from kubejobs.render.inject import Injection, inject
from kubejobs.render.podsecurity import restrict
from kubejobs.render.queueing import queue
from kubejobs.render.settings import RenderSettings
from kubejobs.render.templating import environment, render_data
from kubejobs.spec.model import FunctionSpec
from kubejobs.spec.names import PROCESS_ID

JOB_TEMPLATE = "job.yaml.j2"
SERVICE_TEMPLATE = "service.yaml.j2"


@dataclass
class Renderer:
    """Renders specs with one settings object; the Jinja environment is built once and reused."""

    settings: RenderSettings = field(default_factory=RenderSettings)
    _env: jinja2.Environment = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._env = environment(self.settings.templates_dir or None)

    def render(
        self,
        spec: FunctionSpec,
        process_id: str,
        inputs: list[Any] | None = None,
        attempt: int = 1,
    ) -> list[dict[str, Any]]:
        """The Job (and, for nodes > 1, its headless Service) for one attempt of a process;
        `inputs` is the process's `in` (its parents' outputs)."""
        if not PROCESS_ID.match(process_id):
            raise InvalidInput(
                [
                    Problem(
                        "--process-id",
                        "$",
                        f"{process_id!r} is not a process id (64 lowercase hex characters)",
                    )
                ]
            )
        context = build_context(spec, self.settings, process_id, attempt)
        job = self._parse(JOB_TEMPLATE, context)
        if job.get("kind") != "Job" or job.get("apiVersion") != "batch/v1":
            raise TemplateError(f"{JOB_TEMPLATE}: must produce a batch/v1 Job")
        inject(
            job,
            Injection(
                spec=spec,
                settings=self.settings,
                process_id=process_id,
                colony_name=context["colony_name"],
                job_name=context["job_name"],
                input_json=input_json(process_id, inputs),
                attempt=attempt,
            ),
            JOB_TEMPLATE,
        )
        _ensure_identity(job, context)
        _ensure_identity(job["spec"]["template"], context)
        queue(job, self.settings, _spec_priority(spec))
        restrict(job, self.settings, JOB_TEMPLATE)
        manifests = [job]
        if context["indexed"]:
            service = self._parse(SERVICE_TEMPLATE, context)
            _ensure_identity(service, context)
            manifests.append(service)
        return manifests

    def _parse(self, name: str, context: dict[str, Any]) -> dict[str, Any]:
        data = render_data(self._env, name, context)
        if not isinstance(data, dict):
            raise TemplateError(f"{name}: must produce one YAML mapping (a Kubernetes object)")
        return data


def _spec_priority(spec: FunctionSpec) -> int:
    priority = spec.raw.get("priority", 0)
    return priority if isinstance(priority, int) else 0


def _ensure_identity(obj: dict[str, Any], context: dict[str, Any]) -> None:
    """Labels and annotations the executor relies on, whatever the template did."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    labels.update(
        {k: v for k, v in context["labels"].items() if k.startswith(("kubejobs.io/", MANAGED_BY))}
    )
    annotations.update(
        {
            k: v
            for k, v in context["annotations"].items()
            if k.startswith("kubejobs.io/") and k != INJECTED_ANNOTATION
        }
    )
    meta["labels"] = labels
    meta["annotations"] = annotations


__all__ = ["MANAGED_BY", "MANAGER", "PROCESS_ANNOTATION", "Renderer", "job_name"]
