"""The Colonies adapter over TLS: the operator's CA file, and certificate failures named as such.

A local HTTPS server with certificates from the test env's PKI code stands in for
the Colonies server (the real one is in tests/integration/test_tls.py).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubejobs.adapters.colonies import (
    ColoniesCertificateError,
    ColoniesClient,
    ColoniesUnavailable,
    generate_prvkey,
)
from testenv.colonies import make_ca


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        payload = base64.b64encode(json.dumps({"processid": "p1"}).encode()).decode()
        self._answer(json.dumps({"payloadtype": "x", "payload": payload}).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the server's CA, an unrelated CA)"""
    return make_ca(tmp_path_factory.mktemp("ca")), make_ca(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def server(pki: tuple[Path, Path]) -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    directory = pki[0].parent
    context.load_cert_chain(directory / "apiserver.crt", directory / "apiserver.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def _client(port: int, ca_file: str, host: str = "127.0.0.1") -> ColoniesClient:
    return ColoniesClient(host, port, generate_prvkey(), tls=True, timeout=10, ca_file=ca_file)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_operators_ca_verifies_the_server(
    server: int, pki: tuple[Path, Path], host: str
) -> None:
    client = _client(server, str(pki[0]), host)
    client.health()
    assert client.get_process("p1") == {"processid": "p1"}
    assert client.tls_problem == ""


def test_a_wrong_ca_is_named_as_a_certificate_failure(server: int, pki: tuple[Path, Path]) -> None:
    client = _client(server, str(pki[1]))
    with pytest.raises(ColoniesCertificateError) as failed:
        client.get_process("p1")
    message = str(failed.value)
    assert "certificate failed verification" in message
    assert f"127.0.0.1:{server}" in message
    assert str(pki[1]) in message
    assert client.tls_problem == message
    # still an outage to long-lived callers, which keep retrying
    assert isinstance(failed.value, ColoniesUnavailable)


def test_a_success_clears_the_certificate_problem(server: int, pki: tuple[Path, Path]) -> None:
    client = _client(server, str(pki[1]))
    with pytest.raises(ColoniesCertificateError):
        client.health()
    client.ca_file = str(pki[0])  # the operator fixed the CA
    client.health()
    assert client.tls_problem == ""


def test_without_a_ca_file_the_public_cas_are_named(
    server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(ColoniesCertificateError, match="the public CAs"):
        _client(server, "").health()


def test_a_missing_ca_file_is_named(server: int, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.crt"
    with pytest.raises(ColoniesCertificateError, match=f"cannot use the CA file {missing}"):
        _client(server, str(missing)).health()


def test_a_ca_file_without_certificates_is_named(server: int, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ColoniesCertificateError, match=str(garbage)):
        _client(server, str(garbage)).health()


def test_the_ca_file_applies_only_with_tls() -> None:
    client = ColoniesClient("127.0.0.1", 1, generate_prvkey(), tls=False, ca_file="/x/ca.crt")
    assert client.ca_file == ""
    assert client.url.startswith("http://")


@pytest.fixture
def cutting_server() -> Iterator[int]:
    """Accepts TLS connections and closes each at once, as a front end that dies mid-handshake."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)  # the whole ClientHello, so the close is an EOF, not a reset
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    listener.close()


def test_a_connection_cut_mid_handshake_is_an_outage_not_a_certificate_problem(
    cutting_server: int, pki: tuple[Path, Path]
) -> None:
    # the soak: the TLS front end SIGKILLed mid-request made a log shipper give up for good
    client = _client(cutting_server, str(pki[0]))
    with pytest.raises(ColoniesUnavailable) as caught:
        client.get_process("p1")
    assert not isinstance(caught.value, ColoniesCertificateError), caught.value
    assert "unreachable" in str(caught.value)
    assert client.tls_problem == ""
