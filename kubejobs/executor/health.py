"""/healthz (the loop is alive), /readyz (watches synced, prerequisites in place; the body
says what is missing) and /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubejobs.executor.metrics import Metrics


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        before_scrape: Callable[[], None] = lambda: None,
        not_ready_reasons: Callable[[], list[str]] = lambda: [],
    ) -> None:
        handler = _handler(metrics, alive, ready, before_scrape, not_ready_reasons)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="health", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(
    metrics: Metrics,
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    before_scrape: Callable[[], None],
    not_ready_reasons: Callable[[], list[str]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200 if alive() else 503, b"ok\n" if alive() else b"stalled\n")
            elif self.path == "/readyz":
                if ready():
                    self._answer(200, b"ready\n")
                else:
                    why = "".join(f"{reason}\n" for reason in not_ready_reasons())
                    self._answer(503, f"not ready\n{why}".encode())
            elif self.path == "/metrics":
                before_scrape()
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._answer(404, b"not found\n")

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
