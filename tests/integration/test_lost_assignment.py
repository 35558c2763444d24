"""An assignment whose reply never reaches the executor, against the real Colonies server.

The server assigns in its database before it replies. v1.9.7 then resolves a
workflow's graph, and when the workflow is still being submitted it panics there
and answers HTTP 500 (seen in a parallel run of this suite): the process stays
RUNNING on the executor that never heard of it, forever without maxexectime. A
reply lost with its connection does the same. Here a relay between the executor
and the real server forwards the first assign that brings a process and answers
HTTP 500 in its place; the executor must find the process once the server
answers again, run it once and close it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from testenv._proc import free_port
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun, executor, spec

pytestmark = pytest.mark.integration
HOLD = 4.0  # seconds a reply is held: several of the other workers' assigns
__all__ = ["executor"]  # the fixture


class Relay:
    """Forwards every request to the real server; the first assign reply that carries a
    process is dropped and HTTP 500 sent instead (what the executor saw from the panic).

    With ``hold`` seconds instead, that reply is held that long and then delivered, and the
    first assign request sent meanwhile is answered HTTP 500 without reaching the server (a
    failed assign that assigned nothing): the process is RUNNING on the executor while the
    reply is on its way, and another worker looks for lost assignments then."""

    def __init__(self, upstream: str, hold: float = 0.0) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.hold = hold
        self.dropped: list[str] = []
        self.held: list[str] = []
        self.failed = 0
        self._holding = threading.Event()
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None) -> None:
                if body and relay.hold and relay.fail_now(body):
                    self._reply(500, b"")
                    return
                request = urllib.request.Request(
                    relay.upstream + self.path, data=body, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as reply:
                        status, data = reply.status, reply.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                if body and relay.hold:
                    relay.hold_first(assigned(body, status, data))
                elif body and not relay.dropped and (pid := assigned(body, status, data)):
                    relay.dropped.append(pid)
                    status, data = 500, b""
                self._reply(status, data)

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers["Content-Length"])))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail_now(self, body: bytes) -> bool:
        """Whether to answer this request 500: the first assign sent while a reply is held."""
        if json.loads(body).get("payloadtype") != "assignprocessmsg":
            return False
        with self._lock:
            if self._holding.is_set() and not self.failed:
                self.failed += 1
                return True
        return False

    def hold_first(self, pid: str) -> None:
        """Hold the first reply that carries a process (``pid``) for ``hold`` seconds."""
        with self._lock:
            if not pid or self.held:
                return
            self.held.append(pid)
            self._holding.set()
        time.sleep(self.hold)
        self._holding.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def assigned(body: bytes, status: int, data: bytes) -> str:
    """The id of the process an assign reply carries ('' for anything else)."""
    if json.loads(body).get("payloadtype") != "assignprocessmsg" or status != 200:
        return ""
    payload = json.loads(data).get("payload")
    process = json.loads(base64.b64decode(payload)) if payload else None
    return str(process.get("processid", "")) if isinstance(process, dict) else ""


@pytest.fixture
def relay(colonies: Any) -> Iterator[Relay]:
    r = Relay(f"http://{colonies.host}:{colonies.port}")
    yield r
    r.close()


@pytest.fixture
def holding_relay(colonies: Any) -> Iterator[Relay]:
    r = Relay(f"http://{colonies.host}:{colonies.port}", hold=HOLD)
    yield r
    r.close()


def test_a_process_whose_assign_reply_was_lost_runs_once_and_closes(
    executor: Callable[..., ExecutorRun], colonies: Any, relay: Relay
) -> None:
    run = executor({"kwok.test/run": "1s"}, colonies_host="127.0.0.1", colonies_port=relay.port)
    pid = run.submit(spec(run.type))
    process = run.wait_done(pid)

    assert relay.dropped == [pid]  # the executor never saw this assignment
    assert process["state"] == SUCCESS, process["errors"]
    run.wait_no_jobs()  # the Job is deleted after the close is logged (the close itself
    # reaches the server a moment before its log line)
    log = run.log()
    assert "assign failed: Colonies server answered HTTP 500" in log, log
    assert f"process {pid} is RUNNING on this executor without a Job; applying it" in log, log
    assert log.count(f"process {pid} closed") == 1, log


def test_an_assignment_whose_reply_is_on_its_way_is_started_once_by_its_worker(
    executor: Callable[..., ExecutorRun], colonies: Any, holding_relay: Relay
) -> None:
    # Found by the soak: a worker's recovery listed a workflow step the server had just
    # assigned to another worker of the same executor (v1.9.7 sets its input only before it
    # replies), started it without its input, and the worker's own start then failed it.
    run = executor(
        {"kwok.test/run": "1s"},
        colonies_host="127.0.0.1",
        colonies_port=holding_relay.port,
        assign_timeout=1,
        concurrency=4,
    )
    pids = [run.submit(spec(run.type)) for _ in range(8)]  # the other workers stay busy
    done = [run.wait_done(pid) for pid in pids]

    assert [p["state"] for p in done] == [SUCCESS] * len(pids), [p["errors"] for p in done]
    assert len(holding_relay.held) == 1 and holding_relay.failed == 1
    log = run.log()
    assert "assign failed: Colonies server answered HTTP 500" in log, log
    held = holding_relay.held[0]
    assert f"process {held} is RUNNING on this executor without a Job" not in log, log
    run.wait_no_jobs()
    assert log.count(f"process {held} closed") == 1, log
