"""The shipper's in-cluster connection: the service account read directly, the token per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubejobs.adapters.podlogs import InCluster
from kubejobs.errors import KubejobsError


def account(tmp_path: Path, token: str = "first") -> Path:
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def test_host_port_and_ca_come_from_the_pod(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    conn = InCluster(env, account(tmp_path))
    assert conn.host == "https://10.96.0.1:6443"
    assert conn.tls == {"verify": str(tmp_path / "ca.crt")}


def test_an_ipv6_service_host_is_bracketed_and_the_port_defaults_to_443(tmp_path: Path) -> None:
    conn = InCluster({"KUBERNETES_SERVICE_HOST": "fd00::1"}, account(tmp_path))
    assert conn.host == "https://[fd00::1]:443"


def test_a_rotated_token_is_used_on_the_next_request(tmp_path: Path) -> None:
    conn = InCluster({"KUBERNETES_SERVICE_HOST": "h"}, account(tmp_path))
    assert conn.headers() == {"Authorization": "Bearer first"}
    (tmp_path / "token").write_text("rotated")
    assert conn.headers() == {"Authorization": "Bearer rotated"}


def test_no_token_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubejobsError, match="no service-account token at"):
        InCluster({"KUBERNETES_SERVICE_HOST": "h"}, tmp_path)
