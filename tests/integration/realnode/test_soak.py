"""Everything at once, under faults: a three-minute chaos soak (benchmarks/soak).

The soak's own code path (benchmarks/soak/harness.py) with a fixed seed: the mix
of benchmarks/soak/mix.py submitted for SECONDS through the real `colonies` CLI
and the Python client, over TLS, to two executor replicas whose Jobs run on
real-node-0 and on the kwok GPU node, through a Kueue queue that preempts;
meanwhile one fault of each kind (benchmarks/soak/faults.py), a few seconds
each. Then every invariant of benchmarks/soak/checks.py must hold for every
process, and the run must have exercised every fault kind and a preemption.

Sized for `make test` (four pytest workers on two cores): about 60 processes.
Every wait is bounded (the drain and clean-up bounds detect a hang, they assert
no speed). This module's ``colonies`` fixture is the TLS server of test_tls.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.soak import report
from benchmarks.soak.checks import coverage, explained, violations
from benchmarks.soak.harness import Servers, Settings, Soak
from tests.integration import test_tls as tls_tests

pytestmark = pytest.mark.integration
colonies = tls_tests.colonies  # a TLS Colonies server of this module's own, which faults restart

SEED = 23
SECONDS = 180.0
SETTINGS = Settings(
    SEED,
    SECONDS,
    per_minute=12.0,
    faults=7,
    fault_seconds=(3.0, 10.0),
    drain_seconds=300.0,
    cleanup_seconds=180.0,
)


def test_a_three_minute_soak_under_every_kind_of_fault_keeps_every_invariant(
    kube: Any, real_node: Any, kueue: Any, s3: Any, colonies: Any, tmp_path: Path
) -> None:
    soak = Soak(Servers(kube, real_node, colonies, kueue, s3), tmp_path, SETTINGS)
    try:
        soak.setup()
        history = soak.run()
    finally:
        soak.close()
    history.save(tmp_path / "history.json")
    found = violations(history)
    print("\n" + report.text(history, found, explained(history)))
    assert not coverage(history), coverage(history)
    assert not found, f"{len(found)} violations (history in {tmp_path}):\n" + "\n".join(
        map(str, found)
    )
