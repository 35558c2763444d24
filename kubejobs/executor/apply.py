"""From an assigned process to applied manifests, or to the problems that fail it.

The server echoes a spec with every Go field filled in (0, "", null, empty
structs); those zero values are dropped first so the spec validates as the user
wrote it. Validation or rendering problems become the process's errors, each
`process:<id>::<json path>: <message>`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubejobs.adapters.kube import KubeClient, KubeError, KubeUnavailable
from kubejobs.errors import InvalidInput, Problem, TemplateError
from kubejobs.executor.admission import Request
from kubejobs.render import Renderer, job_name
from kubejobs.render.identity import EXECUTOR_ANNOTATION, attempt_of_process
from kubejobs.spec import validate_spec
from kubejobs.spec.quantity import parse_quantity

log = logging.getLogger(__name__)

# Parts of the server's FunctionSpec where a zero value means "not given".
_ZERO_MEANS_ABSENT = ("conditions", "fs", "gpu", "onconflicts", "onstart", "onclose")
# The server rewrites these as "<n>m" / "<n>Mi", so unset ones come back "0m" / "0Mi".
_QUANTITIES = ("cpu", "mem", "storage")
_SERVER_ENFORCED = ("maxwaittime", "maxexectime", "maxretries")
_TOP_LEVEL_OPTIONAL = ("nodename", "label", "channels", "fs", "env")


@dataclass(frozen=True)
class Prepared:
    """A process ready to apply."""

    process_id: str
    job_name: str
    manifests: list[dict[str, Any]]
    request: Request
    attempt: int = 1
    """The server's retries + 1 when the process was assigned (render/identity.py)."""


def spec_of(process: dict[str, Any]) -> dict[str, Any]:
    """The process's function spec without the server's zero-value fill-ins."""
    spec = dict(process.get("spec") or {})
    for key in _TOP_LEVEL_OPTIONAL:
        if _is_zero(spec.get(key)):
            spec.pop(key, None)
    for key in _SERVER_ENFORCED:
        if spec.get(key) == 0:  # accepted and enforced by the server; not the Job's business
            spec.pop(key)
    if spec.get("args") is None:
        spec.pop("args", None)
    for key in ("conditions", "fs"):
        if isinstance(spec.get(key), dict):
            cleaned = _drop_zero(spec[key])
            if cleaned:
                spec[key] = cleaned
            else:
                spec.pop(key)
    return spec


def _is_zero(value: Any) -> bool:
    return (
        value is None
        or value == ""
        or (value == 0 and not isinstance(value, bool))
        or value in ([], {})
    )


