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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from testenv._proc import free_port
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun, executor, spec

pytestmark = pytest.mark.integration
__all__ = ["executor"]  # the fixture


class Relay:
    """Forwards every request to the real server; the first assign reply that carries a
    process is dropped and HTTP 500 sent instead (what the executor saw from the panic)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.dropped: list[str] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None) -> None:
                request = urllib.request.Request(
                    relay.upstream + self.path, data=body, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as reply:
                        status, data = reply.status, reply.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                if body and not relay.dropped and (pid := assigned(body, status, data)):
                    relay.dropped.append(pid)
                    status, data = 500, b""
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
