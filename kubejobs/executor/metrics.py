"""Prometheus metrics of one executor, in their own registry (several executors per test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.processes = Counter(
            "kubejobs_processes",
            "Processes finished, by outcome (succeeded, failed, deadline, "
            "cannot_start, cannot_create, unschedulable, no_pods, not_started, deleted, rejected, "
            "taken_back, kueue_refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.jobs_in_flight = Gauge(
            "kubejobs_jobs_in_flight",
            "Processes whose Jobs count against capacity",
            registry=self.registry,
        )
        self.jobs_queued = Gauge(
            "kubejobs_jobs_queued",
            "Processes whose Jobs wait for Kueue to admit them (bounded by max_queued)",
            registry=self.registry,
        )
        self.assign_to_apply = Histogram(
            "kubejobs_assign_to_apply_seconds",
            "From an assigned process to its applied Job",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.api_errors = Counter(
            "kubejobs_api_errors",
            "Failed requests to the Colonies server or the Kubernetes API",
            ["api"],
            registry=self.registry,
        )
        self.kube_requests = Gauge(
            "kubejobs_kube_requests",
            "Kubernetes API requests made, by verb",
            ["verb"],
            registry=self.registry,
        )
        self.colonies_requests = Gauge(
            "kubejobs_colonies_requests",
            "Colonies server requests made with the executor's key, by message type",
            ["msgtype"],
            registry=self.registry,
        )
        self.assigned = Counter(
            "kubejobs_processes_assigned",
            "Processes assigned to this executor",
            registry=self.registry,
        )