def _drop_zero(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            value = _drop_zero(value) if key in _ZERO_MEANS_ABSENT else value
        elif key in _QUANTITIES and isinstance(value, str) and _zero_quantity(value):
            continue
        elif isinstance(value, list):
            value = [_drop_zero(v) if isinstance(v, dict) else v for v in value]
        if not _is_zero(value) or isinstance(value, bool):
            out[key] = value
    return out


def _zero_quantity(text: str) -> bool:
    try:
        return parse_quantity(text) == 0
    except ValueError:
        return False  # not a quantity: left for validation to report


def prepare(process: dict[str, Any], renderer: Renderer) -> Prepared:
    """Validate and render; InvalidInput or TemplateError when the process cannot run."""
    process_id = str(process["processid"])
    attempt = attempt_of_process(process)
    spec = validate_spec(spec_of(process), f"process:{process_id}")
    inputs = process.get("in")
    manifests = renderer.render(
        spec, process_id, inputs if isinstance(inputs, list) else None, attempt
    )
    # The Service goes first so the pods' DNS names exist when they start.
    manifests.sort(key=lambda m: m.get("kind") != "Service")
    return Prepared(
        process_id, job_name(process_id, attempt), manifests, Request.of_spec(spec), attempt
    )


def rejection(err: InvalidInput | TemplateError) -> list[str]:
    """The errors a process fails with when its spec cannot be run."""
    if isinstance(err, InvalidInput):
        return [str(p) for p in err.problems] or [str(err)]
    return [f"template error: {err}"]


def apply(
    kube: KubeClient,
    prepared: Prepared,
    namespace: str,
    stop: threading.Event,
    gone_wait: float = 120.0,
    current: Callable[[], bool] = lambda: True,
) -> bool:
    """Create the Job and apply the others; idempotent, so a retry or a restart never
    duplicates (this executor's own Job of the attempt is left as it is).

    Each attempt has its own Job name, so a new attempt never waits for an earlier
    one. The same name is met again only when the server hands the same attempt
    to this executor after another went away (an executor removal requeues the
    process without counting a retry): a Job of that name still being deleted is
    waited for, and one left by the other executor is deleted first. Applying over
    it would fail on its immutable pod template, or worse, adopt its finished pods
    as this attempt's result. After such a wait `current()` must still hold (the
    process is RUNNING on this executor in this attempt), else nothing is applied
    and False is returned.
    """
    for manifest in prepared.manifests:
        if manifest["kind"] == "Job":
            if _created(kube, manifest, namespace):
                continue
            found = _clear_other_attempt(kube, manifest, namespace, stop, gone_wait)
            if found == OURS:
                continue
            if stop.is_set() or (found == WAITED and not current()):
                return False
        result = kube.apply(manifest, namespace)
        if not (result.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if not _wait_gone(kube, manifest, namespace, stop, gone_wait):
            return False
        if not current():
            return False
        kube.apply(manifest, namespace)
    return True


def _created(kube: KubeClient, manifest: dict[str, Any], namespace: str) -> bool:
    """Create the Job; False when one of its name exists (409), to be looked at.

    The name is new nearly always: creating first spares a GET per process (and a
    create costs the API server less than an apply)."""
    try:
        kube.create(manifest, namespace)
    except KubeError as err:
        if err.status == 409:
            return False
        raise
    return True


# What _clear_other_attempt found under the Job's name.
GONE, OURS, WAITED = "gone", "ours", "waited"


def _clear_other_attempt(
    kube: KubeClient,
    manifest: dict[str, Any],
    namespace: str,
    stop: threading.Event,
    gone_wait: float,
) -> str:
    """GONE: no Job of this name (now); OURS: this executor's own Job of this attempt, left
    as it is; WAITED: another's, or one being deleted, waited for until it went."""
    name = manifest["metadata"]["name"]
    existing = kube.get("Job", namespace, name)
    if existing is None:
        return GONE
    meta = existing.get("metadata") or {}
    ours = manifest["metadata"]["annotations"].get(EXECUTOR_ANNOTATION)
    theirs = (meta.get("annotations") or {}).get(EXECUTOR_ANNOTATION)
    if theirs == ours and not meta.get("deletionTimestamp"):
        # This attempt's Job, made by this executor before (a create whose reply was lost, a
        # restart): it runs already. Applying over it changes nothing at best; a template
        # rendered differently meanwhile (an upgrade, another input) would be refused as
        # immutable and fail a process whose Job runs.
        return OURS
    if not meta.get("deletionTimestamp"):
        log.info(
            "Job %s was left by executor %s (an earlier assignment): deleting it", name, theirs
        )
        kube.delete("Job", namespace, name)
    _wait_gone(kube, manifest, namespace, stop, gone_wait)
    return WAITED


def _wait_gone(
    kube: KubeClient,
    manifest: dict[str, Any],
    namespace: str,
    stop: threading.Event,
    gone_wait: float,
) -> bool:
    """Wait until the object is deleted; False if stopped first."""
    deadline = time.monotonic() + gone_wait
    while kube.get(manifest["kind"], namespace, manifest["metadata"]["name"]) is not None:
        if time.monotonic() > deadline:
            raise KubeUnavailable(
                f"{manifest['kind']} {manifest['metadata']['name']} "
                "of an earlier attempt is still being deleted"
            )
        if stop.wait(0.5):
            return False
    return True


def invalid(process_id: str, message: str) -> InvalidInput:
    return InvalidInput([Problem(f"process:{process_id}", "$", message)])
