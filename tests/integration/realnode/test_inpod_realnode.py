"""The in-pod path under real conditions, on real-node-0: every byte, no stall, failures at their moment.

Programs run in busybox; the log shipper and the data stager from the kubejobs
image. "No stall" is checked without timing anything: these executors give
their pods a termination grace period far longer than any wait below
(`STALL_GRACE`), so a shipper or stager that waited for the kubelet to kill
it would hold its process past the wait and fail the test.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testenv._proc import free_port
from tests.integration.polling import until
from tests.integration.realnode.conftest import job_spec
from tests.integration.realnode.test_executor_realnode import (
    Gate,
    gate,
    pods,
    running_on_real_node,
    sh,
)
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun
from tests.integration.test_inpod_stager import put_file

__all__ = ["gate"]  # re-exported as a fixture of this module

pytestmark = pytest.mark.integration
STALL_GRACE = 900  # seconds; a pod held until the kubelet's kill would outlast every wait here
WAIT = 240.0
BOTH_MODES = pytest.mark.parametrize("kube_version", ["1.34", "1.28"], ids=["native", "container"])


def log_lines(colonies: Any, pid: str) -> list[str]:
    return list(colonies.log_text(pid).splitlines())


def done_ok(run: ExecutorRun, pid: str) -> dict[str, Any]:
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    return process


# --- every byte -------------------------------------------------------------------


@BOTH_MODES
def test_a_last_line_without_newline_is_shipped_from_every_container(
    real_executor: Callable[..., ExecutorRun], colonies: Any, kube_version: str
) -> None:
    run = real_executor(kube_version=kube_version, termination_grace_seconds=STALL_GRACE)
    only = run.submit(sh(run, "printf '%s|' a b"))
    after = run.submit(sh(run, "echo first; printf tail"))
    ranks = run.submit(
        sh(run, 'printf "no-newline-$KUBEJOBS_LOCAL_RANK"', conditions={"processespernode": 2})
    )
    done_ok(run, only)
    done_ok(run, after)
    done_ok(run, ranks)
    assert log_lines(colonies, only) == ["a|b|"]
    assert log_lines(colonies, after) == ["first", "tail"]
    assert sorted(log_lines(colonies, ranks)) == [
        "[0/main-0] no-newline-0",
        "[0/main-1] no-newline-1",
    ]
    run.wait_no_jobs()


def test_lines_past_the_runtimes_16k_split_arrive_whole_and_bad_bytes_visibly_replaced(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor(termination_grace_seconds=STALL_GRACE)
    script = (
        "head -c 300000 /dev/zero | tr '\\0' x; echo; "
        "printf 'caf\\351 ok\\n'; "
        "head -c 40000 /dev/zero | tr '\\0' y"  # the last line: long and without a newline
    )
    pid = run.submit(sh(run, script))
    done_ok(run, pid)
    assert log_lines(colonies, pid) == ["x" * 300_000, "caf\ufffd ok", "y" * 40_000]
    run.wait_no_jobs()


def shipper_processes(process_id: str) -> list[int]:
    """Host pids of the log shipper serving `process_id` (found through its environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"ship-logs" in cmdline and f"COLONIES_PROCESS_ID={process_id}".encode() in environ:
            found.append(int(proc.name))
    return found


def test_shipper_killed_and_colonies_down_lose_no_line_not_even_the_last(
    real_executor: Callable[..., ExecutorRun], colonies: Any, gate: Gate
) -> None:
    run = real_executor(termination_grace_seconds=STALL_GRACE)
    pid = run.submit(
        sh(
            run,
            f"echo first; ({gate.wait_cmd()}) 2>/dev/null; seq 1 2000; printf 'tail without newline'",
        )
    )
    until(lambda: log_lines(colonies, pid) == ["first"], "the first line in the process log", WAIT)
    victims = until(lambda: shipper_processes(pid), "the shipper's process", WAIT)
    for victim in victims:
        os.kill(victim, signal.SIGKILL)  # the kubelet restarts the native sidecar
    until(
        lambda: shipper_processes(pid) and not set(shipper_processes(pid)) & set(victims),
        "a new shipper",
        WAIT,
    )
    gate.open()  # the program prints the rest and ends while the server is down
    colonies.restart(down_seconds=8)
    done_ok(run, pid)
    expected = ["first", *(str(i) for i in range(1, 2001)), "tail without newline"]
    assert log_lines(colonies, pid) == expected
    run.wait_no_jobs()


def test_a_shipper_that_dies_before_shipping_everything_is_never_silent(
    real_executor: Callable[..., ExecutorRun], colonies: Any, gate: Gate
) -> None:
    # Container mode: the shipper is a regular container, so a killed one stays dead.
    run = real_executor(kube_version="1.28", termination_grace_seconds=STALL_GRACE)
    pid = run.submit(
        sh(run, f"echo first; ({gate.wait_cmd()}) 2>/dev/null; echo after the shipper died")
    )
    until(lambda: log_lines(colonies, pid) == ["first"], "the first line in the process log", WAIT)
    victims = until(lambda: shipper_processes(pid), "the shipper's process", WAIT)
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    gate.open()
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    assert (
        "container kubejobs-log-shipper (injected log shipper) exited with code 137"
        in (process["errors"][0])
    )
    lines = log_lines(colonies, pid)
    assert lines[0] == "first" and "after the shipper died" not in lines
    assert lines[-1].startswith("kubejobs: the log shipper of pod ")
    assert lines[-1].endswith(
        "ended with exit code 137 (Error) before it had shipped every line: "
        "this log may be incomplete"
    )
    run.wait_no_jobs()


# --- no stall ---------------------------------------------------------------------


def test_quick_programs_at_once_close_without_waiting_for_the_grace_period(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor(termination_grace_seconds=STALL_GRACE)
    fs = {"mount": "/cfs", "dirs": [{"label": f"/quick/{os.urandom(4).hex()}", "dir": "/in"}]}
    specs = {f"quick-{i}": sh(run, f"echo quick-{i}") for i in range(8)}
    specs.update({f"staged-{i}": sh(run, f"echo staged-{i}", fs=fs) for i in range(2)})
    pids = {marker: run.submit(doc) for marker, doc in specs.items()}
    for marker, pid in pids.items():
        done_ok(run, pid)
        assert log_lines(colonies, pid)[-1] == marker
    run.wait_no_jobs()


def test_a_stager_stuck_on_an_unreachable_s3_stops_when_the_pod_is_deleted(
    real_executor: Callable[..., ExecutorRun],
    real_node: Any,
    kube_namespace: Any,
    colonies: Any,
    s3: Any,
) -> None:
    # The stager retries S3 for minutes; the walltime ends the Job. Both injected containers
    # must then end at once (the stager at SIGTERM, the shipper because main will never
    # run), not when the kubelet kills them after STALL_GRACE.
    run = real_executor(termination_grace_seconds=STALL_GRACE)
    label = f"/stuck/{os.urandom(4).hex()}"
    put_file(colonies, s3, label, "in.txt", b"never downloaded\n")
    unreachable = {**s3.config.env, "AWS_S3_ENDPOINT": f"127.0.0.1:{free_port()}"}
    real_node.prepare_namespace(kube_namespace.name, run.prvkey, unreachable)
    fs = {"mount": "/cfs", "dirs": [{"label": label, "dir": "/in"}]}
    pid = run.submit(sh(run, "echo never runs", fs=fs, conditions={"walltime": 15}))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    assert "walltime=15s" in process["errors"][0]
    until(lambda: not pods(run), "the pod to be gone", WAIT)
    run.wait_no_jobs()


# --- failures at their moment -----------------------------------------------------


def test_a_program_that_cannot_start_fails_naming_the_container_and_the_runtime_message(
    real_executor: Callable[..., ExecutorRun],
) -> None:
    run = real_executor(termination_grace_seconds=STALL_GRACE)
    pid = run.submit(job_spec(run.type, "no-such-program", []))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    error = process["errors"][0]
    assert "container main could not start (StartError)" in error
    assert "no-such-program" in error  # the runtime's own message
    run.wait_no_jobs()


def test_walltime_fails_at_the_deadline_even_when_the_program_ignores_sigterm(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    # The pod outlives the failure by the grace period (the program ignores SIGTERM): the
    # process must fail long before that, and the Job still go once the pod is gone. The
    # pod still being there when the process has failed is what shows the failure did not
    # wait for the grace period (45 s, against about 7 s to the failure).
    grace = 45
    run = real_executor(termination_grace_seconds=grace)
    pid = run.submit(
        sh(run, "trap '' TERM; echo before the deadline; sleep 3600", conditions={"walltime": 5})
    )
    process = run.wait_done(pid, grace / 2)
    assert process["state"] == FAILED
    assert "DeadlineExceeded" in process["errors"][0] and "walltime=5s" in process["errors"][0]
    assert log_lines(colonies, pid) == ["before the deadline"]
    assert pods(run), "the pod is still being stopped when the process fails"
    until(lambda: not pods(run), "the pod to be gone", grace + WAIT)
    run.wait_no_jobs()
    assert not running_on_real_node(run)
