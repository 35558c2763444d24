"""Names, labels and annotations that tie a manifest to its Colonies process.

Process ids are 64 hex characters, longer than a label value or a Job name may
be (63), so names and labels carry a prefix and the annotation the full id.
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
INJECTED_ANNOTATION = "kubejobs.io/injected"
JOB_NAME_PREFIX = "kj-"
_ID_CHARS = 40  # 160 bits: unique among live Jobs, and "kj-" + 40 + "-NNN" fits pod hostnames.


def job_name(process_id: str) -> str:
    return JOB_NAME_PREFIX + process_id[:_ID_CHARS]


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
