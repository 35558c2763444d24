"""What Kueue says about a Job, read from its Workload: waiting, admitted, evicted, refused.

Kueue admits a suspended Job by unsuspending it and preempts one by suspending it
again; the Job controller then deletes its pods without counting them as failures
(it drops their tracking finalizers first), so the Job itself stays healthy. The
why is only on the Workload Kueue made for the Job (owned by it): its QuotaReserved
condition while it waits, Evicted when it is preempted or deactivated.

Pure functions over API dicts, like outcome.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubejobs.executor.outcome import condition
from kubejobs.render.queueing import QUEUE_LABEL

__all__ = ["QUEUE_LABEL", "Verdict", "eviction", "is_suspended", "owner_job", "verdict", "waiting"]

WORKLOAD_KIND = "Workload"
# A request larger than the ClusterQueue could ever give (flavorassigner.go, "No Fit").
NEVER_FITS = "> maximum capacity"


@dataclass(frozen=True)
class Verdict:
    """What a Workload says. kind: waiting, admitted, refused."""

    kind: str
    message: str = ""
    cluster_queue: str = ""


def owner_job(workload: dict[str, Any]) -> str:
    """The name of the Job a Workload was made for ('' for other owners)."""
    for ref in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("apiVersion", "").startswith("batch/"):
            return str(ref.get("name", ""))
    return ""


def _false_condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "False":
            return dict(cond)
    return None


def verdict(workload: dict[str, Any] | None) -> Verdict:
    """The Workload's state for a suspended Job (None: Kueue has not made it yet)."""
    if workload is None:
        return Verdict("waiting", "Kueue has not created its Workload yet")
    status = workload.get("status") or {}
    cluster_queue = str((status.get("admission") or {}).get("clusterQueue", ""))
    if (workload.get("spec") or {}).get("active") is False:
        evicted = condition(workload, "Evicted") or {}
        why = evicted.get("message") or "its Workload was deactivated (spec.active: false)"
        return Verdict("refused", f"Kueue deactivated the Workload: {why}", cluster_queue)
    if condition(workload, "Admitted"):
        return Verdict("admitted", "", cluster_queue)
    pending = _false_condition(workload, "QuotaReserved")
    message = str((pending or {}).get("message") or "")
    if NEVER_FITS in message and "insufficient unused quota" not in message:
        return Verdict("refused", f"Kueue cannot ever admit it: {message}", cluster_queue)
    return Verdict("waiting", message, cluster_queue)


def is_evicted(workload: dict[str, Any] | None) -> bool:
    return bool(condition(workload or {}, "Evicted"))


def eviction(workload: dict[str, Any] | None) -> str:
    """Why Kueue took the Job's quota back (preemption, a stopped queue...)."""
    evicted = condition(workload or {}, "Evicted")
    if not evicted:
        return "Kueue suspended the Job"
    reason = evicted.get("reason") or "Evicted"
    return f"{reason}: {evicted.get('message') or 'no message'}"


def evictions(workload: dict[str, Any] | None) -> int:
    """How many times Kueue evicted the Workload (preemptions and the like), as it counts."""
    stats = ((workload or {}).get("status") or {}).get("schedulingStats") or {}
    return sum(int(e.get("count") or 0) for e in stats.get("evictions") or [])


def is_suspended(job: dict[str, Any]) -> bool:
    return (job.get("spec") or {}).get("suspend") is True


def waiting(job: dict[str, Any]) -> bool:
    """Suspended, or just unsuspended by Kueue and not yet started by the Job controller: its
    start timeout counts from status.startTime, which the controller sets on resume."""
    if is_suspended(job):
        return True
    queued = QUEUE_LABEL in ((job.get("metadata") or {}).get("labels") or {})
    return queued and not (job.get("status") or {}).get("startTime")
