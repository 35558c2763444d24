"""Executor throughput: N processes submitted at once, pods completing at once in kwok.

Starts the test servers (testenv), one executor subprocess, submits N specs in
parallel and waits for every process to close. Prints processes closed/s, median
and p99 submit-to-close (server timestamps), Kubernetes API requests per process
(the executor's own count), the executor's peak RSS, and the floor: the same N
Jobs applied, awaited (one list+watch) and deleted by a bare client loop, as a
ratio, and the CPU seconds each program used in either (`cpu_seconds`,
`floor_cpu_seconds`: on two shared cores, what bounds the run). Figures only;
nothing is asserted.

    .venv/bin/python -m benchmarks.executor.run --n 200 --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.cpu import cpu_seconds
from kubejobs.adapters.colonies import ColoniesClient
from kubejobs.adapters.kube import KubeClient
from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.identity import PROCESS_ANNOTATION, default_process_id
from kubejobs.spec import validate_spec
from testenv._proc import free_port
from testenv.colonies import ColoniesServer
from testenv.kube import FakeNode, KubeCluster

ROOT = Path(__file__).resolve().parents[2]
SUCCESS, FAILED = 2, 3
RUN = "500ms"


def spec(executor_type: str, index: int, cpu: str = "10m") -> dict[str, Any]:
    return {
        "funcname": "execute",
        "kwargs": {"docker-image": "busybox:1.36", "cmd": f"echo {index}"},
        "conditions": {"executortype": executor_type, "cpu": cpu, "mem": "16Mi"},
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def by_label(text: str, metric: str, label: str) -> dict[str, float]:
    """A metric's samples summed over the replicas, by one label's value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'{label}="' in line:
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            found[value] = found.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def metric_sum(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def executor_env(
    colonies: ColoniesServer,
    kube: KubeCluster,
    namespace: str,
    name: str,
    etype: str,
    prvkey: str,
    port: int,
    settings: dict[str, str],
    run: str = RUN,
) -> dict[str, str]:
    """The environment of one `kubejobs executor` subprocess; kwok runs its pods `run` long."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
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
            "KUBEJOBS_EXTRA_ANNOTATIONS": json.dumps({"kwok.test/run": run}),
        }
    )
    env.update({f"KUBEJOBS_{k.upper()}": v for k, v in settings.items()})
    return env


def run_executor(
    colonies: ColoniesServer,
    kube: KubeCluster,
    namespace: str,
    n: int,
    workdir: Path,
    settings: dict[str, str] | None = None,
    cpu: str = "10m",
    during: Any = None,
    replicas: int = 1,
    window: float = 0.0,
) -> dict[str, Any]:
    """`settings`: more KUBEJOBS_* settings; `during()` is called about every 0.5 s while
    the processes run (a sampler). `replicas` executors of one type share the N processes,
    each with its own name, key and key Secret (as the chart's StatefulSet replicas).
    `window`: stop after that many seconds from the first submit, whatever is left."""
    suffix = os.urandom(4).hex()
    etype = f"bench-{suffix}"
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    for r in range(replicas):
        name, prvkey = colonies.add_executor(f"bench-{suffix}-{r}", etype)
        # the executor refuses a key Secret holding another executor's key (its shippers
        # would sign as that executor): its own key, as the chart's key Secret holds it
        secret = f"kubejobs-executor-key-{r}"
        kube.kubectl(
            "-n", namespace, "create", "secret", "generic", secret,
            "--from-literal=prvkey=" + prvkey,
        )  # fmt: skip
        port = free_port()
        env = executor_env(
            colonies, kube, namespace, name, etype, prvkey, port,
            {"max_jobs": str(n), "concurrency": "8", "assign_timeout": "2",
             "takeback_check_seconds": "10", "executor_key_secret": secret,
             **(settings or {})},
        )  # fmt: skip
        with (workdir / f"executor-{n}-{r}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kubejobs.executor"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
        ports.append(port)

    def scrape() -> list[str]:
        texts = []
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                texts.append(reply.read().decode())
        return texts

    try:
        for port in ports:
            wait_ready(port)
        names = {p.pid: "executor" for p in procs}
        used = cpu_seconds(names)
        start = time.time()
        with ThreadPoolExecutor(16) as pool:
            pids = list(
                pool.map(lambda i: colonies.submit(spec(etype, i, cpu))["processid"], range(n))
            )
        submitted = time.time()
        # Poll the executors' own counters, not the server: per-process lookups would
        # compete with the executors for the (single-threaded) test server.
        rss_samples: list[list[int]] = []
        while True:
            metrics = scrape()
            rss_samples.append([rss_kib(p.pid) for p in procs])
            if sum(metric_sum(m, "kubejobs_processes_total") for m in metrics) >= n:
                break
            if window and time.time() - start >= window:
                break
            if during is not None:
                during()
            time.sleep(0.5)
        peaks = [rss_peak_kib(p.pid) for p in procs]
        used = cpu_seconds(names) - used
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        cut = time.time()
        with ThreadPoolExecutor(16) as pool:
            done = {p["processid"]: p for p in pool.map(colonies.get_process, pids)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(60)
    ended = [p for p in done.values() if p["state"] in (SUCCESS, FAILED)]
    latencies = sorted(ts(p["endtime"]) - ts(p["submissiontime"]) for p in ended)
    last_close = (
        max(ts(p["endtime"]) for p in ended) if len(ended) == n else min(cut, start + window)
    )
    failed = sum(1 for p in ended if p["state"] == FAILED)
    text = "\n".join(metrics)
    by_type, by_verb = (
        by_label(text, "kubejobs_colonies_requests", "msgtype"),
        by_label(text, "kubejobs_kube_requests", "verb"),
    )
    # RSS over the run: the mean of the first and last quarter of the samples, per replica
    quarter = max(1, len(rss_samples) // 4)
    return {
        "n": n,
        "replicas": replicas,
        "closed": len(ended),
        "failed": failed,
        "submit_seconds": submitted - start,
        "wall_seconds": last_close - start,
        "closed_per_second": len(ended) / (last_close - start),
        "median_submit_to_close": statistics.median(latencies),
        "p99_submit_to_close": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "kube_requests_per_process": metric_sum(text, "kubejobs_kube_requests") / n,
        "kube_writes_per_process": sum(
            metric_sum(text, f'kubejobs_kube_requests{{verb="{verb}"}}')
            for verb in ("apply", "create", "patch", "delete")
        )
        / n,
        "colonies_requests_per_process": metric_sum(text, "kubejobs_colonies_requests") / n,
        "colonies_requests_by_type": {k: round(v) for k, v in sorted(by_type.items())},
        "kube_requests_by_verb": {k: round(v) for k, v in sorted(by_verb.items())},
        # a take-back check is one list, then lookups (it must not grow with N)
        "lookups_per_takeback_check": round(
            by_type.get("getprocessmsg", 0.0) / max(by_type.get("getprocessesmsg", 0.0), 1.0), 1
        ),
        "cpu_seconds": rounded(used),
        "peak_rss_mib": max(peaks) / 1024,
        "peak_rss_mib_per_replica": [round(p / 1024, 1) for p in peaks],
        "rss_mib_first_last_quarter": [
            [
                round(statistics.mean(s[r] for s in rss_samples[:quarter]) / 1024, 1),
                round(statistics.mean(s[r] for s in rss_samples[-quarter:]) / 1024, 1),
            ]
            for r in range(replicas)
        ],
    }


def rounded(cpu: Counter[str]) -> dict[str, float]:
    """CPU seconds by program, largest first (what bounds a run on two shared cores)."""
    return {name: round(seconds, 1) for name, seconds in cpu.most_common() if seconds >= 0.5}


def wait_ready(port: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("executor not ready")


def run_floor(
    kube: KubeCluster, namespace: str, n: int, cpu: str = "10m", queue_name: str = ""
) -> float:
    """Apply N Jobs (8 threads), await them with one list+watch, delete them: seconds.
    With `queue_name` the Jobs go suspended into that Kueue LocalQueue, as kubejobs' do."""
    return run_floor_window(kube, namespace, n, cpu, queue_name)[0]


def run_floor_window(
    kube: KubeCluster,
    namespace: str,
    n: int,
    cpu: str = "10m",
    queue_name: str = "",
    window: float = 0.0,
) -> tuple[float, int]:
    """run_floor, and with `window` stopped that many seconds after the first apply, without
    deleting (the servers are the window's own): seconds and the Jobs finished by then."""
    client = KubeClient(str(kube.kubeconfig))
    renderer = Renderer(
        RenderSettings(
            namespace=namespace,
            executor_name="floor",
            colony_name="floor",
            extra_annotations={"kwok.test/run": RUN},
            queue_name=queue_name,
        )
    )
    manifests = []
    for i in range(n):
        data = spec("floor", i, cpu)
        manifests.append(
            renderer.render(validate_spec(data), default_process_id({**data, "i": i}))[0]
        )
    start = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda m: client.apply(m, namespace), manifests))
    names = {m["metadata"]["name"] for m in manifests}
    finished: set[str] = set()
    items, version = client.list("Job", namespace, "app.kubernetes.io/managed-by=kubejobs")
    for job in items:
        if _finished(job):
            finished.add(job["metadata"]["name"])
    while finished < names and not (window and time.time() - start >= window):
        for event in client.watch(
            "Job", namespace, "app.kubernetes.io/managed-by=kubejobs", version, 10 if window else 60
        ):
            obj = event["object"]
            version = obj["metadata"].get("resourceVersion", version)
            if event["type"] != "BOOKMARK" and _finished(obj):
                finished.add(obj["metadata"]["name"])
            if finished >= names or (window and time.time() - start >= window):
                break
    if window:
        return min(time.time() - start, window), len(finished & names)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.delete("Job", namespace, name), sorted(names)))
    return time.time() - start, len(names)


