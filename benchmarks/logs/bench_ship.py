"""Log shipping throughput, one container to the Colonies server, four ways on the same servers.

1. kubejobs' shipper: `pods/log` (kube-apiserver, kwok serving a CRI log file
   as a kubelet does) -> disk journal -> batches -> one signed request per batch.
2. floor: the same lines, already in memory, cut into batches of the same size
   and sent by a bare loop with the same client (no Kubernetes, no journal).
3. read only: the same `pods/log` read the shipper starts with, nothing shipped:
   what the Kubernetes side alone takes.
4. reference: one request per 2,000 bytes, the way the reference executor ships.

1-3 run `--repeat` rounds, interleaved, and the medians are shown: on a shared
machine a busy moment then hits every kind of run. Every line is checked on the
server (count and order) after every run. CPU seconds of this process and of
each server are shown per kind of run. Run from the repository root after
testenv/install.sh:

    .venv/bin/python benchmarks/logs/bench_ship.py [--lines 200000] [--reference-lines 20000] [--repeat 3]

`--profile` prints where the shipper's sending thread spent its time in the
first round (needs pyinstrument: `.venv/bin/pip install pyinstrument`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu import cpu_seconds as process_cpu_seconds  # noqa: E402
from kubejobs.adapters.colonies import ColoniesClient  # noqa: E402
from kubejobs.adapters.podlogs import PodLogs  # noqa: E402
from kubejobs.inpod.shipper import Shipper, ShipperOptions  # noqa: E402
from testenv.colonies import ColoniesServer  # noqa: E402
from testenv.kube import KubeCluster  # noqa: E402

BATCH = 512 * 1024
REFERENCE_CHUNK = 2000
EXECUTOR_TYPE = "kubejobs-bench"


GROUPS = {
    "python": "bench (python)",
    "kube-apiserver": "kube-apiserver",
    "kwok": "kwok",
    "colonies": "colonies+postgres",
    "postgres": "colonies+postgres",
}


def cpu_seconds() -> Counter[str]:
    """CPU seconds so far of this process and every server it started, grouped (GROUPS)."""
    out: Counter[str] = Counter()
    for name, seconds in process_cpu_seconds().items():
        out[GROUPS.get(name, "other servers")] += seconds
    return out


def make_lines(n: int) -> list[str]:
    return [
        f"step {i:07d} loss={1 / (i + 1):.6f} lr=0.0003 tokens/s=183422 {'#' * (i % 20)}"
        for i in range(n)
    ]


def running_process(colonies: ColoniesServer, prvkey: str) -> str:
    colonies.submit({"funcname": "bench", "conditions": {"executortype": EXECUTOR_TYPE}})
    return str(colonies.assign(timeout=10, prvkey=prvkey)["processid"])


def server_lines(client: ColoniesClient, colony: str, pid: str) -> list[str]:
    out: list[str] = []
    since = 0
    while True:
        logs = client.get_logs(colony, pid, 500, since)
        out.extend(e["message"] for e in logs)
        if len(logs) < 500:
            return "".join(out).splitlines()
        since = int(logs[-1]["timestamp"])


def write_cri(path: Path, lines: list[str]) -> None:
    ns = time.time_ns()
    out = []
    for line in lines:
        ns += 1000
        seconds, nanos = divmod(ns, 1_000_000_000)
        out.append(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanos:09d}Z stdout F {line}\n"
        )
    path.write_text("".join(out), encoding="utf-8")


class TimedStream:
    """A log stream that notes when it was closed (read to its end, or given up)."""

    def __init__(self, stream: Any, ended: list[float]) -> None:
        self.stream = stream
        self.ended = ended

    @property
    def idle(self) -> bool:
        return bool(self.stream.idle)

    def __iter__(self) -> Any:
        return iter(self.stream)

    def __enter__(self) -> TimedStream:
        return self

    def __exit__(self, *args: Any) -> None:
        self.ended.append(time.perf_counter())
        self.stream.__exit__(*args)


class TimedPodLogs:
    """PodLogs whose streams note when they end: when the shipper's follower had read the log."""

    def __init__(self, api: PodLogs) -> None:
        self.api = api
        self.ended: list[float] = []

    def pod(self) -> dict[str, Any]:
        return self.api.pod()

    def stream(self, container: str, **kwargs: Any) -> TimedStream:
        return TimedStream(self.api.stream(container, **kwargs), self.ended)


def finished_pod(kube: KubeCluster, lines: list[str]) -> PodLogs:
    """A pod whose container has ended with `lines` as its log (kwok serves the CRI file)."""
    ns = kube.create_namespace("bench")
    path = Path(kube.set_logs(ns, "main", [], pod="bench", follow=True))
    write_cri(path, lines)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "bench",
            "annotations": {"kwok.test/run": "0s", "kwok.test/start": "0s"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        },
    }
    kube.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(pod))
    while (
        json.loads(kube.kubectl("-n", ns, "get", "pod", "bench", "-o", "json").stdout)[
            "status"
        ].get("phase")
        != "Succeeded"
    ):
        time.sleep(0.1)
    return PodLogs(ns, "bench", str(kube.kubeconfig))


def bench_shipper(
    pod: PodLogs,
    colonies: ColoniesServer,
    prvkey: str,
    lines: list[str],
    state: Path,
    profile: bool = False,
) -> tuple[float, int, bool, float, Counter[str]]:
    pid = running_process(colonies, prvkey)
    client = ColoniesClient(colonies.host, colonies.port, prvkey)
    api = TimedPodLogs(pod)
    shipper = Shipper(
        api,
        client,
        state,
        pid,
        colonies.colony_name,
        first=[],
        containers=["main"],
        options=ShipperOptions(max_batch_bytes=BATCH),
    )
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    cpu = cpu_seconds()
    start = time.perf_counter()
    result = shipper.run()
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(show_all=False))
    ok = result.complete and server_lines(client, colonies.colony_name, pid) == lines
    read_done = max(api.ended, default=start) - start
    return seconds, result.requests, ok, read_done, cpu


