"""Smoke tests: a real Kueue admits labelled Jobs on the test control plane by quota.

Jobs run on kwok nodes (testenv/kube.py STAGES); those for Kueue carry the
label ``kueue.x-k8s.io/queue-name`` and are created suspended, and Kueue
admits one by unsuspending it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from testenv.kueue import (
    MUTATING,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    VALIDATING,
    KueueQueues,
    KueueServer,
)
from tests.integration.polling import until

pytestmark = pytest.mark.integration


def job(
    name: str,
    cpu: str,
    queue: KueueQueues | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if queue is not None:
        meta["labels"].update(queue.job_labels)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "suspend": queue is not None,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"kwok.test/run": "300ms", **(annotations or {})}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:1.36",
                            "command": ["true"],
                            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


def create(ns: Any, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        ns.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
    )
    return out


def get_job(ns: Any, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ns.kubectl("get", "job", name, "-o", "json").stdout)
    return out


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def workload(kueue: KueueServer, ns: Any, uid: str) -> dict[str, Any] | None:
    found = kueue.workloads_of_job(ns.name, uid)
    return found[0] if found else None


def admitted(kueue: KueueServer, ns: Any, created: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's Workload once Kueue admitted it and the Job is unsuspended."""
    wl = workload(kueue, ns, created["metadata"]["uid"])
    if wl is None or conditions(wl).get("Admitted", {}).get("status") != "True":
        return None
    return wl if get_job(ns, created["metadata"]["name"])["spec"]["suspend"] is False else None


def pending(
    kueue: KueueServer,
    ns: Any,
    created: dict[str, Any],
    message: str,
) -> dict[str, Any] | None:
    """The Job's Workload once it waits for quota with ``message`` in QuotaReserved."""
    wl = workload(kueue, ns, created["metadata"]["uid"])
    cond = conditions(wl).get("QuotaReserved", {}) if wl else {}
    if cond.get("status") == "False" and message in cond.get("message", ""):
        return wl
    return None


def test_quota_admits_the_second_job_when_the_first_is_gone(kueue, kube_namespace):
    ns = kube_namespace
    # the deleted Job's quota frees when its Workload is garbage collected
    kueue.wait_garbage_collector()
    q = kueue.create_queues(ns.name, cpu="2", memory="4Gi")
    try:
        first = create(ns, job("first", "1500m", q, {"kwok.test/run-forever": "true"}))
        wl1 = until(lambda: admitted(kueue, ns, first), "first Job admitted")
        assert conditions(wl1)["QuotaReserved"]["status"] == "True"
        assert wl1["status"]["admission"]["clusterQueue"] == q.cluster_queue

        second = create(ns, job("second", "1500m", q))
        wl2 = until(
            lambda: pending(kueue, ns, second, "insufficient unused quota"),
            "second Job waiting for quota",
        )
        assert "Admitted" not in conditions(wl2) or conditions(wl2)["Admitted"]["status"] != "True"
        assert get_job(ns, "second")["spec"]["suspend"] is True

        ns.kubectl("delete", "job", "first", "--cascade=background")
        until(lambda: admitted(kueue, ns, second), "second Job admitted after the first went")
        until(
            lambda: conditions(get_job(ns, "second")).get("Complete", {}).get("status") == "True",
            "second Job complete",
        )
    finally:
        kueue.delete_queues(q)


def test_quota_frees_when_the_first_job_finishes(kueue, kube_namespace):
    ns = kube_namespace
    q = kueue.create_queues(ns.name, cpu="2", memory="4Gi")
    try:
        first = create(ns, job("first", "1500m", q, {"kwok.test/run-forever": "true"}))
        until(lambda: admitted(kueue, ns, first), "first Job admitted")
        second = create(ns, job("second", "1500m", q))
        until(
            lambda: pending(kueue, ns, second, "insufficient unused quota"),
            "second Job waiting for quota",
        )
        # let the running pod finish: kwok's pod-complete stage applies once
        # the run-forever annotation is gone
        pods = json.loads(ns.kubectl("get", "pods", "-l", "job-name=first", "-o", "json").stdout)
        for pod in pods["items"]:
            ns.kubectl("annotate", "pod", pod["metadata"]["name"], "kwok.test/run-forever-")
        until(
            lambda: conditions(get_job(ns, "first")).get("Complete", {}).get("status") == "True",
            "first Job complete",
        )
        until(lambda: admitted(kueue, ns, second), "second Job admitted after the first finished")
    finally:
        kueue.delete_queues(q)


def test_unlabelled_job_runs_without_kueue(kueue, kube_namespace):
    ns = kube_namespace
    hooks = json.loads(
        ns.kube.kubectl("get", "mutatingwebhookconfiguration", MUTATING, "-o", "json").stdout
    )["webhooks"]
    job_hook = next(h for h in hooks if h["clientConfig"]["url"].endswith("-batch-v1-job"))
    assert job_hook["objectSelector"]["matchExpressions"] == [
        {"key": QUEUE_LABEL, "operator": "Exists"}
    ]
    assert ns.kube.kubectl("get", "validatingwebhookconfiguration", VALIDATING).returncode == 0

    created = create(ns, job("plain", "100m"))
    until(
        lambda: conditions(get_job(ns, "plain")).get("Complete", {}).get("status") == "True",
        "unlabelled Job complete",
    )
    assert kueue.workloads_of_job(ns.name, created["metadata"]["uid"]) == []


