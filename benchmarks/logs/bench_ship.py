"""Log shipping throughput, one container to the Colonies server, three ways in the same run.

1. kubejobs' shipper: `pods/log` (kube-apiserver, kwok serving a CRI log file)
   -> disk journal -> batches -> one signed request per batch.
2. floor: the same lines, already in memory, cut into batches of the same size
   and sent by a bare loop with the same client (no Kubernetes, no journal).
3. reference: one request per 2,000 bytes, the way the reference executor ships.

Every line is checked on the server afterwards (count and order). Run from the
repository root after testenv/install.sh:

    .venv/bin/python benchmarks/logs/bench_ship.py [--lines 200000] [--reference-lines 20000]

`--profile` prints where the shipper's sending thread spent its time (needs
pyinstrument: `.venv/bin/pip install pyinstrument`); the table always says when
the follower had read the whole log (`read done at`).
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
    """CPU time (user + system) so far of this process and every server it started, by program.

    The servers share this machine's cores with the shipper: what they burn is what bounds
    it on a small machine.
    """
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        procs[int(entry)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]))
    mine = {os.getpid()}
    while True:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in mine} - mine
        if not more:
            break
        mine |= more
    out: Counter[str] = Counter()
    for pid in mine:
        _, comm, ticks = procs[pid]
        name = "python" if pid == os.getpid() else comm
        out[GROUPS.get(name, "other servers")] += ticks / tick
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
    work: Path,
    profile: bool = False,
) -> tuple[float, int, bool, float, Counter[str]]:
    pid = running_process(colonies, prvkey)
    client = ColoniesClient(colonies.host, colonies.port, prvkey)
    api = TimedPodLogs(pod)
    shipper = Shipper(
        api,
        client,
        work / "state",
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
        "--profile", action="store_true", help="profile the shipper's sending thread (pyinstrument)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubejobs-bench-"))
    lines = make_lines(args.lines)
    kube = KubeCluster(work / "kube").start()
    colonies = ColoniesServer(work / "colonies").start()
    try:
        _, prvkey = colonies.add_executor("bench-executor", EXECUTOR_TYPE)
        rows: list[tuple[str, int, float, int, bool]] = []
        pod = finished_pod(kube, lines)
        s, r, ok, read_done, shipper_cpu = bench_shipper(
            pod, colonies, prvkey, lines, work, args.profile
        )
        rows.append(("kubejobs shipper (pods/log -> journal -> batches)", len(lines), s, r, ok))
        s, r, ok, floor_cpu = bench_loop(colonies, prvkey, lines, BATCH)
        rows.append((f"floor: bare loop, same {BATCH // 1024} KiB batches", len(lines), s, r, ok))
        s, r, ok, read_cpu = bench_read(pod, lines)
        rows.append(("read only: pods/log once, nothing shipped", len(lines), s, r, ok))
        ref = lines[: args.reference_lines]
        s, r, ok, _ = bench_loop(colonies, prvkey, ref, REFERENCE_CHUNK)
        rows.append((f"reference: one request per {REFERENCE_CHUNK} bytes", len(ref), s, r, ok))
        avg = sum(len(x) + 1 for x in lines) / len(lines)
        print(
            f"\n{len(lines)} lines of {avg:.0f} bytes on average; Colonies server: {colonies.url} "
            f"(Colonies v1.9.7 on PostgreSQL 15); Kubernetes {kube.version} with kwok\n"
        )
        print(
            f"{'run':<52} {'lines':>8} {'seconds':>8} {'requests':>8} {'lines/s':>10}  all there, in order"
        )
        for name, n, secs, reqs, good in rows:
            print(
                f"{name:<52} {n:>8} {secs:>8.2f} {reqs:>8} {n / secs:>10.0f}  {'yes' if good else 'NO'}"
            )
        print(
            f"\nshipper/floor: {rows[1][2] / rows[0][2]:.2f}; the shipper's follower had read the "
            f"whole log {read_done:.2f} s after the start"
        )
        names = sorted(set(shipper_cpu) | set(floor_cpu) | set(read_cpu))
        print(
            f"\nCPU seconds used while each run was timed, {os.cpu_count()} cores\n"
            f"{'run':<10} " + " ".join(f"{n:>18}" for n in [*names, "all"])
        )
        for label, used in (
            ("shipper", shipper_cpu),
            ("floor", floor_cpu),
            ("read only", read_cpu),
        ):
            print(
                f"{label:<10} "
                + " ".join(f"{used[n]:>18.2f}" for n in names)
                + f" {sum(used.values()):>18.2f}"
            )
    finally:
        colonies.shutdown()
        kube.stop()


if __name__ == "__main__":
    main()
