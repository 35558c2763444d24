"""Specs validated, rendered and injected per second over examples/, in one process.

Reproduce: .venv/bin/python benchmarks/render/bench_render.py [--seconds 3] [--repeat 3]
Prints two figures: without and with the offline Kubernetes schema check (in-process
jsonschema against kubernetes-validate's strict schemas; kubeconform is a separate
process per call and is not what a long-running executor would use).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from kubejobs.check import check_manifests
from kubejobs.render import Renderer, RenderSettings, default_process_id
from kubejobs.spec import load_documents, validate_spec

ROOT = Path(__file__).resolve().parents[2]


def load_specs() -> list[dict[str, Any]]:
    paths = sorted(str(p) for p in (ROOT / "examples").iterdir() if p.suffix in (".json", ".yaml"))
    documents, problems = load_documents(paths)
    assert not problems, problems
    specs: list[dict[str, Any]] = []
    for doc in documents:
        specs += [data for _, data in doc.specs()]
    return specs


def run(specs: list[dict[str, Any]], seconds: float, check: bool) -> tuple[int, float]:
    renderer = Renderer(RenderSettings())
    ids = [default_process_id(s) for s in specs]
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for spec, pid in zip(specs, ids, strict=True):
            # Validate from the raw document each time, as the executor does per process.
            manifests = renderer.render(validate_spec(json.loads(json.dumps(spec))), pid)
            if check:
                problems = check_manifests(manifests, "1.34", use_kubeconform=False)
                assert not problems, problems
            done += 1
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    specs = load_specs()
    run(specs, 0.5, check=True)  # warm caches (schemas, templates) before measuring
    print(f"{len(specs)} example specs, one process, best of {args.repeat} x {args.seconds:.0f} s")
    for check in (False, True):
        # Best of N: on a shared VM, slower runs measure the neighbours, not the code.
        done, elapsed = max(
            (run(specs, args.seconds, check) for _ in range(args.repeat)), key=lambda r: r[0] / r[1]
        )
        label = (
            "validate + render + inject + Kubernetes schema check"
            if check
            else "validate + render + inject"
        )
        print(f"{label:55s} {done / elapsed:8.0f} specs/s  ({done} in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
