"""The log shipper as a process, against a real kube-apiserver (kwok-served pods/log) and a Colonies server."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.inpod_support import (
    CriLog,
    InpodExecutor,
    complete_pod,
    create_pod,
    cri_log,
    inpod_executor,
    pod_manifest,
    shipper,
)
from tests.integration.polling import until

pytestmark = pytest.mark.integration


def single_container_pod(ns: Any, colonies: Any, name: str) -> tuple[InpodExecutor, str, CriLog]:
    """A RUNNING process and a pod `name` with one main container whose log the test writes."""
    executor = inpod_executor(colonies)
    pid = executor.running_process()
    log = cri_log(ns, "main", name)
    create_pod(ns, pod_manifest(name, ["main"]))
    return executor, pid, log


def lines_of(prefix: str, start: int, count: int) -> list[str]:
    return [f"{prefix} line {i:06d} {'x' * (i % 50)}" for i in range(start, start + count)]


def test_100k_lines_shipped_in_order_none_lost(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "big")
    program = shipper(
        kube, kube_namespace, "big", ["main"], colonies, executor, pid, tmp_path
    ).start()
    expected: list[str] = []
    for part in range(4):
        chunk = lines_of("main", part * 25_000, 25_000)
        log.write(chunk)
        expected += chunk
    complete_pod(kube_namespace, "big")
    assert program.wait() == 0, program.output()
    assert executor.log_text(pid).splitlines() == expected
    # Batched: far fewer requests than lines.
    assert re.search(r"shipped 100000 lines in (\d+) requests", program.output())


def test_shipper_killed_and_restarted_mid_stream(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "killed")
    expected = lines_of("main", 0, 20_000)
    log.write(expected)
    first = shipper(
        kube, kube_namespace, "killed", ["main"], colonies, executor, pid, tmp_path
    ).start()
    until(lambda: executor.log_entries(pid) >= 2, "some batches delivered")
    first.kill()
    more = lines_of("main", 20_000, 20_000)
    log.write(more)
    expected += more
    second = shipper(
        kube, kube_namespace, "killed", ["main"], colonies, executor, pid, tmp_path
    ).start()
    until(
        lambda: len(executor.log_text(pid).splitlines()) >= 30_000, "the restarted shipper shipping"
    )
    third_part = lines_of("main", 40_000, 5_000)
    log.write(third_part)
    expected += third_part
    complete_pod(kube_namespace, "killed")
    assert second.wait() == 0, second.output()
    assert executor.log_text(pid).splitlines() == expected


def test_colonies_server_down_60s_mid_stream(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "outage")
    program = shipper(
        kube, kube_namespace, "outage", ["main"], colonies, executor, pid, tmp_path
    ).start()
    expected = lines_of("main", 0, 10_000)
    log.write(expected)
    until(lambda: len(executor.log_text(pid).splitlines()) >= 10_000, "first lines delivered")
    colonies.stop()
    try:
        during = lines_of("main", 10_000, 30_000)
        log.write(during)  # written, followed and journaled while the server is away
        expected += during
        state = tmp_path / "state" / "shipper" / "journal"
        until(
            lambda: sum(p.stat().st_size for p in state.glob("*.journal")) > 30_000 * 20,
            "the shipper journaling during the outage",
        )
        time.sleep(60)  # the outage the shipper must ride out (not an assertion)
    finally:
        colonies.start()
    after = lines_of("main", 40_000, 5_000)
    log.write(after)
    expected += after
    complete_pod(kube_namespace, "outage")
    assert program.wait() == 0, program.output()
    assert executor.log_text(pid).splitlines() == expected
    assert "Colonies server unreachable" in program.output()


def test_several_main_containers_tagged_and_in_order(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor = inpod_executor(colonies)
    pid = executor.running_process()
    names = ["trainer", "worker-1", "worker-2"]
    logs = {n: cri_log(kube_namespace, n, "multi") for n in names}
    create_pod(kube_namespace, pod_manifest("multi", names))
    program = shipper(
        kube, kube_namespace, "multi", names, colonies, executor, pid, tmp_path
    ).start()
    expected: dict[str, list[str]] = {n: [] for n in names}
    for part in range(3):
        for n in names:
            chunk = lines_of(n, part * 5_000, 5_000)
            logs[n].write(chunk)
            expected[n] += chunk
    complete_pod(kube_namespace, "multi")
    assert program.wait() == 0, program.output()
    shipped = executor.log_text(pid).splitlines()
    assert len(shipped) == 45_000
    for n in names:
        tag = f"[0/{n}] "
        assert [line[len(tag) :] for line in shipped if line.startswith(tag)] == expected[n]


def test_log_rotation_while_following(kube, kube_namespace, colonies, tmp_path: Path) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "rotating")
    program = shipper(
        kube, kube_namespace, "rotating", ["main"], colonies, executor, pid, tmp_path
    ).start()
    expected: list[str] = []
    for part in range(3):
        chunk = lines_of("main", part * 5_000, 5_000)
        log.write(chunk)
        expected += chunk
        want = len(expected)
        until(
            lambda want=want: len(executor.log_text(pid).splitlines()) >= want,  # type: ignore[misc]
            "caught up",
        )
        log.rotate()
    tail = lines_of("main", 15_000, 1_000)
    log.write(tail)
    expected += tail
    complete_pod(kube_namespace, "rotating")
    assert program.wait() == 0, program.output()
    assert executor.log_text(pid).splitlines() == expected


def test_api_server_restart_mid_stream(kube, kube_namespace, colonies, tmp_path: Path) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "apirestart")
    program = shipper(
        kube, kube_namespace, "apirestart", ["main"], colonies, executor, pid, tmp_path
    ).start()
    expected = lines_of("main", 0, 5_000)
    log.write(expected)
    until(lambda: len(executor.log_text(pid).splitlines()) >= 5_000, "first lines delivered")
    kube.restart_apiserver(down_seconds=3)
    more = lines_of("main", 5_000, 5_000)
    log.write(more)
    expected += more
    complete_pod(kube_namespace, "apirestart")
    assert program.wait() == 0, program.output()
    assert executor.log_text(pid).splitlines() == expected


def test_native_sidecar_exits_by_itself_once_everything_is_shipped(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor = inpod_executor(colonies)
    pid = executor.running_process(
        nodes=2
    )  # several nodes: lines carry the rank even with one container
    log = cri_log(kube_namespace, "main", "native")
    create_pod(kube_namespace, pod_manifest("native", ["main"]))
    program = shipper(
        kube,
        kube_namespace,
        "native",
        ["main"],
        colonies,
        executor,
        pid,
        tmp_path,
        {"KUBEJOBS_SIDECAR_MODE": "native", "KUBEJOBS_NODE_RANK": "1"},
    ).start()
    log.write(["one", "two"])
    complete_pod(kube_namespace, "native")
    # No SIGTERM: once every main container has ended the kubelet no longer restarts a
    # native sidecar, and a signal that came too early would have been lost (PID 1).
    assert program.wait() == 0, program.output()
    assert "shipped 2 lines" in program.output()
    assert executor.log_text(pid).splitlines() == ["[1/main] one", "[1/main] two"]


def test_gives_up_within_the_grace_period_when_colonies_is_away(
    kube, kube_namespace, colonies, tmp_path: Path
) -> None:
    executor, pid, log = single_container_pod(kube_namespace, colonies, "grace")
    program = shipper(
        kube,
        kube_namespace,
        "grace",
        ["main"],
        colonies,
        executor,
        pid,
        tmp_path,
        {"KUBEJOBS_GRACE_SECONDS": "6"},
    ).start()
    log.write(["before"])
    until(lambda: executor.log_text(pid) == "before\n", "first line delivered")
    colonies.stop()
    try:
        log.write(["during"])
        complete_pod(kube_namespace, "grace")
        assert program.proc is not None
        program.proc.send_signal(signal.SIGTERM)
        assert program.wait(timeout=120) == 1
    finally:
        colonies.start()
    assert "termination deadline passed" in program.output()
