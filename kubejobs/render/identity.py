"""Names, labels and annotations that tie a manifest to its Colonies process and attempt.

Process ids are 64 hex characters, longer than a label value or a Job name may
be (63), so names and labels carry a prefix and the annotation the full id.

An attempt is one assignment of the process by the server: attempt N is the
process with `retries` N-1 (the server counts a retry each time maxexectime
takes the process back). Attempt 1's Job is `kj-` + 40 hex; attempt N >= 2's
is `kj-` + 40 hex + `-N` with the label `kubejobs.io/attempt: "N"` on the Job
and its pods and `KUBEJOBS_ATTEMPT=N` in the log shipper, so a new attempt
never waits for the name of an earlier one whose pods are still stopping.
Attempt 1 renders exactly as before attempts had names (absent means 1).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubejobs"
PROCESS_LABEL = "kubejobs.io/process"
PROCESS_ANNOTATION = "kubejobs.io/process-id"
COLONY_ANNOTATION = "kubejobs.io/colony"
EXECUTOR_ANNOTATION = "kubejobs.io/executor"
ATTEMPT_LABEL = "kubejobs.io/attempt"
ATTEMPT_ENV = "KUBEJOBS_ATTEMPT"  # inpod/config.py reads it
INJECTED_ANNOTATION = "kubejobs.io/injected"
JOB_NAME_PREFIX = "kj-"
# 160 bits: unique among live Jobs. An Indexed Job's pod hostname is "<job>-<index>", at
# most 63 characters: "kj-" + 40 + "-<attempt>" + "-<index>" leaves 18 digits for both.
_ID_CHARS = 40


def job_name(process_id: str, attempt: int = 1) -> str:
    """The Job (and headless Service) name of one attempt of a process."""
    base = JOB_NAME_PREFIX + process_id[:_ID_CHARS]
    return base if attempt <= 1 else f"{base}-{attempt}"


def attempt_of(labels: dict[str, str] | None) -> int:
    """The attempt a Job or pod belongs to, from its labels (no label: attempt 1)."""
    value = str((labels or {}).get(ATTEMPT_LABEL, "1"))
    return int(value) if value.isdigit() and int(value) >= 1 else 1


def attempt_of_process(process: dict[str, Any]) -> int:
    """The attempt the server's process document is in: its `retries` + 1."""
    retries = process.get("retries")
    return retries + 1 if isinstance(retries, int) and retries >= 0 else 1


def process_label(process_id: str) -> str:
    return process_id[:_ID_CHARS]


def default_process_id(spec: Any) -> str:
    """A stand-in process id for rendering without one: the same spec gives the same id."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def substitute(text: str, process_id: str) -> str:
    """The documented {processid} placeholder; nothing else in the text is touched."""
    return text.replace("{processid}", process_id)


def escape_kube_expansion(text: str) -> str:
    """Kubernetes expands $(VAR) in command, args and env values; '$$' is a literal '$'.

    Doubling every '$' makes the container see exactly the spec's text.
    """
    return text.replace("$", "$$")
