"""Kueue preemption with real containers on real-node-0: the preempted process runs again and succeeds.

A low-priority process runs alone in a ClusterQueue of one cpu; a high-priority
one arrives. Kueue evicts the low one (suspends its Job; the Job controller
deletes its pod without counting a failure), admits the high one, then the low
one again. Both must close SUCCESS, and the low one's log must hold both
attempts, marked, each line of each attempt exactly once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.polling import until
from tests.integration.realnode.test_executor_realnode import sh
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun

pytestmark = pytest.mark.integration
WAIT = 300.0
TICKS = 30
# Each attempt names itself with a random id (host-network pods share the node's hostname);
# busybox sh as PID 1 would ignore SIGTERM, so the trap lets a preempted attempt end at once.
LOW = (
    "id=$(cut -c1-8 /proc/sys/kernel/random/uuid); trap 'exit 143' TERM; "
    f'for i in $(seq 1 {TICKS}); do echo "attempt-$id tick $i"; sleep 0.5; done'
)
TICK = re.compile(r"^attempt-([0-9a-f]{8}) tick (\d+)$")


def test_a_preempted_process_runs_again_and_both_succeed_with_marked_logs(
    real_executor: Callable[..., ExecutorRun],
    kueue: Any,
    kube_namespace: Any,
    colonies: Any,
) -> None:
    suffix = os.urandom(3).hex()
    low_class = kueue.create_priority_class(f"kj-low-{suffix}", 10)
    high_class = kueue.create_priority_class(f"kj-high-{suffix}", 1000)
    queues = kueue.create_queues(kube_namespace.name, cpu="1", memory="8Gi", preemption=True)
    run = real_executor(
        queue_name=queues.local_queue,
        workload_priority_classes=json.dumps({low_class: 0, high_class: 10}),
    )
    low = run.submit(sh(run, LOW, conditions={"cpu": "600m"}, priority=0))
    until(lambda: "tick 3\n" in colonies.log_text(low), "the low-priority process running", WAIT)
    high = run.submit(sh(run, "echo high-priority-done", conditions={"cpu": "600m"}, priority=10))

    for pid in (high, low):
        process = run.wait_done(pid, WAIT)
        assert process["state"] == SUCCESS, process["errors"]
    high_log = colonies.log_text(high)
    assert "high-priority-done" in high_log and "kubejobs: admitted by Kueue" in high_log

    log = colonies.log_text(low)
    lines = log.splitlines()
    stopped = [i for i, line in enumerate(lines) if "Kueue stopped run 1 (Preempted: " in line]
    assert len(stopped) == 1, log
    assert any("kubejobs: admitted by Kueue" in line and "(run 2)" in line for line in lines), log
    attempts: dict[str, list[int]] = {}
    for line in lines:
        if m := TICK.match(line):
            attempts.setdefault(m.group(1), []).append(int(m.group(2)))
    assert len(attempts) == 2, attempts
    first, second = attempts.values()
    # every line of each attempt once, in order: the first cut short, the second whole
    assert first == list(range(1, len(first) + 1)) and 3 <= len(first) < TICKS, first
    assert second == list(range(1, TICKS + 1)), second
    run.wait_no_jobs()
    kueue.delete_queues(queues)
    for name in (low_class, high_class):
        kueue.delete_priority_class(name)
