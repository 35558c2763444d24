"""The in-pod programs and a Colonies certificate that fails verification: named, never retried
away in silence; the CA file comes from the environment kubejobs injects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.colonies import ColoniesCertificateError
from kubejobs.inpod import entry
from kubejobs.inpod.config import PodEnv
from kubejobs.inpod.delivery import Delivery
from kubejobs.inpod.retry import Retrier
from kubejobs.inpod.shipper import Shipper, ShipperOptions
from kubejobs.inpod.state import Cursor, StateStore
from tests.unit.inpod.fakes import FakePod, FakeSink

REFUSED = "the Colonies server's TLS certificate failed verification: server h:1, ..."


class UntrustedSink(FakeSink):
    def add_log(self, process_id: str, message: str) -> None:
        self.calls += 1
        raise ColoniesCertificateError(REFUSED)


def _refuse() -> Any:
    raise ColoniesCertificateError(REFUSED)


def test_retrier_gives_up_at_once_on_a_certificate_failure() -> None:
    slept: list[float] = []
    calls: list[int] = []

    def call() -> Any:
        calls.append(1)
        return _refuse()

    with pytest.raises(ColoniesCertificateError):
        Retrier(budget=300, sleep=slept.append)(call, "stage")
    assert calls == [1]
    assert slept == []


def test_delivery_does_not_treat_a_certificate_failure_as_an_outage(tmp_path: Path) -> None:
    slept: list[float] = []
    store = StateStore(tmp_path)
    delivery = Delivery(FakeSink(), store, Cursor(), "pid", "colony", sleep=slept.append)
    with pytest.raises(ColoniesCertificateError):
        delivery.retry(_refuse, "add the log batch", lambda: False)
    assert slept == []


class _Terminated:
    def __init__(self) -> None:
        self.waited = False

    def set(self) -> None:
        pass

    def wait(self) -> bool:
        self.waited = True
        return True


@pytest.mark.parametrize("native", [True, False])
def test_shipper_ends_with_the_certificate_error(tmp_path: Path, native: bool) -> None:
    pod = FakePod(["main"])
    pod.write("main", ["hello"])
    pod.state["main"] = "terminated"
    sink = UntrustedSink()
    options = ShipperOptions(linger=0.01, poll=0.01, idle_timeout=0.01)
    shipper = Shipper(
        pod,
        sink,
        tmp_path,
        "pid",
        "colony",
        first=[],
        containers=["main"],
        options=ShipperOptions(**{**options.__dict__, "wait_for_sigterm_on_fatal": native}),
    )
    terminated = _Terminated()
    shipper._terminated = terminated  # type: ignore[assignment]
    with pytest.raises(ColoniesCertificateError, match="certificate failed verification"):
        shipper.run()
    assert sink.calls == 1  # not retried
    # a native sidecar waits for SIGTERM (the pod's end): exiting earlier, the kubelet would
    # restart it in a loop; a regular container ends at once and fails the pod with the message
    assert terminated.waited is native


def test_pod_env_reads_the_ca_file() -> None:
    environ = {
        "COLONIES_SERVER_HOST": "h",
        "COLONIES_SERVER_PORT": "1",
        "COLONIES_TLS": "true",
        "COLONIES_COLONY_NAME": "c",
        "COLONIES_PROCESS_ID": "p",
        "COLONIES_PRVKEY": "k",
        "KUBEJOBS_COLONIES_CA_FILE": "/etc/kubejobs/colonies-ca/ca.crt",
    }
    env = PodEnv.from_environ(environ, need_pod=False)
    assert env.colonies_tls
    assert env.colonies_ca_file == "/etc/kubejobs/colonies-ca/ca.crt"
    assert (
        PodEnv.from_environ({**environ, "KUBEJOBS_COLONIES_CA_FILE": ""}, False).colonies_ca_file
        == ""
    )


def test_entry_point_writes_the_error_as_its_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setattr(entry, "TERMINATION_LOG", log)
    for name in ("COLONIES_SERVER_HOST", "COLONIES_PROCESS_ID", "KUBEJOBS_FS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["kubejobs-inpod", "stage-in"])
    with pytest.raises(SystemExit) as ended:
        entry.main()
    assert ended.value.code == 1
    assert "COLONIES_SERVER_HOST is not set" in log.read_text()
    assert log.read_text() in capsys.readouterr().err
