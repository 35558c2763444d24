"""The real node's pod network (testenv/podnet.py): pods have addresses of their own,
Services and cluster DNS work, the servers outside the cluster answer on HOST_IP, and
nothing reaches off the machine.

One pod runs a Python probe (the kubejobs image has Python) and writes what it saw as
JSON to its termination message; the test reads it back.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testenv.node import RealNode, kubejobs_image
from testenv.podnet import DNS_SERVICE_IP, HOST_IP
from tests.integration.polling import until
from tests.integration.realnode.test_node import finished, pod

pytestmark = pytest.mark.integration

PROBE = r"""
import json, os, socket, time

def connect(host, port, timeout=10.0):
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            result = "connected"
    except OSError as e:
        result = f"{type(e).__name__}:{e.errno}"
    return [result, round(time.monotonic() - t0, 3)]

def resolve(name):
    t0 = time.monotonic()
    try:
        result = sorted({a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)})
    except socket.gaierror as e:
        result = f"gaierror:{e.errno}"
    return [result, round(time.monotonic() - t0, 3)]

env = json.loads(os.environ["PROBE"])
out = {
    "ip": socket.gethostbyname(socket.gethostname()),
    "service_env": os.environ.get("KUBERNETES_SERVICE_HOST"),
    "kubernetes_name": resolve("kubernetes.default.svc.cluster.local"),
    "kubernetes_short": resolve("kubernetes.default"),
    "kubernetes_connect": connect("kubernetes.default.svc", 443),
    "exposed_name": resolve(env["exposed"]),
    "exposed_connect": connect(env["exposed"], env["port"]),
    "host_connect": connect(env["host"], env["port"]),
    "outside_connect": connect("203.0.113.1", 80),
    "outside_name": resolve("example.com"),
    "no_endpoints": connect(env["empty_ip"], 80, timeout=5.0),
}
open("/dev/termination-log", "w").write(json.dumps(out))
"""


def probe(kube_namespace: Any, name: str, env: dict[str, Any]) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": kubejobs_image(),
        "command": ["python3", "-c", PROBE],
        "env": [{"name": "PROBE", "value": json.dumps(env)}],
    }
    kube_namespace.kubectl("apply", "-f", "-", input=json.dumps(pod(name, [container])))
    doc = until(lambda: finished(kube_namespace, name), f"pod {name} to finish", 120)
    state = doc["status"]["containerStatuses"][0]["state"]["terminated"]
    assert doc["status"]["phase"] == "Succeeded", state
    seen: dict[str, Any] = json.loads(state["message"])
    seen["pod_ip"] = doc["status"].get("podIP")
    return seen


def test_pods_have_addresses_services_dns_and_no_way_off_the_machine(
    real_node: RealNode, kube_namespace: Any, colonies: Any
) -> None:
    # the preconditions of the "no way out" half, checked on the node itself (fail closed)
    real_node.net.self_check()
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert host_forwarding == "0", "the host forwards: this test would send packets out"
    exposed = real_node.expose("colonies", colonies.port, kube_namespace.name)
    empty = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "empty"},
        "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80}]},
    }
    kube_namespace.kubectl("apply", "-f", "-", input=json.dumps(empty))
    empty_ip = json.loads(kube_namespace.kubectl("get", "svc", "empty", "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]

    seen = probe(
        kube_namespace,
        "probe",
        {"exposed": exposed, "host": HOST_IP, "port": colonies.port, "empty_ip": empty_ip},
    )

    # an address of its own, from the node's pod range; the kubelet told it the Service IP
    assert ipaddress.ip_address(seen["pod_ip"]) in ipaddress.ip_network(real_node.net.pod_cidr)
    assert seen["ip"] == seen["pod_ip"]
    assert seen["service_env"] == "10.96.0.1"
    # cluster DNS (kube-dns at DNS_SERVICE_IP), search paths included; kube-proxy's DNAT
    assert seen["kubernetes_name"][0] == ["10.96.0.1"], seen
    assert seen["kubernetes_short"][0] == ["10.96.0.1"], seen
    assert seen["kubernetes_connect"][0] == "connected", seen
    # a server outside the cluster: by the Service that names it, and on HOST_IP
    assert seen["exposed_name"][0] != [] and isinstance(seen["exposed_name"][0], list), seen
    assert seen["exposed_connect"][0] == "connected", seen
    assert seen["host_connect"][0] == "connected", seen
    # nothing leaves: an outside address fails at once, here (no route: ENETUNREACH 101,
    # or the node's reject: EHOSTUNREACH 113); no name outside cluster.local resolves
    result, seconds = seen["outside_connect"]
    assert result in ("OSError:101", "OSError:113"), seen
    assert seconds < 1.0, seen
    assert isinstance(seen["outside_name"][0], str) and seen["outside_name"][1] < 5.0, seen
    # a ClusterIP without endpoints fails at once too (kube-proxy's reject, or the Service
    # range's unreachable route), it is not left to time out
    result, seconds = seen["no_endpoints"]
    assert result in ("ConnectionRefusedError:111", "OSError:113"), seen
    assert seconds < 1.0, seen
    assert DNS_SERVICE_IP.startswith("10.96.")


def test_two_nodes_get_separate_network_namespaces_and_slots(real_node: RealNode) -> None:
    """The slot lock is per node: a second claim in this process gets another slot, and
    what it set up goes with it."""
    from testenv.podnet import PodNetwork

    other = PodNetwork().up()
    try:
        assert other.slot != real_node.net.slot
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert other.netns in namespaces.stdout and real_node.net.netns in namespaces.stdout
    finally:
        other.down()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert other.netns not in namespaces.stdout.split()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"{other.host_veth}@" not in links
