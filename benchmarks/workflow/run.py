"""A chain of one-second steps as one workflow on the real node: total time against the steps.

    .venv/bin/python -m benchmarks.workflow.run --steps 10 --repeats 1

Starts the test servers as benchmarks/realnode/run.py does (control plane, the
real Colonies server, the real node: containerd + kubelet) and one `kubejobs
executor` subprocess whose Jobs run on real-node-0. Then, --repeats times:
writes a workflow file in the CLI's form (a JSON array of function specs, step
i+1 with `conditions.dependencies: [step i]`, each a busybox `sh -c` whose
program sleeps --seconds) and submits it with the real CLI, `colonies workflow
submit --spec FILE`; reads the process ids back with `colonies workflow get
--json` and waits for every step to close.

Figures, from the server's times of the steps' processes:

- total: the first step's `submissiontime` to the last step's `endtime`;
- steps: the sum over the steps of `starttime` to `endtime` (assignment to
  close: pod creation, start, the program, shipping, close);
- program: the sum of the programs' own run times (the node's boot-time clock,
  /proc/uptime, read by the program before and after its sleep, written to
  `$KUBEJOBS_OUTPUT_FILE` and so the step's output);
- per-step overhead: (total - steps x seconds) / steps;
- handover: per step after the first, the parent's `endtime` to the child's
  `starttime` (the server releasing the child and the executor assigning it).

Prints JSON lines, then a markdown table. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.realnode.run import (
    FAILED,
    SUCCESS,
    emit,
    executor,
    spec,
    summary,
    target,
    ts,
)
from testenv.colonies import ColoniesServer
from testenv.kube import KubeCluster
from testenv.node import RealNode


def program(seconds: float) -> str:
    """Sleep, with the program's own start and end (boot-time clock) as its output."""
    return (
        "s=$(cut -d' ' -f1 /proc/uptime); "
        f"sleep {seconds}; "
        "e=$(cut -d' ' -f1 /proc/uptime); "
        'printf \'{"start":%s,"end":%s}\' "$s" "$e" >"$KUBEJOBS_OUTPUT_FILE"'
    )


def chain(executor_type: str, steps: int, seconds: float) -> list[dict[str, Any]]:
    """The CLI's workflow form: step-1 .. step-N, each depending on the one before."""
    docs = []
    for i in range(1, steps + 1):
        doc = spec(executor_type, ["-c", program(seconds)])
        doc["nodename"] = f"step-{i}"
        if i > 1:
            doc["conditions"]["dependencies"] = [f"step-{i - 1}"]
        docs.append(doc)
    return docs


def run_chain(
    colonies: ColoniesServer, prvkey: str, docs: list[dict[str, Any]], workdir: Path
) -> list[dict[str, Any]]:
    """Submit with the real CLI; the closed processes in chain order."""
    spec_file = workdir / f"chain-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(docs, indent=2))
    submitted = colonies.cli("workflow", "submit", "--spec", str(spec_file), prvkey=prvkey)
    found = [w for w in submitted.stderr.split() if w.startswith("WorkflowID=")]
    if not found:
        raise RuntimeError(f"no WorkflowID in: {submitted.stderr}")
    workflow_id = found[0].removeprefix("WorkflowID=")
    out = colonies.cli(
        "workflow", "get", "--workflowid", workflow_id, "--json", prvkey=prvkey
    ).stdout
    graph = json.JSONDecoder().raw_decode(out)[0]  # v1.9.7 prints " <nil>" after it
    label = {node["id"]: node["data"]["label"] for node in graph["nodes"]}
    ids = {label[pid]: pid for pid in graph["processids"]}
    processes = [colonies.wait_state(ids[doc["nodename"]], (SUCCESS, FAILED), 600) for doc in docs]
    for p in processes:
        if p["state"] != SUCCESS:
            raise RuntimeError(f"step {p['processid']} did not succeed: {p.get('errors')}")
    return processes


def figures(processes: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    steps = len(processes)
    total = max(ts(p["endtime"]) for p in processes) - min(
        ts(p["submissiontime"]) for p in processes
    )
    runs = [ts(p["endtime"]) - ts(p["starttime"]) for p in processes]
    own = [p["out"][0]["end"] - p["out"][0]["start"] for p in processes]
    handover = [
        ts(child["starttime"]) - ts(parent["endtime"])
        for parent, child in itertools.pairwise(processes)
    ]
    return {
        "steps": steps,
        "total": round(total, 2),
        "sum_steps": round(sum(runs), 2),
        "sum_program": round(sum(own), 2),
        "per_step_overhead": round((total - steps * seconds) / steps, 2),
        "step_run": summary(runs),
        "handover": summary(handover) if handover else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps in the chain")
    parser.add_argument("--seconds", type=float, default=1.0, help="each program's sleep")
    parser.add_argument("--repeats", type=int, default=1, help="chains, one after the other")
    parser.add_argument("--kube-version", default="1.34", help="the executor's kube_version")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubejobs-bench-workflow-"))
    t0 = time.monotonic()
    kube = KubeCluster(workdir / "kube").start()
    colonies = ColoniesServer(workdir / "colonies").start()
    node = RealNode(kube, workdir / "node")
    results: list[dict[str, Any]] = []
    try:
        node.start()
        emit(environment_seconds=round(time.monotonic() - t0, 1))
        t = target(node, kube, colonies, "bench-chain")
        with executor(node, kube, colonies, t, workdir, args.kube_version):
            for _ in range(args.repeats):
                processes = run_chain(
                    colonies, t.prvkey, chain(t.executor_type, args.steps, args.seconds), workdir
                )
                results.append(figures(processes, args.seconds))
                emit(chain=results[-1])
    finally:
        node.stop()
        colonies.shutdown()
        kube.stop()
    median = statistics.median
    print()
    print(f"| chain of {args.steps} x {args.seconds:g} s (n = {len(results)}, median) | value |")
    print("|---|---|")
    rows = (
        ("total: first submit to last end", "total"),
        ("sum of the steps (starttime to endtime)", "sum_steps"),
        ("sum of the programs' own run times", "sum_program"),
        (f"per-step overhead: (total - {args.steps * args.seconds:g} s) / {args.steps}", "per_step_overhead"),
    )  # fmt: skip
    for text, key in rows:
        print(f"| {text} | {median(r[key] for r in results):.2f} s |")
    if results[0]["handover"]:
        print(
            "| handover, parent's endtime to child's starttime (p50) | "
            f"{median(r['handover']['p50'] for r in results):.2f} s |"
        )


if __name__ == "__main__":
    main()
