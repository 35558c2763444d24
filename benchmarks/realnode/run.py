"""Real containers on the real test node: submit-to-close latency, and what the injected containers add to pod start.

Starts the test servers (testenv: control plane, real Colonies server, moto S3,
and the real node: containerd + kubelet), then:

1. Latency: one executor subprocess whose Jobs run on real-node-0; N one-pod
   processes (busybox, `echo`) submitted one after another, each awaited before
   the next; submit-to-close from the server's `submissiontime` and `endtime`.
2. Pod start: the same one-container Job rendered by kubejobs and applied
   directly, in three variants taken in turn in every round (side by side in
   one run): `bare` (the injected containers stripped), `shipper` (the
   native-sidecar log shipper), `shipper+stager` (a spec with `fs`: the shipper
   and the data stager, staging an empty CFS dir). Each is a RUNNING Colonies
   process, so the injected programs do their real work. Pod start is the
   node's boot-time clock read by the main container (/proc/uptime) minus the
   same clock read here just before the Job is applied.

Figures only; nothing is asserted.

    .venv/bin/python -m benchmarks.realnode.run --n 20 --rounds 10
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
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.executor.run import wait_ready
from kubejobs.adapters.kube import KubeClient
from kubejobs.render import Renderer, RenderSettings
from kubejobs.spec import validate_spec
from testenv._proc import free_port
from testenv.colonies import ColoniesServer
from testenv.kube import KubeCluster
from testenv.node import BUSYBOX_IMAGE, LABEL, POD_PLACEMENT, RealNode, kubejobs_image
from testenv.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
SUCCESS, FAILED = 2, 3
VARIANTS = ("bare", "shipper", "shipper+stager")


def spec(executor_type: str, args: list[str], fs: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "funcname": "execute",
        "kwargs": {"docker-image": BUSYBOX_IMAGE, "cmd": "sh", "args": args},
        "conditions": {"executortype": executor_type},
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }
    if fs is not None:
        doc["fs"] = fs
    return doc


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# --- 1. submit-to-close latency through the executor ------------------------------


def latency(
    node: RealNode, kube: KubeCluster, colonies: ColoniesServer, n: int, workdir: Path
) -> list[float]:
    namespace = kube.create_namespace("bench-latency")
    suffix = os.urandom(4).hex()
    etype = f"bench-{suffix}"
    name, prvkey = colonies.add_executor(f"bench-{suffix}", etype)
    node.prepare_namespace(namespace, prvkey)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
    env.update({f"KUBEJOBS_{k.upper()}": v for k, v in node.executor_settings().items()})
    env.update(
        {
            "KUBEJOBS_COLONIES_HOST": colonies.host,
            "KUBEJOBS_COLONIES_PORT": str(colonies.port),
            "KUBEJOBS_COLONY_NAME": colonies.colony_name,
            "KUBEJOBS_EXECUTOR_NAME": name,
            "KUBEJOBS_EXECUTOR_TYPE": etype,
            "KUBEJOBS_EXECUTOR_PRVKEY": prvkey,
            "KUBEJOBS_NAMESPACE": namespace,
            "KUBEJOBS_KUBECONFIG": str(kube.kubeconfig),
            "KUBEJOBS_HEALTH_PORT": str(port),
            "KUBEJOBS_HEALTH_HOST": "127.0.0.1",
            "KUBEJOBS_LOG_LEVEL": "WARNING",
        }
    )
    with (workdir / "executor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubejobs.executor"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    seconds: list[float] = []
    try:
        wait_ready(port)
        for i in range(n):
            pid = colonies.submit(spec(etype, ["-c", f"echo {i}"]), prvkey)["processid"]
            process = colonies.wait_state(pid, (SUCCESS, FAILED), 300)
            if process["state"] != SUCCESS:
                raise RuntimeError(f"process {pid} failed: {process['errors']}")
            seconds.append(ts(process["endtime"]) - ts(process["submissiontime"]))
    finally:
        proc.terminate()
        proc.wait(60)
    return seconds


# --- 2. pod start with and without the injected containers ------------------------


def strip_injected(job: dict[str, Any]) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    pod.pop("initContainers", None)
    pod["volumes"] = [v for v in pod.get("volumes", []) if not v["name"].startswith("kubejobs-")]
    for container in pod["containers"]:
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] != "kubejobs-data"]
        container["volumeMounts"] = mounts
    return job


def pod_start(
    node: RealNode,
    kube: KubeCluster,
    colonies: ColoniesServer,
    s3: S3Server,
    rounds: int,
) -> dict[str, list[float]]:
    namespace = kube.create_namespace("bench-start")
    suffix = os.urandom(4).hex()
    etype = f"bench-start-{suffix}"
    name, prvkey = colonies.add_executor(f"bench-start-{suffix}", etype)
    node.prepare_namespace(namespace, prvkey, dict(s3.config.env))
    renderer = Renderer(
        RenderSettings(
            namespace=namespace,
            executor_name=name,
            colony_name=colonies.colony_name,
            colonies_host=colonies.host,
            colonies_port=colonies.port,
            inpod_image=kubejobs_image(),
            host_network=True,
            inpod_env=node.api_env,
            node_selector=LABEL,
            tolerations=tuple(POD_PLACEMENT["tolerations"]),
            termination_grace_seconds=30,
        )
    )
    client = KubeClient(str(kube.kubeconfig))
    args = ["-c", "cut -d' ' -f1 /proc/uptime >/dev/termination-log"]
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            fs = None
            if variant == "shipper+stager":
                label = f"/bench/{uuid.uuid4().hex[:8]}"
                fs = {"mount": "/cfs", "dirs": [{"label": label, "dir": "/in"}]}
            doc = spec(etype, args, fs)
            colonies.submit(doc, prvkey)
            pid = str(colonies.assign(timeout=10, prvkey=prvkey)["processid"])
            job = renderer.render(validate_spec(doc), pid)[0]
            if variant == "bare":
                job = strip_injected(job)
            started_here = boottime()
            client.apply(job, namespace)
            started_in_pod = _main_start(client, namespace, job["metadata"]["name"])
            results[variant].append(started_in_pod - started_here)
            client.delete("Job", namespace, job["metadata"]["name"], propagation="Background")
            colonies.close(pid, prvkey=prvkey)
    return results


def _main_start(client: KubeClient, namespace: str, job_name: str) -> float:
    """The main container's /proc/uptime reading, from its termination message."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pods, _ = client.list("Pod", namespace, f"job-name={job_name}")
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status["name"] != "main":
                    continue
                done = (status.get("state") or {}).get("terminated")
                if done and done.get("exitCode") == 0 and done.get("message"):
                    return float(done["message"])
                if done:
                    raise RuntimeError(f"main failed: {done}")
        time.sleep(0.1)
    raise RuntimeError(f"Job {job_name} did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="processes for the latency figures")
    parser.add_argument("--rounds", type=int, default=10, help="pod starts per variant")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubejobs-bench-realnode-"))
    t0 = time.monotonic()
    kube = KubeCluster(workdir / "kube").start()
    colonies = ColoniesServer(workdir / "colonies").start()
    s3 = S3Server(workdir / "s3").start()
    node = RealNode(kube, workdir / "node")
    try:
        node.start()
        print(
            json.dumps(
                {
                    "environment_seconds": round(time.monotonic() - t0, 1),
                    "image_import_seconds": round(node.image_import_seconds, 1),
                }
            ),
            flush=True,
        )
        seconds = latency(node, kube, colonies, args.n, workdir)
        print(
            json.dumps(
                {
                    "submit_to_close_n": len(seconds),
                    "p50": round(statistics.median(seconds), 2),
                    "p95": round(percentile(seconds, 0.95), 2),
                    "min": round(min(seconds), 2),
                    "max": round(max(seconds), 2),
                }
            ),
            flush=True,
        )
        starts = pod_start(node, kube, colonies, s3, args.rounds)
        bare = statistics.median(starts["bare"])
        for variant in VARIANTS:
            values = starts[variant]
            print(
                json.dumps(
                    {
                        "pod_start": variant,
                        "n": len(values),
                        "p50": round(statistics.median(values), 2),
                        "p95": round(percentile(values, 0.95), 2),
                        "added_p50": round(statistics.median(values) - bare, 2),
                    }
                ),
                flush=True,
            )
    finally:
        node.stop()
        s3.stop()
        colonies.shutdown()
        kube.stop()


if __name__ == "__main__":
    main()
