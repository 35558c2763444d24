"""The chaos soak, by hand: start the test servers, run the mix under faults, check, report.

    .venv/bin/python -m benchmarks.soak.run --seed 1 --duration 1800

Starts the kube control plane with the real node beside the kwok nodes, the
Colonies server behind its TLS front end, Kueue and S3 (testenv; root, after
`testenv/install.sh`), runs the soak (harness.py) and writes to ``--out``:
``history.json`` (the record; ``--check FILE`` checks one again without running),
``report.txt`` and ``soak.svg``. Exit 1 when an invariant is violated or the
run did not exercise a fault of each kind.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.soak import report
from benchmarks.soak.checks import FAULT_KINDS, coverage, explained, violations
from benchmarks.soak.harness import Servers, Settings, Soak
from benchmarks.soak.history import History


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of submissions")
    parser.add_argument("--per-minute", type=float, default=20.0, help="submissions per minute")
    parser.add_argument(
        "--faults",
        type=int,
        default=-1,
        help="how many (default: one a minute, at least 7; 0: none)",
    )
    parser.add_argument("--fault-seconds", default="3,30", help="shortest,longest outage")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS), help="fault kinds (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (a new temp dir)")
    parser.add_argument("--check", type=Path, default=None, help="check a saved history.json")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="kubejobs-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.check:
        history = History.load(args.check)
    else:
        shortest, longest = (float(v) for v in args.fault_seconds.split(","))
        faults = args.faults if args.faults >= 0 else max(7, int(args.duration // 60))
        settings = Settings(
            args.seed, args.duration, args.per_minute, faults, (shortest, longest),
            fault_kinds=tuple(args.kinds.split(",")),
        )  # fmt: skip
        history = run(settings, out)
        history.save(out / "history.json")
    found = violations(history)
    kinds = tuple(sorted({f.kind for f in history.faults}))
    missing = coverage(history, kinds=kinds) if history.faults else []
    text = report.text(history, found, explained(history))
    (out / "report.txt").write_text(text)
    (out / "soak.svg").write_text(report.svg(history))
    print(text, end="")
    print("\n".join(f"not exercised: {m}" for m in missing))
    print(f"written to {out}")
    return 1 if found or missing else 0


def run(settings: Settings, out: Path) -> History:
    from testenv.colonies import ColoniesServer
    from testenv.kube import KubeCluster
    from testenv.kueue import KueueServer
    from testenv.node import RealNode
    from testenv.s3 import S3Server

    started: list[object] = []
    try:
        kube = KubeCluster(out / "kube").start()
        started.append(kube)
        node = RealNode(kube, out / "node").start()
        started.append(node)
        kueue = KueueServer(kube, out / "kueue").start()
        started.append(kueue)
        s3 = S3Server(out / "s3").start()
        started.append(s3)
        colonies = ColoniesServer(out / "colonies", tls=True).start()
        started.append(colonies)
        soak = Soak(Servers(kube, node, colonies, kueue, s3), out / "soak", settings)
        try:
            soak.setup()
            return soak.run()
        finally:
            soak.close()
    finally:
        for server in reversed(started):
            stop = getattr(server, "shutdown", None) or server.stop  # type: ignore[attr-defined]
            stop()


if __name__ == "__main__":
    sys.exit(main())
