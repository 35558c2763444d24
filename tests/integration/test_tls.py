"""TLS to the Colonies server with the operator's CA: the real server behind TLS (a test CA's
certificate, testenv/colonies.py), the executor verifying it with colonies_ca_file, and a user
submitting through the real `colonies` CLI (which trusts the CA through SSL_CERT_FILE).

The module's own ``colonies`` fixture replaces the session's plain-HTTP server for the
executor fixture of test_executor_e2e.py, so the executor runs exactly as elsewhere.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testenv.colonies import ColoniesServer, make_ca
from tests.integration import test_executor_e2e as e2e
from tests.integration.conftest import _register
from tests.integration.polling import until
from tests.integration.test_executor_e2e import SUCCESS, WAITING, ExecutorRun, spec

pytestmark = pytest.mark.integration
executor = e2e.executor  # the executor subprocess fixture, against this module's server


@pytest.fixture(scope="module")
def colonies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColoniesServer]:
    server = ColoniesServer(tmp_path_factory.mktemp("colonies-tls"), tls=True)
    assert server.tls_proxy is not None
    _register(server.service, server.tls_proxy)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the server's certificate."""
    return make_ca(tmp_path_factory.mktemp("other-ca"))


def test_the_server_speaks_only_tls(colonies: ColoniesServer) -> None:
    assert colonies.url.startswith("https://")
    with pytest.raises(OSError):  # plain HTTP to the TLS port gets no answer
        urllib.request.urlopen(f"http://{colonies.host}:{colonies.port}/health", timeout=10)


def test_a_user_submits_with_the_cli_and_the_executor_runs_it_over_tls(
    executor: Callable[..., ExecutorRun], colonies: ColoniesServer, tmp_path: Path
) -> None:
    assert colonies.ca_file is not None
    run = executor(colonies_tls="true", colonies_ca_file=str(colonies.ca_file))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(
        json.dumps(spec(run.type, conditions={"colonyname": colonies.colony_name}))
    )
    submitted = colonies.cli("function", "submit", "--spec", str(spec_file), "--wait")
    found = [w for w in submitted.stderr.split() if w.startswith("ProcessId=")]
    assert found, submitted.stderr
    pid = found[0].removeprefix("ProcessId=")
    assert run.wait_done(pid)["state"] == SUCCESS
    shown = colonies.cli("process", "get", "-p", pid, "--json")
    assert json.JSONDecoder().raw_decode(shown.stdout)[0]["state"] == SUCCESS
    assert "certificate" not in run.log()


def test_a_wrong_ca_makes_the_executor_not_ready_and_names_the_certificate(
    executor: Callable[..., ExecutorRun], colonies: ColoniesServer, other_ca: Path
) -> None:
    run = executor(colonies_tls="true", colonies_ca_file=str(other_ca), wait_ready=False)
    pid = run.submit(spec(run.type))
    body = until(
        lambda: (r := run.readyz())[0] == 503 and "certificate" in r[1] and r[1],
        "/readyz naming the certificate",
    )
    assert "TLS certificate failed verification" in body
    assert f"server {colonies.host}:{colonies.port}" in body
    assert f"the CA file {other_ca}" in body
    log = until(
        lambda: "not ready: the Colonies server's TLS certificate" in run.log() and run.log(),
        "the log",
    )
    assert str(other_ca) in log
    assert "unreachable" not in log  # not a generic connection error
    assert run.proc is not None and run.proc.poll() is None  # waiting, not crash-looping
    assert colonies.get_process(pid)["state"] == WAITING  # nothing taken


def test_the_cli_with_a_wrong_ca_fails_on_the_certificate(
    colonies: ColoniesServer, other_ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(colonies, "ca_file", other_ca)
    refused = colonies.cli("process", "ps", check=False)
    assert refused.returncode != 0
    assert "certificate" in refused.stdout + refused.stderr
