"""Deleting a process's Job (foreground, so its pods go first) and its headless Service.

ttlSecondsAfterFinished on every Job is the safety net if the executor is gone.
"""

from __future__ import annotations

import logging
from typing import Any

from kubejobs.adapters.kube import KubeClient, KubeError
from kubejobs.executor.metrics import Metrics

log = logging.getLogger(__name__)


def delete_job(
    kube: KubeClient,
    namespace: str,
    metrics: Metrics,
    process_id: str,
    job_name: str,
    indexed: bool,
    propagation: str = "Foreground",
) -> tuple[Any, ...]:
    """('deleted', pid) or ('retry', pid). Background for an attempt that is over: the Job
    goes at once and the garbage collector deletes its pods, each with its grace period."""
    try:
        if indexed:
            kube.delete("Service", namespace, job_name, propagation="Background")
        kube.delete("Job", namespace, job_name, propagation=propagation)
    except KubeError as err:
        metrics.api_errors.labels(api="kube").inc()
        log.warning("process %s: cannot delete Job %s yet: %s", process_id, job_name, err)
        return ("retry", process_id)
    return ("deleted", process_id)
