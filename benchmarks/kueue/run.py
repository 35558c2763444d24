"""kubejobs with and without a real Kueue on kwok: submit-to-running, and N processes on a quota.

    .venv/bin/python -m benchmarks.kueue.run --n 200 --quota 20 --samples 20

Starts the test servers (control plane with kwok nodes, the real Colonies server,
Kueue v0.17.0 from testenv/kueue.py) and, in one run, side by side:

- submit-to-running: --samples processes one after another, each from its
  submission to its pod's phase Running (the pod list polled every 20 ms), by
  an executor without Kueue and by one with queue_name (an empty ClusterQueue:
  the cost of the queue itself, Kueue's admission and the suspend/unsuspend);
- throughput: --n processes of 1 cpu each (kwok runs them 500 ms) at once, by
  an executor with queue_name in a ClusterQueue of --quota cpu, with
  max_queued = n (the whole backlog queued in Kueue) : processes closed/s, median
  submit-to-close, and the most Jobs admitted (unsuspended, unfinished) at once,
  sampled every 0.5 s; the same N without Kueue, limited by capacity_cpu=quota
  instead, for comparison;
- the floor with Kueue: the same N Jobs made suspended in a LocalQueue of the
  same quota by a bare client loop (apply, await with one watch, delete): what
  Kueue and the Job controller allow at best.

Prints JSON lines, then a markdown table. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.executor.run import (
    SUCCESS,
    executor_env,
    run_executor,
    run_floor,
    spec,
    wait_ready,
)
from kubejobs.adapters.kube import KubeClient
from testenv._proc import free_port
from testenv.colonies import ColoniesServer
from testenv.kube import FakeNode, KubeCluster
from testenv.kueue import KueueServer

ROOT = Path(__file__).resolve().parents[2]


def namespace(kube: KubeCluster) -> str:
    ns = kube.create_namespace("bench")
    kube.kubectl("-n", ns, "create", "serviceaccount", "kubejobs-log-shipper")
    return ns  # run_executor adds the executor's key Secret


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class AdmittedSampler:
    """The most unsuspended, unfinished Jobs seen at once in a namespace."""

    def __init__(self, client: KubeClient, ns: str) -> None:
        self.client, self.ns, self.most = client, ns, 0

    def __call__(self) -> None:
        jobs, _ = self.client.list("Job", self.ns)
        running = [j for j in jobs if not j["spec"].get("suspend") and not _finished(j)]
        self.most = max(self.most, len(running))


def submit_to_running(
    colonies: ColoniesServer, kube: KubeCluster, ns: str, samples: int, settings: dict[str, str]
) -> list[float]:
    """Start an executor and time `samples` processes, one at a time, to their pod Running."""
    suffix = os.urandom(4).hex()
    etype = f"bench-{suffix}"
    name, prvkey = colonies.add_executor(f"bench-{suffix}", etype)
    port = free_port()
    env = executor_env(
        colonies, kube, ns, name, etype, prvkey, port, {"assign_timeout": "5", **settings}, "1s"
    )
    client = KubeClient(str(kube.kubeconfig))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubejobs.executor"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    times = []
    try:
        wait_ready(port)
        for i in range(samples):
            start = time.time()
            pid = colonies.submit(spec(etype, i, "100m"))["processid"]
            label = f"kubejobs.io/process={pid[:40]}"
            while True:
                pods, _ = client.list("Pod", ns, label)
                if any((p.get("status") or {}).get("phase") == "Running" for p in pods):
                    break
                time.sleep(0.02)
            times.append(time.time() - start)
            colonies.wait_state(pid, (SUCCESS, 3), 60)
    finally:
        proc.terminate()
        proc.wait(60)
    return times


def floor_text(row: dict[str, Any]) -> str:
    """The ratio to the bare-client floor, measured for the Kueue row only (without Kueue the
    floor is benchmarks/executor's)."""
    if "floor_seconds" not in row:
        return "-"
    return f"{row['ratio_to_floor']:.2f} (floor {row['floor_seconds']:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="processes at once")
    parser.add_argument("--quota", type=int, default=20, help="ClusterQueue cpu")
    parser.add_argument("--samples", type=int, default=20, help="submit-to-running samples")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubejobs-bench-kueue-"))
    nodes = tuple(
        FakeNode(f"bench-node-{i}", {"cpu": "256", "memory": "1Ti", "pods": "1100"})
        for i in range(2)
    )
    kube = KubeCluster(workdir / "kube", nodes=nodes).start()
    colonies = ColoniesServer(workdir / "colonies").start()
    kueue = KueueServer(kube, workdir / "kueue").start()
    client = KubeClient(str(kube.kubeconfig))
    rows: dict[str, dict[str, Any]] = {}
    try:
        plain_ns = namespace(kube)
        plain = submit_to_running(colonies, kube, plain_ns, args.samples, {})
        queued_ns = namespace(kube)
        queue = kueue.create_queues(queued_ns, cpu="1000", memory="4Ti")
        queued = submit_to_running(
            colonies, kube, queued_ns, args.samples, {"queue_name": queue.local_queue}
        )
        for label, times in (("without Kueue", plain), ("with Kueue", queued)):
            rows[label] = {
                "submit_to_running_median": statistics.median(times),
                "submit_to_running_max": max(times),
            }
            print(json.dumps({"run": "submit-to-running", "kueue": label, "samples": times}))

        kueue_ns = namespace(kube)
        queue = kueue.create_queues(kueue_ns, cpu=str(args.quota), memory="4Ti")
        sampler = AdmittedSampler(client, kueue_ns)
        result = run_executor(
            colonies, kube, kueue_ns, args.n, workdir,
            {"queue_name": queue.local_queue, "max_queued": str(args.n)},
            cpu="1000m", during=sampler,
        )  # fmt: skip
        result["most_admitted_at_once"] = sampler.most
        # the floor: the same N Jobs made suspended in a queue of the same quota by a bare
        # client, awaited and deleted (what Kueue and the Job controller allow at best)
        floor_ns = namespace(kube)
        floor_queue = kueue.create_queues(floor_ns, cpu=str(args.quota), memory="4Ti")
        result["floor_seconds"] = run_floor(
            kube, floor_ns, args.n, "1000m", floor_queue.local_queue
        )
        result["ratio_to_floor"] = result["wall_seconds"] / result["floor_seconds"]
        rows["with Kueue"].update(result)
        print(json.dumps({"run": "throughput", "kueue": "with Kueue", **result}))

        cap_ns = namespace(kube)
        sampler = AdmittedSampler(client, cap_ns)
        result = run_executor(
            colonies, kube, cap_ns, args.n, workdir,
            {"capacity_cpu": str(args.quota)}, cpu="1000m", during=sampler,
        )  # fmt: skip
        result["most_admitted_at_once"] = sampler.most
        rows["without Kueue"].update(result)
        print(json.dumps({"run": "throughput", "kueue": "capacity_cpu", **result}))
    finally:
        kueue.stop()
        colonies.shutdown()
        kube.stop()
    print()
    print(
        f"| | submit-to-running median (max) | N={args.n} closed/s | median submit-to-close "
        f"| most Jobs running at once (quota {args.quota} cpu, 1 cpu each) | x the bare-client "
        "floor | failed |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        limit = "Kueue ClusterQueue" if label == "with Kueue" else "capacity_cpu"
        print(
            f"| {label} ({limit}) | {row['submit_to_running_median']:.2f} s "
            f"({row['submit_to_running_max']:.2f} s) | {row['closed_per_second']:.1f} "
            f"| {row['median_submit_to_close']:.1f} s | {row['most_admitted_at_once']} "
            f"| {floor_text(row)} | {row['failed']} |"
        )


if __name__ == "__main__":
    main()
