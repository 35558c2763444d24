"""The whole path with real containers: Colonies server -> `kubejobs executor` -> Job on real-node-0.

The program runs in busybox (localhost/busybox:1); the log shipper and the
data stager run from the kubejobs image built by images/build.sh. Waits are
bounded by generous limits; nothing asserts on durations. Where a test must
act while a pod is still running, the program waits for a gate the test opens
(an HTTP server on this machine the pod reaches on testenv.podnet.HOST_IP), never
for time.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv._proc import free_port
from testenv.node import NODE_NAME
from testenv.podnet import HOST_IP
from tests.integration.polling import until
from tests.integration.realnode.conftest import job_spec
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun
from tests.integration.test_inpod_stager import latest, put_file

pytestmark = pytest.mark.integration
WAIT = 240.0


class Gate:
    """An HTTP server on this machine that answers only once opened; pods poll it with wget
    on HOST_IP (the host's address on the pod network)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: http.server.HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST_IP}:{self.port}/"

    def wait_cmd(self) -> str:
        url = self.url
        return f"until wget -q -O /dev/null {url}; do sleep 0.2; done"

    def open(self) -> None:
        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer((HOST_IP, self.port), Ok)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.close()


def sh(run: ExecutorRun, script: str, **extra: Any) -> dict[str, Any]:
    return job_spec(run.type, "sh", ["-c", script], **extra)


def pods(run: ExecutorRun) -> list[dict[str, Any]]:
    return list(run.namespace.get_json("pods")["items"])


def running_on_real_node(run: ExecutorRun, count: int = 1) -> bool:
    found = [
        p
        for p in pods(run)
        if p["spec"].get("nodeName") == NODE_NAME and p["status"].get("phase") == "Running"
    ]
    return len(found) >= count


def scheduled_to_real_node(run: ExecutorRun) -> int:
    """Pods of this namespace the scheduler put on the real node (its events outlive the pods)."""
    out = run.namespace.kubectl("get", "events", "-o", "json").stdout
    return sum(
        1
        for e in json.loads(out)["items"]
        if e.get("reason") == "Scheduled" and e.get("message", "").endswith(f" to {NODE_NAME}")
    )


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


# --- outcomes -------------------------------------------------------------------


def test_success_output_from_the_termination_message(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    pid = run.submit(sh(run, "echo hello from a real pod; printf answer=42 >/dev/termination-log"))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    assert process["out"] == ["answer=42"]
    assert colonies.log_text(pid).splitlines() == ["hello from a real pod"]
    assert scheduled_to_real_node(run) == 1
    run.wait_no_jobs()


def test_host_network_runs_in_the_nodes_network_namespace(
    real_executor: Callable[..., ExecutorRun], real_node: Any, colonies: Any
) -> None:
    """The host_network setting (for clusters whose pods need the node's network): the
    program sees the node's address, not one of the pod range, and the injected
    containers still reach the API server and Colonies (the process log arrives)."""
    run = real_executor(host_network="true")
    pid = run.submit(sh(run, "ip -4 -o addr show dev eth0"))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    log = colonies.log_text(pid)
    assert f" {real_node.net.node_ip}/30 " in log, log
    run.wait_no_jobs()


def test_exit_code_3_names_the_container_and_the_code(
    real_executor: Callable[..., ExecutorRun],
) -> None:
    run = real_executor()
    pid = run.submit(sh(run, "echo about to fail; exit 3"))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    assert "container main exited with code 3 (Error)" in process["errors"][0]
    run.wait_no_jobs()


def test_over_the_memory_limit_is_oom_killed(real_executor: Callable[..., ExecutorRun]) -> None:
    run = real_executor()
    grow = 'x=0123456789abcdef; while :; do x="$x$x"; done'
    pid = run.submit(sh(run, grow, conditions={"mem": "32Mi"}))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    assert "container main exited with code 137 (OOMKilled)" in process["errors"][0]
    run.wait_no_jobs()


def test_walltime_fails_with_deadline_exceeded(real_executor: Callable[..., ExecutorRun]) -> None:
    run = real_executor()
    pid = run.submit(sh(run, "sleep 3600", conditions={"walltime": 4}))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    assert "DeadlineExceeded" in process["errors"][0] and "walltime=4s" in process["errors"][0]
    run.wait_no_jobs()


def test_every_line_reaches_the_process_log_in_order_once(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    pid = run.submit(sh(run, "seq 1 100000; echo the-last-line-before-exit"))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    lines = colonies.log_text(pid).splitlines()
    expected = [str(i) for i in range(1, 100_001)] + ["the-last-line-before-exit"]
    if lines != expected:
        got = set(lines)
        missing = [i for i, line in enumerate(expected) if line not in got]
        entries = colonies.get_logs(pid, 500, 0)
        raise AssertionError(
            f"{len(lines)} lines of {len(expected)}; {len(missing)} missing, first {missing[:5]}, "
            f"last {missing[-5:]}; {len(entries)} entries, sizes {[len(e['message']) for e in entries][:40]}"
            f"\nexecutor log:\n{run.log()[-3000:]}"
        )
    run.wait_no_jobs()


# --- data ----------------------------------------------------------------------


def test_stager_pulls_a_snapshot_and_a_dir_and_results_sync_back(
    real_executor: Callable[..., ExecutorRun], colonies: Any, s3: Any
) -> None:
    run = real_executor()
    base = f"/realnode/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, f"{base}/snap", "x.txt", b"snapshot v1\n")
    snapshot = colonies.create_snapshot(f"{base}/snap", f"snap-{uuid.uuid4().hex[:6]}")
    put_file(colonies, s3, f"{base}/snap", "x.txt", b"snapshot v2, after the snapshot\n")
    put_file(colonies, s3, f"{base}/data", "in.txt", b"hello cfs\n")
    fs = {
        "mount": "/cfs",
        "snapshots": [
            {
                "snapshotid": snapshot["snapshotid"],
                "label": f"{base}/snap",
                "dir": "/snap",
                "keepfiles": False,
                "keepsnapshot": True,
            }
        ],
        "dirs": [
            {
                "label": f"{base}/data",
                "dir": "/data",
                "keepfiles": False,
                "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}},
            }
        ],
    }
    script = (
        "cat /cfs/snap/x.txt /cfs/data/in.txt && "
        "tr a-z A-Z </cfs/data/in.txt >/cfs/data/out.txt && mkdir /cfs/data/sub && "
        "echo nested >/cfs/data/sub/n.txt"
    )
    pid = run.submit(sh(run, script, fs=fs))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    log = colonies.log_text(pid).splitlines()
    assert "snapshot v1" in log and "hello cfs" in log  # the snapshot's version, not the latest
    out = latest(colonies, f"{base}/data", "out.txt")
    assert out["checksum"] == hashlib.sha256(b"HELLO CFS\n").hexdigest()
    body = s3.client().get_object(Bucket=s3.config.bucket, Key=out["ref"]["s3object"]["object"])
    assert body["Body"].read() == b"HELLO CFS\n"
    nested = latest(colonies, f"{base}/data/sub", "n.txt")
    assert nested["checksum"] == hashlib.sha256(b"nested\n").hexdigest()
    run.wait_no_jobs()


def test_two_nodes_two_processes_each_know_their_ranks(
    real_executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = real_executor()
    script = (
        "r=$((KUBEJOBS_NODE_RANK * KUBEJOBS_LOCAL_WORLD_SIZE + KUBEJOBS_LOCAL_RANK)); "
        'echo "rank=$r world=$KUBEJOBS_WORLD_SIZE node=$KUBEJOBS_NODE_RANK local=$KUBEJOBS_LOCAL_RANK"; '
        'printf "rank=$r" >/dev/termination-log'
    )
    pid = run.submit(sh(run, script, conditions={"nodes": 2, "processespernode": 2}))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    assert process["out"] == ["rank=0", "rank=1", "rank=2", "rank=3"]
    # the shipper tags each line with node rank and container when a process has several
    assert sorted(colonies.log_text(pid).splitlines()) == [
        "[0/main-0] rank=0 world=4 node=0 local=0",
        "[0/main-1] rank=1 world=4 node=0 local=1",
        "[1/main-0] rank=2 world=4 node=1 local=0",
        "[1/main-1] rank=3 world=4 node=1 local=1",
    ]
    assert scheduled_to_real_node(run) == 2
    run.wait_no_jobs()


# --- faults ---------------------------------------------------------------------


def test_maxexectime_takeback_removes_the_running_pod(
    real_executor: Callable[..., ExecutorRun],
) -> None:
    run = real_executor()
    marker = str(700_000 + int.from_bytes(os.urandom(2), "big"))
    pid = run.submit(
        sh(run, f"trap 'exit 143' TERM; sleep {marker} & wait", maxexectime=6, maxretries=0)
    )
    until(lambda: running_on_real_node(run), "the pod running on the real node", WAIT)
    until(lambda: processes_with(f"sleep\0{marker}"), "the program's process", WAIT)
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED  # by the server, not the executor
    until(lambda: not pods(run), "the pod to be gone", WAIT)
    run.wait_no_jobs()
    assert not processes_with(f"sleep\0{marker}")
    assert 'kubejobs_processes_total{outcome="taken_back"} 1.0' in run.metrics()


def test_executor_sigkill_while_a_real_pod_runs_closes_once(
    real_executor: Callable[..., ExecutorRun], gate: Gate
) -> None:
    run = real_executor()
    pid = run.submit(
        sh(run, f"echo started; {gate.wait_cmd()}; printf done-once >/dev/termination-log")
    )
    until(lambda: running_on_real_node(run), "the pod running on the real node", WAIT)
    run.stop(signal.SIGKILL)
    run.start()
    gate.open()  # only now may the program finish: the first executor never saw it end
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    assert process["out"] == ["done-once"]
    assert process["retries"] == 0
    run.wait_no_jobs()
    # the restarted executor closed it, once
    assert 'kubejobs_processes_total{outcome="succeeded"} 1.0' in run.metrics()