def bench_read(pod: PodLogs, lines: list[str]) -> tuple[float, int, bool, Counter[str]]:
    """Only the read: the whole log once through `pods/log`, as the follower asks for it."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    got: list[bytes] = []
    with pod.stream("main", follow=False) as stream:
        for chunk in stream:
            got.extend(chunk)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    ok = [line.split(b" ", 1)[1].decode() for line in got] == lines
    return seconds, 1, ok, cpu


def bench_loop(
    colonies: ColoniesServer, prvkey: str, lines: list[str], chunk: int
) -> tuple[float, int, bool, Counter[str]]:
    """A bare loop: lines joined and cut at `chunk` bytes (on line ends), one add_log per piece."""
    pid = running_process(colonies, prvkey)
    client = ColoniesClient(colonies.host, colonies.port, prvkey)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > chunk and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line + "\n")
        size += len(line) + 1
    if current:
        pieces.append("".join(current))
    cpu = cpu_seconds()
    start = time.perf_counter()
    for piece in pieces:
        client.add_log(pid, piece)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    return seconds, len(pieces), server_lines(client, colonies.colony_name, pid) == lines, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument(
        "--reference-lines",
        type=int,
        default=20_000,
        help="lines for the one-request-per-2,000-bytes run (it is slow)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of shipper, floor and read only, one after the other (medians are shown)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the shipper's sending thread (pyinstrument)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubejobs-bench-"))
    lines = make_lines(args.lines)
    kube = KubeCluster(work / "kube").start()
    colonies = ColoniesServer(work / "colonies").start()
    try:
        _, prvkey = colonies.add_executor("bench-executor", EXECUTOR_TYPE)
        pod = finished_pod(kube, lines)
        names = (
            "kubejobs shipper (pods/log -> journal -> batches)",
            f"floor: bare loop, same {BATCH // 1024} KiB batches",
            "read only: pods/log once, nothing shipped",
        )
        # Rounds interleave the runs, so that a busy moment on a shared machine hits all three.
        runs: dict[str, list[tuple[float, int, bool, Counter[str]]]] = {n: [] for n in names}
        read_done: list[float] = []
        for i in range(args.repeat):
            s, r, ok, done, cpu = bench_shipper(
                pod, colonies, prvkey, lines, work / f"state-{i}", args.profile and i == 0
            )
            runs[names[0]].append((s, r, ok, cpu))
            read_done.append(done)
            runs[names[1]].append(bench_loop(colonies, prvkey, lines, BATCH))
            runs[names[2]].append(bench_read(pod, lines))
            print(
                f"round {i + 1}: shipper {runs[names[0]][-1][0]:.2f} s (log read after {done:.2f} s),"
                f" floor {runs[names[1]][-1][0]:.2f} s, read only {runs[names[2]][-1][0]:.2f} s,"
                f" shipper/floor {runs[names[1]][-1][0] / runs[names[0]][-1][0]:.2f}"
            )
        ref = lines[: args.reference_lines]
        reference = bench_loop(colonies, prvkey, ref, REFERENCE_CHUNK)
        avg = sum(len(x) + 1 for x in lines) / len(lines)
        print(
            f"\n{len(lines)} lines of {avg:.0f} bytes on average; Colonies server: {colonies.url} "
            f"(Colonies v1.9.7 on PostgreSQL 15); Kubernetes {kube.version} with kwok; "
            f"median of {args.repeat} rounds\n"
        )
        print(
            f"{'run':<52} {'lines':>8} {'seconds':>8} {'requests':>8} {'lines/s':>10}  all there, in order"
        )
        rows = [(n, len(lines), *_median(runs[n])) for n in names]
        rows.append(
            (f"reference: one request per {REFERENCE_CHUNK} bytes", len(ref), *reference[:3])
        )
        for name, n, secs, reqs, good in rows:
            print(
                f"{name:<52} {n:>8} {secs:>8.2f} {reqs:>8} {n / secs:>10.0f}  {'yes' if good else 'NO'}"
            )
        print(f"\nshipper/floor: {rows[1][2] / rows[0][2]:.2f} (medians)")
        cpu = {n: sum((r[3] for r in runs[n]), Counter[str]()) for n in names}
        groups = sorted(set().union(*cpu.values()))
        print(
            f"\nCPU seconds used while a run was timed (mean of the rounds), {os.cpu_count()} cores\n"
            f"{'run':<10} " + " ".join(f"{g:>18}" for g in [*groups, "all"])
        )
        for label, name in zip(("shipper", "floor", "read only"), names, strict=True):
            used = cpu[name]
            print(
                f"{label:<10} "
                + " ".join(f"{used[g] / args.repeat:>18.2f}" for g in groups)
                + f" {sum(used.values()) / args.repeat:>18.2f}"
            )
    finally:
        colonies.shutdown()
        kube.stop()


def _median(results: list[tuple[float, int, bool, Counter[str]]]) -> tuple[float, int, bool]:
    """The median run's seconds and requests; whether every run had every line, in order."""
    ordered = sorted(results, key=lambda r: r[0])
    seconds, requests, _, _ = ordered[len(ordered) // 2]
    return seconds, requests, all(r[2] for r in results)


if __name__ == "__main__":
    main()
