"""The whole path over TLS with the operator's CA, in real containers on real-node-0.

The Colonies server serves TLS with a test CA's certificate (testenv/colonies.py); the
executor verifies it with colonies_ca_file, the injected containers with the CA the
executor mounts from a ConfigMap or Secret of the namespace (pods reach the server on
testenv.podnet.HOST_IP, an address the certificate holds). This module's ``colonies``
fixture replaces the session's plain-HTTP server for the executor fixtures.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testenv.colonies import ColoniesServer
from testenv.podnet import HOST_IP
from tests.integration import test_tls as tls_tests
from tests.integration.realnode.conftest import job_spec
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun
from tests.integration.test_inpod_stager import latest, put_file

pytestmark = pytest.mark.integration
# this module's TLS server (replacing the session's plain one for the executor fixtures)
# and a CA that did not sign its certificate, as in test_tls.py
colonies = tls_tests.colonies
other_ca = tls_tests.other_ca
WAIT = 240.0
POD_CA_FILE = "/etc/kubejobs/colonies-ca/ca.crt"


def tls_executor(
    real_executor: Callable[..., ExecutorRun],
    kube_namespace: Any,
    colonies: ColoniesServer,
    kind: str,
    pod_ca: Path,
) -> ExecutorRun:
    """An executor that trusts the server's CA; its pods get ``pod_ca`` from a ``kind``
    (configmap or secret) named colonies-ca."""
    assert colonies.ca_file is not None
    kube_namespace.kubectl(
        "create", *(["secret", "generic"] if kind == "secret" else ["configmap"]),
        "colonies-ca", f"--from-file=ca.crt={pod_ca}",
    )  # fmt: skip
    return real_executor(
        colonies_tls="true",
        colonies_ca_file=str(colonies.ca_file),
        **{f"colonies_ca_{kind}": "colonies-ca"},
    )


def sh(run: ExecutorRun, script: str, **extra: Any) -> dict[str, Any]:
    return job_spec(run.type, "sh", ["-c", script], **extra)


def test_assign_ship_stage_sync_and_close_over_tls(
    real_executor: Callable[..., ExecutorRun],
    kube_namespace: Any,
    colonies: ColoniesServer,
    s3: Any,
) -> None:
    assert colonies.ca_file is not None
    run = tls_executor(real_executor, kube_namespace, colonies, "configmap", colonies.ca_file)
    base = f"/tls/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, f"{base}/data", "in.txt", b"hello over tls\n")
    fs = {
        "mount": "/cfs",
        "dirs": [
            {
                "label": f"{base}/data",
                "dir": "/data",
                "keepfiles": False,
                "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}},
            }
        ],
    }
    script = "cat /cfs/data/in.txt && tr a-z A-Z </cfs/data/in.txt >/cfs/data/out.txt"
    pid = run.submit(sh(run, script, fs=fs))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    log = colonies.log_text(pid)
    assert "hello over tls" in log.splitlines()  # staged in, printed, shipped
    assert "certificate" not in log
    out = latest(colonies, f"{base}/data", "out.txt")  # synced back at close
    assert out["checksum"] == hashlib.sha256(b"HELLO OVER TLS\n").hexdigest()
    body = s3.client().get_object(Bucket=s3.config.bucket, Key=out["ref"]["s3object"]["object"])
    assert body["Body"].read() == b"HELLO OVER TLS\n"
    run.wait_no_jobs()


def test_a_shipper_with_a_wrong_ca_names_the_certificate_in_the_process_log(
    real_executor: Callable[..., ExecutorRun],
    kube_namespace: Any,
    colonies: ColoniesServer,
    other_ca: Path,
) -> None:
    run = tls_executor(real_executor, kube_namespace, colonies, "secret", other_ca)
    pid = run.submit(sh(run, "echo this line cannot be shipped"))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]  # the program itself succeeded
    log = colonies.log_text(pid)
    assert "the log shipper of pod" in log and "ended with exit code 1" in log
    assert "TLS certificate failed verification" in log
    assert f"server {HOST_IP}:{colonies.port}" in log  # where the pod reaches it
    assert f"the CA file {POD_CA_FILE}" in log
    assert "this line cannot be shipped" not in log
    run.wait_no_jobs()


def test_a_stager_with_a_wrong_ca_fails_the_process_naming_the_certificate(
    real_executor: Callable[..., ExecutorRun],
    kube_namespace: Any,
    colonies: ColoniesServer,
    other_ca: Path,
) -> None:
    run = tls_executor(real_executor, kube_namespace, colonies, "configmap", other_ca)
    fs = {"mount": "/cfs", "dirs": [{"label": f"/tls/{uuid.uuid4().hex[:8]}", "dir": "/d"}]}
    pid = run.submit(sh(run, "echo never runs", fs=fs))
    process = run.wait_done(pid, WAIT)
    assert process["state"] == FAILED
    errors = " ".join(process["errors"])
    assert "kubejobs-data-stager" in errors
    assert "TLS certificate failed verification" in errors
    assert f"the CA file {POD_CA_FILE}" in errors