def run_client_floor(
    colonies: ColoniesServer,
    kube: KubeCluster,
    namespace: str,
    n: int,
    workers: int = 16,
    window: float = 0.0,
) -> tuple[float, int, dict[str, Any]]:
    """The whole job done by a bare client loop, timed as the executor's run: submit N
    (16 threads), assign them (`workers` threads, each applying its process's Job), await
    the Jobs with one list+watch, close each process and delete its Job (8 threads).

    What every executor must do, and nothing more: no validation or rendering per process
    (one manifest rendered once, the process id put in by text), no pod watch, no take-back
    check, no outputs, one identity. Seconds from the first submit to the last close (or to
    the end of `window`), the processes closed, and the Colonies requests it made."""
    suffix = os.urandom(4).hex()
    etype = f"floor-{suffix}"
    name, prvkey = colonies.add_executor(f"floor-{suffix}", etype)
    client = ColoniesClient(colonies.host, colonies.port, prvkey)
    kclient = KubeClient(str(kube.kubeconfig))
    placeholder = "0" * 64  # a process id: every occurrence (and its 40-character prefix) replaced
    template = json.dumps(
        Renderer(
            RenderSettings(
                namespace=namespace,
                executor_name=name,
                colony_name=colonies.colony_name,
                extra_annotations={"kwok.test/run": RUN},
            )
        ).render(validate_spec(spec(etype, 0)), placeholder)[0]
    )

    def manifest(process_id: str) -> dict[str, Any]:
        text = template.replace(placeholder, process_id)
        return dict(json.loads(text.replace(placeholder[:40], process_id[:40])))

    assigned = [0]
    lock = threading.Lock()
    closed: set[str] = set()
    done = threading.Event()

    failures: list[BaseException] = []

    def assign_loop() -> None:
        try:
            while not done.is_set():
                with lock:
                    if assigned[0] >= n:
                        return
                process = client.assign(colonies.colony_name, 2)
                if process is None:
                    continue
                with lock:
                    assigned[0] += 1
                kclient.apply(manifest(process["processid"]), namespace)
        except BaseException as err:  # a floor that cannot finish must say so, not hang
            failures.append(err)

    def finish(job: dict[str, Any]) -> None:
        meta = job["metadata"]
        client.close(meta["annotations"][PROCESS_ANNOTATION], [])
        kclient.delete("Job", namespace, meta["name"])

    start = time.time()
    with ThreadPoolExecutor(16) as submitters, ThreadPoolExecutor(8) as closers:
        assigners = [threading.Thread(target=assign_loop, daemon=True) for _ in range(workers)]
        for thread in assigners:
            thread.start()
        list(submitters.map(lambda i: colonies.submit(spec(etype, i)), range(n)))
        selector = "app.kubernetes.io/managed-by=kubejobs"

        finishing: list[Future[None]] = []

        def consider(job: dict[str, Any]) -> None:
            if _finished(job) and job["metadata"]["name"] not in closed:
                closed.add(job["metadata"]["name"])
                finishing.append(closers.submit(finish, job))

        items, version = kclient.list("Job", namespace, selector)
        for job in items:
            consider(job)

        def over() -> bool:
            return len(closed) >= n or bool(window and time.time() - start >= window)

        while not over():
            if failures:
                done.set()
                raise RuntimeError("client floor failed") from failures[0]
            for event in kclient.watch("Job", namespace, selector, version, 10 if window else 60):
                obj = event["object"]
                version = obj["metadata"].get("resourceVersion", version)
                if event["type"] in ("ADDED", "MODIFIED"):
                    consider(obj)
                if over():
                    break
        done.set()
        for future in finishing:
            future.result()  # raises what a close or delete raised
    wall = time.time() - start
    if window and len(closed) < n:
        wall = min(wall, window)
    return wall, len(closed), {k: round(v) for k, v in sorted(client.requests.items())}


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="processes per round (repeatable)")
    parser.add_argument("--replicas", type=int, default=1, help="executors sharing the work")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an executor setting (repeatable), e.g. concurrency=16",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end each of the three runs that long after its start and compare the rates "
        "(for N too large to finish: each run then has servers of its own, since what is "
        "left of one would load the next)",
    )
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.setting)
    sizes = args.n or [200, 1000]
    workdir = Path(tempfile.mkdtemp(prefix="kubejobs-bench-"))
    # room for every Job of the largest round at once (kwok pods cost nothing)
    pods = str(max(1100, max(sizes) // 2 + 100))
    nodes = tuple(
        FakeNode(
            f"bench-node-{i}", {"cpu": str(max(256, int(pods) // 4)), "memory": "4Ti", "pods": pods}
        )
        for i in range(2)
    )
    shared: list[Any] = []  # the servers of the run under way: [kube, colonies]

    def stop_servers() -> None:
        if shared:
            shared[1].shutdown()
            shared[0].stop()

    def servers(name: str) -> tuple[KubeCluster, ColoniesServer]:
        if shared and not args.window:
            return shared[0], shared[1]
        stop_servers()
        shared[:] = [
            KubeCluster(workdir / f"kube-{name}", nodes=nodes).start(),
            ColoniesServer(workdir / f"colonies-{name}").start(),
        ]
        return shared[0], shared[1]

    def namespace(kube: KubeCluster, prefix: str) -> str:
        name = kube.create_namespace(prefix)
        kube.kubectl("-n", name, "create", "serviceaccount", "kubejobs-log-shipper")
        return name

    try:
        for n in sizes:
            kube, colonies = servers(f"{n}-executor")
            result = run_executor(
                colonies, kube, namespace(kube, "bench"), n, workdir, settings,
                replicas=args.replicas, window=args.window,
            )  # fmt: skip
            rate = result["closed_per_second"]
            kube, colonies = servers(f"{n}-floor")
            used = cpu_seconds()
            floor, finished = run_floor_window(
                kube, namespace(kube, "floor"), n, window=args.window
            )
            result["floor_cpu_seconds"] = rounded(cpu_seconds() - used)
            result["floor_seconds"] = floor
            result["floor_finished"] = finished
            result["ratio_to_floor"] = (finished / floor) / rate
            kube, colonies = servers(f"{n}-client-floor")
            used = cpu_seconds()
            client_floor, closed, requests = run_client_floor(
                colonies, kube, namespace(kube, "client-floor"), n, window=args.window
            )
            result["client_floor_cpu_seconds"] = rounded(cpu_seconds() - used)
            result["client_floor_colonies_requests"] = requests
            result["client_floor_seconds"] = client_floor
            result["client_floor_closed"] = closed
            result["ratio_to_client_floor"] = (closed / client_floor) / rate
            print(
                json.dumps(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
                ),
                flush=True,
            )
    finally:
        stop_servers()


if __name__ == "__main__":
    main()
