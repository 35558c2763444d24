"""`helm upgrade` of the chart while its Jobs run, on the real node.

The chart's executor runs as a pod on real-node-0 (as in test_chart_realnode.py).
A few processes that print, sleep and print again are running when `helm
upgrade` changes the image tag (the same image imported under a second name:
the node has no registry) and two settings (extra_labels and
ttl_seconds_after_finished). The Deployment's Recreate strategy stops the old
executor (SIGTERM: it stops taking work and leaves its Jobs running) before the
new one starts; the new one, with the same executor name and key, adopts every
running Job, and each process closes once with its whole log. The programs
wait for a gate the test opens only once the new executor is Ready, so on a
busy machine none ends while the old executor stops (which would close it
there, correctly, and leave nothing to adopt). A process
submitted after the upgrade gets a Job with the new settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kubejobs import __version__
from testenv.node import RealNode, kubejobs_image
from tests.integration import test_chart_install as chart_tests
from tests.integration.polling import until
from tests.integration.realnode.conftest import job_spec
from tests.integration.realnode.test_chart_realnode import (
    colony_value,
    install_values,
    node_values,
    ready,
)
from tests.integration.realnode.test_executor_realnode import Gate, gate
from tests.integration.test_executor_e2e import SUCCESS

pytestmark = pytest.mark.integration
__all__ = ["gate"]  # the fixture
install = chart_tests.install  # `helm install` / `helm upgrade` of charts/kubejobs
WAIT = 300.0
# {url}: the gate; wget's complaints while it is shut stay out of the log
SCRIPT = (
    "echo start {n}; until wget -q -O /dev/null {url} 2>/dev/null; do sleep 0.2; done; echo end {n}"
)


def executor_pods(kube_namespace: Any) -> list[dict[str, Any]]:
    return list(
        kube_namespace.get_json("pods", selector="app.kubernetes.io/component=executor")["items"]
    )


def ready_pod_with_image(kube_namespace: Any, image: str) -> dict[str, Any] | None:
    for pod in executor_pods(kube_namespace):
        current = pod["spec"]["containers"][0]["image"] == image
        if current and ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            return pod
    return None


def jobs(kube_namespace: Any) -> dict[str, dict[str, Any]]:
    out = kube_namespace.kubectl("get", "jobs", "-o", "json").stdout
    return {j["metadata"]["name"]: j for j in json.loads(out)["items"]}


def running_pods(kube_namespace: Any) -> int:
    out = kube_namespace.kubectl(
        "get", "pods", "-l", "batch.kubernetes.io/job-name", "-o", "json"
    ).stdout
    return sum(p["status"].get("phase") == "Running" for p in json.loads(out)["items"])


def test_upgrade_with_jobs_in_flight_adopts_them_and_new_jobs_use_the_new_settings(
    install: chart_tests.Install,
    real_node: RealNode,
    kube_namespace: Any,
    colonies: Any,
    tmp_path: Path,
    gate: Gate,
) -> None:
    url = gate.url
    suffix = os.urandom(4).hex()
    executor_type = f"kj-upgrade-type-{suffix}"
    name, prvkey = colonies.add_executor(f"kj-upgrade-{suffix}", executor_type)
    new_tag = f"upgrade-{suffix}"
    real_node.ctr("images", "tag", kubejobs_image(), f"localhost/kubejobs:{new_tag}")
    values = node_values(
        real_node, colonies, kube_namespace.name, name, executor_type,
        {"extra_labels": {"kubejobs-test/generation": "1"}},
        executorKey={"source": "value", "prvkey": prvkey},
    )  # fmt: skip
    install_values(install, values, colonies, tmp_path)
    old_image = f"localhost/kubejobs:{__version__}"
    old = until(lambda: ready_pod_with_image(kube_namespace, old_image), "executor Ready", WAIT)

    pids = []
    for n in range(3):
        doc = job_spec(executor_type, "sh", ["-c", SCRIPT.format(n=n, url=url)])
        pids.append(colonies.submit(doc)["processid"])
    until(lambda: running_pods(kube_namespace) == 3, "three Jobs' pods running", WAIT)
    before = jobs(kube_namespace)
    assert len(before) == 3
    assert {j["metadata"]["labels"]["kubejobs-test/generation"] for j in before.values()} == {"1"}

    install(
        "--reuse-values",
        "--set", colony_value(colonies),
        "--set", f"image.tag={new_tag}",
        "--set-string", "config.extra_labels.kubejobs-test/generation=2",
        "--set", "config.ttl_seconds_after_finished=600",
        command="upgrade",
    )  # fmt: skip
    new_image = f"localhost/kubejobs:{new_tag}"
    new = until(lambda: ready_pod_with_image(kube_namespace, new_image), "new executor", WAIT)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    # The old Jobs outlived the old executor: none was deleted or re-created.
    still = jobs(kube_namespace)
    assert {n: j["metadata"]["uid"] for n, j in before.items() if n in still} == {
        n: j["metadata"]["uid"] for n, j in still.items() if n in before
    }
    gate.open()  # the programs end now, under the new executor

    for n, pid in enumerate(pids):
        process = colonies.wait_state(pid, (SUCCESS, 3), WAIT)
        assert process["state"] == SUCCESS, process["errors"]
        assert process["retries"] == 0
        assert colonies.log_text(pid).splitlines() == [f"start {n}", f"end {n}"]

    def new_log() -> str:
        return kube_namespace.kubectl("logs", new["metadata"]["name"], "-c", "executor").stdout

    # the executor logs "closed" just after the server has the state: wait for the lines
    until(lambda: all(f"process {p} closed" in new_log() for p in pids), "closes logged", WAIT)
    log = new_log()
    for pid in pids:
        assert log.count(f"process {pid} closed") == 1, log
    until(lambda: not (set(jobs(kube_namespace)) & set(before)), "the old Jobs deleted", WAIT)

    after = colonies.submit(job_spec(executor_type, "sh", ["-c", SCRIPT.format(n=9, url=url)]))
    job = until(lambda: next(iter(jobs(kube_namespace).values()), None), "the new Job", WAIT)
    assert job["metadata"]["labels"]["kubejobs-test/generation"] == "2"
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    process = colonies.wait_state(after["processid"], (SUCCESS, 3), WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    assert colonies.log_text(after["processid"]).splitlines() == ["start 9", "end 9"]
