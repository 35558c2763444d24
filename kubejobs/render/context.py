"""The template context: everything a template may use, computed from a spec and settings.

The names and types here are documented in templates/README.md; keep both in step.
"""

from __future__ import annotations

from typing import Any

from kubejobs.render.identity import (
    ATTEMPT_LABEL,
    COLONY_ANNOTATION,
    EXECUTOR_ANNOTATION,
    MANAGED_BY,
    MANAGER,
    PROCESS_ANNOTATION,
    PROCESS_LABEL,
    escape_kube_expansion,
    job_name,
    process_label,
    substitute,
)
from kubejobs.render.ranks import host_names, rank_env
from kubejobs.render.settings import RenderSettings
from kubejobs.settings import thaw
from kubejobs.spec.model import FunctionSpec

INIT_SHELL = "kubejobs-init"


def colony_of(spec: FunctionSpec, settings: RenderSettings) -> str:
    return str(spec.raw.get("conditions", {}).get("colonyname") or settings.colony_name)


def build_context(
    spec: FunctionSpec, settings: RenderSettings, process_id: str, attempt: int = 1
) -> dict[str, Any]:
    name = job_name(process_id, attempt)
    colony = colony_of(spec, settings)
    indexed = spec.nodes > 1
    service = name if indexed else ""
    hosts = host_names(name, spec.nodes)
    labels = {
        **thaw(settings.extra_labels),
        MANAGED_BY: MANAGER,
        PROCESS_LABEL: process_label(process_id),
    }
    if attempt > 1:
        labels[ATTEMPT_LABEL] = str(attempt)
    annotations = {
        **thaw(settings.extra_annotations),
        PROCESS_ANNOTATION: process_id,
        COLONY_ANNOTATION: colony,
    }
    if settings.executor_name:
        annotations[EXECUTOR_ANNOTATION] = settings.executor_name
    return {
        "process_id": process_id,
        "attempt": attempt,
        "colony_name": colony,
        "executor_name": settings.executor_name,
        "job_name": name,
        "namespace": settings.namespace,
        "nodes": spec.nodes,
        "processes_per_node": spec.processes_per_node,
        "world_size": spec.nodes * spec.processes_per_node,
        "indexed": indexed,
        "service_name": service,
        "hosts": hosts,
        "main_containers": [
            _main_container(spec, settings, process_id, colony, rank, hosts)
            for rank in range(spec.processes_per_node)
        ],
        "active_deadline_seconds": spec.walltime,
        "backoff_limit": 0,
        "ttl_seconds_after_finished": settings.ttl_seconds_after_finished,
        "termination_grace_period_seconds": settings.termination_grace_seconds,
        "pod_failure_policy": POD_FAILURE_POLICY,
        "labels": labels,
        "annotations": annotations,
        "node_selector": _node_selector(spec, settings),
        "tolerations": thaw(settings.tolerations),
        "priority_class_name": settings.priority_class,
        "service_account_name": settings.service_account,
        "image_pull_secrets": [{"name": s} for s in settings.image_pull_secrets],
        "host_network": settings.host_network,
        "spec": spec.raw,
        "kube_version": settings.kube_version,
    }


# Retries belong to the Colonies server (maxretries), so a failed pod fails the Job
# at once (backoffLimit 0). A pod evicted or preempted (DisruptionTarget) did not
# fail on its own: Kubernetes replaces it without counting it.
POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ],
}


def _main_container(
    spec: FunctionSpec,
    settings: RenderSettings,
    process_id: str,
    colony: str,
    rank: int,
    hosts: list[str],
) -> dict[str, Any]:
    command = [substitute(word, process_id) for word in spec.command]
    args = [substitute(arg, process_id) for arg in spec.args]
    if spec.init_cmd is not None:
        # The init code runs in the shell; cmd and args are passed as positional
        # parameters and exec'd, so they are never re-parsed by the shell.
        script = "{\n" + substitute(spec.init_cmd, process_id) + '\n} && exec "$@"'
        args = [script, INIT_SHELL, *command, *args]
        command = ["/bin/sh", "-c"]
    env: list[dict[str, Any]] = [
        {"name": k, "value": escape_kube_expansion(substitute(v, process_id))} for k, v in spec.env
    ]
    env += [
        {"name": "COLONIES_PROCESS_ID", "value": process_id},
        {"name": "COLONIES_COLONY_NAME", "value": escape_kube_expansion(colony)},
        *rank_env(spec.nodes, spec.processes_per_node, rank, hosts, settings.master_port),
    ]
    return {
        "name": "main" if spec.processes_per_node == 1 else f"main-{rank}",
        "local_rank": rank,
        "image": spec.image,
        "command": [escape_kube_expansion(w) for w in command],
        "args": [escape_kube_expansion(a) for a in args],
        "env": env,
        "resources": _resources(spec, settings),
    }


def _resources(spec: FunctionSpec, settings: RenderSettings) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if spec.cpu:
        amounts["cpu"] = spec.cpu
    if spec.mem:
        amounts["memory"] = spec.mem
    limits = dict(amounts)
    if spec.gpu.count > 0:
        limits[settings.gpu_resource] = spec.gpu.count
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _node_selector(spec: FunctionSpec, settings: RenderSettings) -> dict[str, str]:
    selector = dict(thaw(settings.node_selector))
    if spec.gpu.name:
        selector[settings.gpu_node_label] = spec.gpu.name
    return selector
