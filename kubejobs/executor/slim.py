"""What the executor keeps of each Job and pod it watches: the fields its decisions read.

A replica holds every Job and pod of its processes. Kept whole, 10,000 in flight
over two replicas took 460 MiB per replica: an object is 10-12 KB of JSON, about
half of it `metadata.managedFields`, most of the rest the pod spec (containers,
env, volumes), and a process's input can be a 200 KiB annotation. What stays:

- metadata: name, uid, labels, the deletion and creation timestamps, and the
  annotations other than the input;
- a Job's spec without its pod template but for the main containers' names and
  resource requests (what admission counts for a Job found after a restart);
- a pod's spec as far as outcome.py reads it: the restart policy, the container
  and init container names and each init container's restart policy (native
  sidecars);
- status whole.
"""

from __future__ import annotations

from typing import Any

from kubejobs.process_io import INPUT_ANNOTATION

_META = ("name", "namespace", "uid", "labels", "creationTimestamp", "deletionTimestamp")


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    kept = {k: meta[k] for k in _META if k in meta}
    annotations = meta.get("annotations")
    if annotations:
        kept["annotations"] = {k: v for k, v in annotations.items() if k != INPUT_ANNOTATION}
    return kept


def _containers(containers: list[dict[str, Any]] | None, *keys: str) -> list[dict[str, Any]]:
    return [{k: c[k] for k in ("name", *keys) if k in c} for c in containers or []]


def slim_job(job: dict[str, Any]) -> dict[str, Any]:
    spec = dict(job.get("spec") or {})
    template_spec = (spec.pop("template", None) or {}).get("spec") or {}
    spec["template"] = {
        "spec": {"containers": _containers(template_spec.get("containers"), "resources")}
    }
    return {
        "metadata": _metadata(job.get("metadata") or {}),
        "spec": spec,
        "status": job.get("status") or {},
    }


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    kept: dict[str, Any] = {
        "containers": _containers(spec.get("containers")),
        "initContainers": _containers(spec.get("initContainers"), "restartPolicy"),
    }
    if "restartPolicy" in spec:
        kept["restartPolicy"] = spec["restartPolicy"]
    return {
        "metadata": _metadata(pod.get("metadata") or {}),
        "spec": kept,
        "status": pod.get("status") or {},
    }
