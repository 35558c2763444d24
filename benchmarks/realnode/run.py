"""Real containers on the real test node: kubejobs' latencies beside bare Jobs, walltime and StartError timing, pod start.

Starts the test servers (testenv: control plane, real Colonies server, moto S3,
and the real node: containerd + kubelet), then runs the parts chosen with
--parts (all by default):

- at-once: N one-pod processes (busybox `echo`) submitted at once to one
  executor subprocess whose Jobs run on real-node-0; submit-to-close from the
  server's `submissiontime` and `endtime`. Beside it the floor: the same N
  Jobs rendered by kubejobs with the injected containers stripped, applied at
  once directly; apply to the Job seen Complete (watch) and to its Complete
  condition's lastTransitionTime (whole seconds).
- alone: one process at a time, --repeats times, beside one bare Job at a time.
- walltime: conditions.walltime 10, a program that ignores SIGTERM; seconds
  from the deadline (the Job's status.startTime + 10, and the process's
  starttime + 10) to the process's endtime (FAILED).
- starterror: a cmd that does not exist; seconds from the main container's
  `terminated.finishedAt` (pod status) to the process's endtime (FAILED).
- podstart: the same one-container Job applied directly in three variants taken
  in turn in every round: `bare` (injected containers stripped), `shipper`
  (the native-sidecar log shipper), `shipper+stager` (a spec with `fs`: the
  shipper and the data stager, staging an empty CFS dir). Each is a RUNNING
  Colonies process, so the injected programs do their real work. Pod start is
  the node's boot-time clock read by the main container (/proc/uptime) minus
  the same clock read here just before the Job is applied.

Prints JSON lines, then a markdown table. Figures only; nothing is asserted.

    .venv/bin/python -m benchmarks.realnode.run --n 20 --repeats 5 --rounds 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.executor.run import _finished, wait_ready
from kubejobs.adapters.kube import KubeClient, KubeError
from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.identity import job_name
from kubejobs.spec import validate_spec
from testenv._proc import free_port
from testenv.colonies import ColoniesServer
from testenv.kube import KubeCluster
from testenv.node import BUSYBOX_IMAGE, LABEL, POD_PLACEMENT, RealNode, kubejobs_image
from testenv.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
SUCCESS, FAILED = 2, 3
# The busybox variants keep the injected containers' places, volumes and security
# but run `sleep` / `true`: what the kubelet itself costs for one more sidecar and one
# more init container, whatever runs in them.
VARIANTS = ("bare", "busybox sidecar", "shipper", "busybox sidecar+init", "shipper+stager")
PARTS = ("at-once", "alone", "walltime", "starterror", "podstart")
EXECUTOR_PARTS = {"at-once", "alone", "walltime", "starterror"}
WALLTIME = 10
ECHO = ["-c", "echo hi"]


def spec(
    executor_type: str,
    args: list[str],
    fs: dict[str, Any] | None = None,
    cmd: str = "sh",
    walltime: int = 0,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "funcname": "execute",
        "kwargs": {"docker-image": BUSYBOX_IMAGE, "cmd": cmd, "args": args},
        "conditions": {"executortype": executor_type},
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }
    if walltime:
        doc["conditions"]["walltime"] = walltime
    if fs is not None:
        doc["fs"] = fs
    return doc


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 2),
        "p95": round(percentile(values, 0.95), 2),
        "max": round(max(values), 2),
    }


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Target:
    """A Jobs namespace prepared as the chart does it, and a Colonies executor for it."""

    namespace: str
    executor_type: str
    name: str
    prvkey: str


def target(
    node: RealNode,
    kube: KubeCluster,
    colonies: ColoniesServer,
    prefix: str,
    s3_env: dict[str, str] | None = None,
) -> Target:
    namespace = kube.create_namespace(prefix)
    etype = f"{prefix}-{os.urandom(4).hex()}"
    name, prvkey = colonies.add_executor(etype, etype)
    node.prepare_namespace(namespace, prvkey, s3_env)
    return Target(namespace, etype, name, prvkey)


class Recorder:
    """The newest version of every Job and Pod in a namespace (a list+watch thread per kind,
    deleted objects kept as they were last), and when each Job was first seen finished."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.finished_at: dict[str, float] = {}
        self.lock = threading.Lock()
        for kind in ("Job", "Pod"):
            args = (client, namespace, kind)
            threading.Thread(target=self._follow, args=args, daemon=True).start()

    def _follow(self, client: KubeClient, namespace: str, kind: str) -> None:
        while True:
            try:
                items, version = client.list(kind, namespace)
                for obj in items:
                    self._keep(kind, obj)
                while True:
                    for event in client.watch(kind, namespace, "", version, 30):
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] != "BOOKMARK":
                            self._keep(kind, obj)
            except KubeError:  # expired or interrupted: list again
                time.sleep(0.5)

    def _keep(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            self.objects[(kind, name)] = obj
            if kind == "Job" and _finished(obj):
                self.finished_at.setdefault(name, time.time())

    def job(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self.objects[("Job", name)]

    def main_terminated(self, job: str) -> dict[str, Any]:
        """The main container's `terminated` state in the Job's pod, as last seen."""
        with self.lock:
            pods = [o for (kind, _), o in self.objects.items() if kind == "Pod"]
        for pod in pods:
            if (pod["metadata"].get("labels") or {}).get("job-name") != job:
                continue
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                done = (status.get("state") or {}).get("terminated")
                if status["name"] == "main" and done:
                    return dict(done)
        raise RuntimeError(f"no terminated main container seen for Job {job}")

    def wait_finished(self, names: list[str], timeout: float = 300) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(n in self.finished_at for n in names):
                    return {n: self.finished_at[n] for n in names}
            time.sleep(0.05)
        raise RuntimeError(f"Jobs not finished after {timeout}s")


def renderer(node: RealNode, colonies: ColoniesServer, t: Target) -> Renderer:
    return Renderer(
        RenderSettings(
            namespace=t.namespace,
            executor_name=t.name,
            colony_name=colonies.colony_name,
            colonies_host=node.host_ip,  # where pods reach the server on this machine
            colonies_port=colonies.port,
            inpod_image=kubejobs_image(),
            node_selector=LABEL,
            tolerations=tuple(POD_PLACEMENT["tolerations"]),
            termination_grace_seconds=30,
        )
    )


# A sidecar that does nothing and ends at once on SIGTERM (as the kubelet stops sidecars).
IDLE_SIDECAR = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def trivial_injected(job: dict[str, Any]) -> dict[str, Any]:
    """The injected containers replaced by busybox doing nothing (a sidecar idles)."""
    for container in job["spec"]["template"]["spec"].get("initContainers", []):
        sidecar = container.get("restartPolicy") == "Always"
        container["image"] = BUSYBOX_IMAGE
        container["command"] = IDLE_SIDECAR if sidecar else ["true"]
    return job


def strip_injected(job: dict[str, Any]) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    pod.pop("initContainers", None)
    pod["volumes"] = [v for v in pod.get("volumes", []) if not v["name"].startswith("kubejobs-")]
    for container in pod["containers"]:
        # the injected volumes go (the data volume, the input and output files, a hostfile)
        mounts = [
            m for m in container.get("volumeMounts", []) if not m["name"].startswith("kubejobs-")
        ]
        container["volumeMounts"] = mounts
    return job


# --- through the executor ------------------------------------------------------------


@contextlib.contextmanager
def executor(
    node: RealNode,
    kube: KubeCluster,
    colonies: ColoniesServer,
    t: Target,
    workdir: Path,
    kube_version: str,
) -> Iterator[None]:
    """One `kubejobs executor` subprocess serving ``t``, with the real node's settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
    env.update({f"KUBEJOBS_{k.upper()}": v for k, v in node.executor_settings().items()})
    env.update(
        {
            "KUBEJOBS_KUBE_VERSION": kube_version,
            "KUBEJOBS_COLONIES_PORT": str(colonies.port),
            "KUBEJOBS_COLONY_NAME": colonies.colony_name,
            "KUBEJOBS_EXECUTOR_NAME": t.name,
            "KUBEJOBS_EXECUTOR_TYPE": t.executor_type,
            "KUBEJOBS_EXECUTOR_PRVKEY": t.prvkey,
            "KUBEJOBS_NAMESPACE": t.namespace,
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
    try:
        wait_ready(port)
        yield
    finally:
        proc.terminate()
        proc.wait(60)


def run_processes(
    colonies: ColoniesServer, t: Target, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Submit the specs at once; every process once closed."""
    with ThreadPoolExecutor(len(docs)) as pool:
        pids = list(pool.map(lambda d: colonies.submit(d, t.prvkey)["processid"], docs))
    return [colonies.wait_state(pid, (SUCCESS, FAILED), 600) for pid in pids]


def submit_to_close(processes: list[dict[str, Any]]) -> list[float]:
    for p in processes:
        if p["state"] != SUCCESS:
            raise RuntimeError(f"process {p['processid']} failed: {p['errors']}")
    return [ts(p["endtime"]) - ts(p["submissiontime"]) for p in processes]


def all_closed(processes: list[dict[str, Any]]) -> float:
    return max(ts(p["endtime"]) for p in processes) - min(
        ts(p["submissiontime"]) for p in processes
    )


def failed_alone(colonies: ColoniesServer, t: Target, doc: dict[str, Any]) -> dict[str, Any]:
    process = run_processes(colonies, t, [doc])[0]
    if process["state"] != FAILED:
        raise RuntimeError(f"process {process['processid']} did not fail")
    return process


# --- bare Jobs applied directly --------------------------------------------------------


def bare_floor(
    client: KubeClient,
    recorder: Recorder,
    render: Renderer,
    t: Target,
    count: int,
    idle_sidecar: bool = False,
) -> tuple[list[float], list[float], float]:
    """``count`` bare `echo` Jobs applied at once: per Job, apply to Complete seen and to
    the Complete condition's time; and apply to the last one Complete. With
    ``idle_sidecar`` each keeps a native sidecar that does nothing: what the kubelet
    charges for any sidecar, whatever it runs."""
    doc = validate_spec(spec(t.executor_type, ECHO))
    shape = trivial_injected if idle_sidecar else strip_injected
    jobs = [shape(render.render(doc, os.urandom(32).hex())[0]) for _ in range(count)]
    names = [j["metadata"]["name"] for j in jobs]
    applied: dict[str, float] = {}

    def apply(job: dict[str, Any]) -> None:
        applied[job["metadata"]["name"]] = time.time()
        client.apply(job, t.namespace)

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(apply, jobs))
    seen = recorder.wait_finished(names)
    conditions = []
    for name in names:
        complete = [
            c for c in recorder.job(name)["status"]["conditions"] if c["type"] == "Complete"
        ]
        conditions.append(ts(complete[0]["lastTransitionTime"]) - applied[name])
        client.delete("Job", t.namespace, name, propagation="Background")
    return (
        [seen[n] - applied[n] for n in names],
        conditions,
        max(seen.values()) - min(applied.values()),
    )


# --- pod start with and without the injected containers ------------------------------


def pod_start(
    client: KubeClient,
    render: Renderer,
    colonies: ColoniesServer,
    t: Target,
    rounds: int,
) -> dict[str, list[float]]:
    args = ["-c", "cut -d' ' -f1 /proc/uptime >/dev/termination-log"]
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            fs = None
            if variant.endswith("+stager") or variant.endswith("+init"):
                label = f"/bench/{uuid.uuid4().hex[:8]}"
                fs = {"mount": "/cfs", "dirs": [{"label": label, "dir": "/in"}]}
            doc = spec(t.executor_type, args, fs)
            colonies.submit(doc, t.prvkey)
            pid = str(colonies.assign(timeout=10, prvkey=t.prvkey)["processid"])
            job = render.render(validate_spec(doc), pid)[0]
            if variant == "bare":
                job = strip_injected(job)
            elif variant.startswith("busybox"):
                job = trivial_injected(job)
            started_here = boottime()
            client.apply(job, t.namespace)
            started_in_pod = _main_start(client, t.namespace, job["metadata"]["name"])
            results[variant].append(started_in_pod - started_here)
            client.delete("Job", t.namespace, job["metadata"]["name"], propagation="Background")
            colonies.close(pid, prvkey=t.prvkey)
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


# --- the run ------------------------------------------------------------------------


def run(
    args: argparse.Namespace,
    node: RealNode,
    kube: KubeCluster,
    colonies: ColoniesServer,
    s3: S3Server,
    workdir: Path,
) -> dict[str, list[tuple[str, ...]]]:
    """Run the chosen parts, printing JSON lines; the markdown table's rows, by part."""
    parts = set(args.parts)
    rows: dict[str, list[tuple[str, ...]]] = {part: [] for part in PARTS}
    client = KubeClient(str(kube.kubeconfig))
    closes: dict[str, list[float]] = {}
    if parts & EXECUTOR_PARTS:
        t = target(node, kube, colonies, "bench-exec")
        recorder = Recorder(client, t.namespace)
        with executor(node, kube, colonies, t, workdir, args.kube_version):
            if "at-once" in parts:
                processes = run_processes(
                    colonies, t, [spec(t.executor_type, ECHO) for _ in range(args.n)]
                )
                closes["at-once"] = submit_to_close(processes)
                emit(
                    kubejobs="at-once",
                    **summary(closes["at-once"]),
                    all_closed=round(all_closed(processes), 2),
                )
            if "alone" in parts:
                closes["alone"] = [
                    submit_to_close(run_processes(colonies, t, [spec(t.executor_type, ECHO)]))[0]
                    for _ in range(args.repeats)
                ]
                emit(kubejobs="alone", **summary(closes["alone"]))
            if "walltime" in parts:
                doc = spec(t.executor_type, ["-c", "trap '' TERM; sleep 3600"], walltime=WALLTIME)
                process = failed_alone(colonies, t, doc)
                end = ts(process["endtime"])
                job = recorder.job(job_name(process["processid"]))
                after_job = end - ts(job["status"]["startTime"]) - WALLTIME
                after_process = end - ts(process["starttime"]) - WALLTIME
                emit(
                    walltime_deadline_to_failed=round(after_job, 2),
                    from_process_starttime=round(after_process, 2),
                    error=(process.get("errors") or [""])[0],
                )
                rows["walltime"].append(
                    ("walltime: deadline to FAILED", f"{after_job:.2f} s", "", "", "<= 5 s")
                )
            if "starterror" in parts:
                doc = spec(t.executor_type, [], cmd="no-such-program")
                process = failed_alone(colonies, t, doc)
                done = recorder.main_terminated(job_name(process["processid"]))
                after = ts(process["endtime"]) - ts(done["finishedAt"])
                emit(
                    starterror_terminated_to_failed=round(after, 2),
                    reason=done.get("reason"),
                    error=(process.get("errors") or [""])[0],
                )
                rows["starterror"].append(
                    ("StartError: terminated to FAILED", f"{after:.2f} s", "", "", "<= 10 s")
                )
    if parts & {"at-once", "alone", "podstart"}:
        t = target(node, kube, colonies, "bench-direct", dict(s3.config.env))
        render = renderer(node, colonies, t)
        recorder = Recorder(client, t.namespace)
        for part, count, repeats, goal in (
            ("at-once", args.n, 1, "ratio <= 1.5"),
            ("alone", 1, args.repeats, "<= bare + 1 s"),
        ):
            if part not in parts:
                continue
            floors: dict[bool, list[float]] = {False: [], True: []}
            for idle_sidecar, values in floors.items():
                by_condition: list[float] = []
                for _ in range(repeats):
                    seen_once, condition_once, last = bare_floor(
                        client, recorder, render, t, count, idle_sidecar
                    )
                    values += seen_once
                    by_condition += condition_once
                emit(
                    bare=part,
                    idle_sidecar=idle_sidecar,
                    **summary(values),
                    p50_condition=round(statistics.median(by_condition), 2),
                    all_complete=round(last, 2),
                )
            seen, with_sidecar = floors[False], floors[True]
            ours, floor = statistics.median(closes[part]), statistics.median(seen)
            rows[part].append(
                (
                    f"{part} (n = {len(seen)}): p50 / p95 / max",
                    f"{ours:.2f} / {percentile(closes[part], 0.95):.2f} / "
                    f"{max(closes[part]):.2f} s",
                    f"{floor:.2f} / {percentile(seen, 0.95):.2f} / {max(seen):.2f} s",
                    f"x{ours / floor:.2f}, {ours - floor:+.2f} s",
                    goal,
                )
            )
            rows[part].append(
                (
                    f"{part}, bare Jobs + an idle busybox sidecar: p50 / p95 / max",
                    "",
                    f"{statistics.median(with_sidecar):.2f} / "
                    f"{percentile(with_sidecar, 0.95):.2f} / {max(with_sidecar):.2f} s",
                    f"{statistics.median(with_sidecar) - statistics.median(seen):+.2f} s over bare",
                    "",
                )
            )
        if "podstart" in parts:
            starts = pod_start(client, render, colonies, t, args.rounds)
            bare = statistics.median(starts["bare"])
            for variant in VARIANTS:
                values = starts[variant]
                added = statistics.median(values) - bare
                emit(pod_start=variant, **summary(values), added_p50=round(added, 2))
                rows["podstart"].append(
                    (
                        f"pod start, {variant} (n = {len(values)}): p50 / p95",
                        f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f} s",
                        f"{bare:.2f} s",
                        f"{added:+.2f} s",
                        "",
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts",
        type=lambda text: text.split(","),
        default=list(PARTS),
        help=f"comma-separated, any of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument("--n", type=int, default=20, help="processes and Jobs for at-once")
    parser.add_argument("--repeats", type=int, default=5, help="processes and Jobs for alone")
    parser.add_argument("--rounds", type=int, default=10, help="pod starts per variant")
    parser.add_argument(
        "--kube-version",
        default="1.34",
        help="the executor's kube_version setting: 1.28 renders the log shipper as a regular "
        "container (container mode) instead of a native sidecar",
    )
    args = parser.parse_args()
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    workdir = Path(tempfile.mkdtemp(prefix="kubejobs-bench-realnode-"))
    t0 = time.monotonic()
    kube = KubeCluster(workdir / "kube").start()
    colonies = ColoniesServer(workdir / "colonies").start()
    s3 = S3Server(workdir / "s3").start()
    node = RealNode(kube, workdir / "node")
    try:
        node.start()
        emit(
            environment_seconds=round(time.monotonic() - t0, 1),
            image_import_seconds=round(node.image_import_seconds, 1),
        )
        rows = run(args, node, kube, colonies, s3, workdir)
    finally:
        node.stop()
        s3.stop()
        colonies.shutdown()
        kube.stop()
    print()
    print("| figure | kubejobs | bare | compared | target |")
    print("|---|---|---|---|---|")
    for row in (row for part in PARTS for row in rows[part]):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
