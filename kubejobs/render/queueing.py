"""What a Job needs to wait in a Kueue LocalQueue: the queue label, a priority class, suspend.

Injected as data after the template, like the sidecars, so custom templates
queue too. The Job is created suspended whether or not Kueue's Job webhook
runs: Kueue admits a Job by unsuspending it, and a labelled Job that starts
unsuspended gets a pod that Kueue deletes again before admitting it.
"""

from __future__ import annotations

from typing import Any

from kubejobs.render.settings import RenderSettings

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


def workload_priority_class(settings: RenderSettings, spec_priority: int) -> str:
    """The class whose bound is the highest at or below the spec's priority, else the default."""
    eligible = [
        (bound, name)
        for name, bound in settings.workload_priority_classes.items()
        if bound <= spec_priority
    ]
    return max(eligible)[1] if eligible else settings.workload_priority_class


def queue(job: dict[str, Any], settings: RenderSettings, spec_priority: int) -> None:
    """Put `job` in settings.queue_name's LocalQueue (no-op without one)."""
    if not settings.queue_name:
        return
    labels = job.setdefault("metadata", {}).setdefault("labels", {})
    labels[QUEUE_LABEL] = settings.queue_name
    priority_class = workload_priority_class(settings, spec_priority)
    if priority_class:
        labels[PRIORITY_LABEL] = priority_class
    job.setdefault("spec", {})["suspend"] = True