def test_labelled_job_is_suspended_by_the_webhook(kueue, kueue_queues, kube_namespace):
    ns = kube_namespace
    body = job("eager", "100m", kueue_queues)
    body["spec"]["suspend"] = False
    created = create(ns, body)
    # Kueue's mutating webhook suspends a labelled Job at creation, then admits it
    assert created["spec"]["suspend"] is True
    until(lambda: admitted(kueue, ns, created), "labelled Job admitted")
    until(
        lambda: conditions(get_job(ns, "eager")).get("Complete", {}).get("status") == "True",
        "labelled Job complete",
    )


def test_job_bigger_than_the_queue_is_never_admitted(kueue, kube_namespace):
    ns = kube_namespace
    q = kueue.create_queues(ns.name, cpu="2", memory="4Gi")
    try:
        created = create(ns, job("huge", "3", q))
        wl = until(
            lambda: pending(kueue, ns, created, "insufficient quota for cpu"),
            "too big Job's Workload pending",
        )
        cond = conditions(wl)["QuotaReserved"]
        assert cond["reason"] == "Pending"
        # v0.17.0: "couldn't assign flavors to pod set main: insufficient quota for
        # cpu in flavor F, previously considered podsets requests (0) + current
        # podset request (3) > maximum capacity (2)"
        assert f"insufficient quota for cpu in flavor {q.flavor}" in cond["message"]
        assert "current podset request (3) > maximum capacity (2)" in cond["message"]
        assert "Admitted" not in conditions(wl)
        assert get_job(ns, "huge")["spec"]["suspend"] is True
    finally:
        kueue.delete_queues(q)


def test_higher_priority_preempts_a_running_job(kueue, kube_namespace):
    ns = kube_namespace
    q = kueue.create_queues(ns.name, cpu="2", memory="4Gi", preemption=True)
    low_class = kueue.create_priority_class(f"{ns.name}-low", 10)
    high_class = kueue.create_priority_class(f"{ns.name}-high", 1000)
    forever = {"kwok.test/run-forever": "true"}
    try:
        low = create(ns, job("low", "1500m", q, forever, {PRIORITY_LABEL: low_class}))
        until(lambda: admitted(kueue, ns, low), "low priority Job admitted")
        until(lambda: get_job(ns, "low").get("status", {}).get("ready") == 1, "low Job running")

        high = create(ns, job("high", "1500m", q, forever, {PRIORITY_LABEL: high_class}))
        until(lambda: admitted(kueue, ns, high), "high priority Job admitted")

        def evicted() -> dict[str, Any] | None:
            wl = workload(kueue, ns, low["metadata"]["uid"])
            ok = (
                wl
                and conditions(wl).get("Evicted", {}).get("status") == "True"
                and conditions(wl).get("Admitted", {}).get("status") == "False"
            )
            return wl if ok and get_job(ns, "low")["spec"]["suspend"] is True else None

        wl = until(evicted, "low priority Job preempted")
        conds = conditions(wl)
        assert conds["Evicted"]["reason"] == "Preempted"
        assert (conds["Preempted"]["status"], conds["Preempted"]["reason"]) == (
            "True",
            "InClusterQueue",
        )
        assert conds["Evicted"]["message"].startswith("Preempted to accommodate a workload")
        assert conds["Admitted"]["status"] == "False"
        # the Job is suspended, not failed: its deleted pod is no failure even
        # with backoffLimit 0
        status = until(
            lambda: (s := get_job(ns, "low")["status"]).get("active", 0) == 0 and s,
            "low Job's pod gone",
        )
        assert status.get("failed", 0) == 0
        assert "Failed" not in conditions(get_job(ns, "low"))
        assert conditions(get_job(ns, "low"))["Suspended"]["status"] == "True"

        # when the quota frees again, the preempted Job is admitted again (new pod)
        ns.kubectl("delete", "job", "high", "--cascade=background")
        until(lambda: admitted(kueue, ns, low), "low priority Job admitted again")
    finally:
        kueue.delete_queues(q)
        kueue.delete_priority_class(low_class)
        kueue.delete_priority_class(high_class)


def test_deactivated_workload_suspends_its_job(kueue, kueue_queues, kube_namespace):
    ns = kube_namespace
    created = create(ns, job("stopme", "100m", kueue_queues, {"kwok.test/run-forever": "true"}))
    wl = until(lambda: admitted(kueue, ns, created), "Job admitted")
    ns.kubectl(
        "patch",
        "workloads.kueue.x-k8s.io",
        wl["metadata"]["name"],
        "--type=merge",
        "-p",
        json.dumps({"spec": {"active": False}}),
    )

    def deactivated() -> dict[str, Any] | None:
        w = workload(kueue, ns, created["metadata"]["uid"])
        # Kueue writes Evicted first and Admitted=False in a later status update
        ok = (
            w
            and conditions(w).get("Evicted", {}).get("reason") == "Deactivated"
            and conditions(w).get("Admitted", {}).get("status") == "False"
        )
        return w if ok and get_job(ns, "stopme")["spec"]["suspend"] is True else None

    w = until(deactivated, "deactivated Workload evicted, Job suspended")
    assert conditions(w)["Evicted"]["status"] == "True"
    assert conditions(w)["Evicted"]["message"] == "The workload is deactivated"
    assert conditions(w)["Admitted"]["status"] == "False"
