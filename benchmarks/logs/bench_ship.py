"""Log shipping throughput, one container to the Colonies server, three ways in the same run.

1. kubejobs' shipper: `pods/log` (kube-apiserver, kwok serving a CRI log file)
   -> disk journal -> batches -> one signed request per batch.
2. floor: the same lines, already in memory, cut into batches of the same size
   and sent by a bare loop with the same client (no Kubernetes, no journal).
3. reference: one request per 2,000 bytes, the way the reference executor ships.

Every line is checked on the server afterwards (count and order). Run from the
repository root after testenv/install.sh:

    .venv/bin/python benchmarks/logs/bench_ship.py [--lines 200000] [--reference-lines 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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


def bench_shipper(
    kube: KubeCluster, colonies: ColoniesServer, prvkey: str, lines: list[str], work: Path
) -> tuple[float, int, bool]:
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
    pid = running_process(colonies, prvkey)
    client = ColoniesClient(colonies.host, colonies.port, prvkey)
    shipper = Shipper(
        PodLogs(ns, "bench", str(kube.kubeconfig)),
        client,
        work / "state",
        pid,
        colonies.colony_name,
        first=[],
        containers=["main"],
        options=ShipperOptions(max_batch_bytes=BATCH),
    )
    start = time.perf_counter()
    result = shipper.run()
    seconds = time.perf_counter() - start
    ok = result.complete and server_lines(client, colonies.colony_name, pid) == lines
    return seconds, result.requests, ok


def bench_loop(
    colonies: ColoniesServer, prvkey: str, lines: list[str], chunk: int
) -> tuple[float, int, bool]:
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
    start = time.perf_counter()
    for piece in pieces:
        client.add_log(pid, piece)
    seconds = time.perf_counter() - start
    return seconds, len(pieces), server_lines(client, colonies.colony_name, pid) == lines


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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubejobs-bench-"))
    lines = make_lines(args.lines)
    kube = KubeCluster(work / "kube").start()
    colonies = ColoniesServer(work / "colonies").start()
    try:
        _, prvkey = colonies.add_executor("bench-executor", EXECUTOR_TYPE)
        rows: list[tuple[str, int, float, int, bool]] = []
        s, r, ok = bench_shipper(kube, colonies, prvkey, lines, work)
        rows.append(("kubejobs shipper (pods/log -> journal -> batches)", len(lines), s, r, ok))
        s, r, ok = bench_loop(colonies, prvkey, lines, BATCH)
        rows.append((f"floor: bare loop, same {BATCH // 1024} KiB batches", len(lines), s, r, ok))
        ref = lines[: args.reference_lines]
        s, r, ok = bench_loop(colonies, prvkey, ref, REFERENCE_CHUNK)
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
    finally:
        colonies.shutdown()
        kube.stop()


if __name__ == "__main__":
    main()
