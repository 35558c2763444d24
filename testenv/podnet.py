"""The real node's pod network: a network namespace of its own, a CNI bridge, no way out.

Several test sessions run a real node each on this machine at once, and kube-proxy
owns fixed iptables chains (KUBE-SERVICES...) that every sync rewrites: two in one
network namespace would delete each other's rules. So each node gets a network
namespace, ``kjnode-<slot>``, joined to the host by a veth pair; containerd, the
kubelet, kube-proxy and CoreDNS run in it (``prefix`` is the ``nsenter`` argv), and
the pods' bridge, routes and rules live there too.

Addresses (slot S, one per running node, held with a lock file):

- ``HOST_IP`` 10.210.0.1: the host as every node's pods see it, an address on the
  host's loopback shared by all nodes. The servers the tests start outside the cluster
  (the API server, Colonies, S3) listen on it; pods reach them there, as pods reach a
  server on a routable address outside a production cluster.
- 10.211.S.1/30 (host end of the veth) and 10.211.S.2/30 (``node_ip``, the node's
  InternalIP: the kubelet, kube-proxy's health port and CoreDNS listen on it).
- 10.212.S.0/24: the pods (bridge ``cni0``, gateway 10.212.S.1, host-local IPAM).
- 10.96.0.0/16: Services (kube-proxy's DNAT; what it has not programmed goes to the
  host, which has an unreachable route for the range).

**No packet from a pod leaves this machine.** The node's namespace has no default
route (an outside address is "network unreachable" at once), its FORWARD chain
rejects everything but pod to pod and pod to ``HOST_IP``, there is no masquerade,
and the host (ip_forward 0) drops anything from the veth it would have to forward.
``self_check`` verifies that before anything starts in the namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Any

from testenv._proc import TestEnvError

HOST_IP = "10.210.0.1"
SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
BRIDGE = "cni0"
SLOTS = 32
LOCK_DIR = Path("/run/kubejobs-net")
_ISOLATE = "KUBEJOBS-ISOLATE"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise TestEnvError(f"ip {' '.join(args)} failed: {res.stderr.strip()}")
    return res


def ensure_host_address() -> None:
    """``HOST_IP`` on the host's loopback, and an unreachable route for the Service range
    (shared by every node; never removed). The kernel here has no dummy interfaces; an
    address on lo is local to every interface, so pods' packets arriving on a veth are
    delivered to it. Without the route, a ClusterIP would follow the host's default route
    off the machine."""
    _ip("addr", "replace", f"{HOST_IP}/32", "dev", "lo")
    _ip("route", "replace", "unreachable", SERVICE_CIDR)


class PodNetwork:
    """One node's network namespace, veth pair, routes and isolation rules."""

    def __init__(self) -> None:
        self.slot = -1
        self._lock: int | None = None

    # -- names and addresses (valid once claimed) -------------------------
    @property
    def netns(self) -> str:
        return f"kjnode-{self.slot}"

    @property
    def host_veth(self) -> str:
        return f"kjh{self.slot}"

    @property
    def link_ip(self) -> str:
        return f"10.211.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.211.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.212.{self.slot}.0/24"

    @property
    def prefix(self) -> list[str]:
        """Run a program in the node's namespace (network only: it shares the host's mounts,
        which the kubelet and containerd need; nsenter execs, so the pid is the program's)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise TestEnvError(f"{' '.join(argv)} in {self.netns} failed: {res.stderr.strip()}")
        return res

    # -- up / down --------------------------------------------------------
    def up(self) -> PodNetwork:
        self._claim()
        try:
            self._reap()
            ensure_host_address()
            self._link()
            self._isolate()
            self.self_check()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        if self.slot < 0:
            return
        self._reap()
        if self._lock is not None:
            os.close(self._lock)  # the kernel drops the lock with the descriptor
            self._lock = None
        self.slot = -1

    def _claim(self) -> None:
        """The first free slot from this worker's own (a lock file held while the node runs;
        the kernel frees it when the process dies, so a crashed session's slot is reused)."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw")
        start = int(worker) if worker.isdigit() else 0
        for i in range(SLOTS):
            slot = (start + i) % SLOTS
            fd = os.open(LOCK_DIR / f"slot-{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.slot, self._lock = slot, fd
            return
        raise TestEnvError(f"no free pod network slot of {SLOTS} (locks in {LOCK_DIR})")

    def _reap(self) -> None:
        """Remove this slot's namespace, veth and host rule (ours, or a dead session's)."""
        pids = _ip("netns", "pids", self.netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _ip("netns", "del", self.netns, check=False)
        _ip("link", "del", self.host_veth, check=False)  # its routes go with it
        rule = ["FORWARD", "-i", self.host_veth, "-j", "DROP"]
        while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
            pass

    def _link(self) -> None:
        ns, veth = self.netns, self.host_veth
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("addr", "add", f"{self.link_ip}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        # replies to pods (the host does not forward: ip_forward stays as it is, 0 here)
        _ip("route", "replace", self.pod_cidr, "via", self.node_ip, "dev", veth)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{self.node_ip}/30", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        # the only way out of the namespace: the host's address for pods. No default route.
        _ip("-n", ns, "route", "add", f"{HOST_IP}/32", "via", self.link_ip, "dev", "eth0")
        # The Service range needs a route in the namespace: a local program's connect() (a
        # hostNetwork pod, CoreDNS) looks it up before kube-proxy's OUTPUT DNAT rewrites the
        # address. An unprogrammed ClusterIP then goes to the host, which does not forward
        # it (and has an unreachable route for the range); from a pod, kube-proxy's reject
        # or KUBEJOBS-ISOLATE refuse it first.
        _ip("-n", ns, "route", "add", SERVICE_CIDR, "via", self.link_ip, "dev", "eth0")

    def _isolate(self) -> None:
        self.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")
        ipt = ["iptables", "-w"]
        self.run(*ipt, "-N", _ISOLATE)
        for rule in (
            ["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"],  # pod to pod
            ["-i", BRIDGE, "-o", "eth0", "-d", f"{HOST_IP}/32", "-j", "RETURN"],
            ["-i", "eth0", "-o", BRIDGE, "-s", f"{HOST_IP}/32", "-j", "RETURN"],
            ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"],
        ):
            self.run(*ipt, "-A", _ISOLATE, *rule)
        self.run(*ipt, "-I", "FORWARD", "1", "-j", _ISOLATE)
        # belt and braces on the host, should it forward one day
        subprocess.run(
            ["iptables", "-w", "-I", "FORWARD", "-i", self.host_veth, "-j", "DROP"],
            capture_output=True,
            check=True,
        )

    def self_check(self) -> None:
        """Fail closed: the namespace must have no route to an outside address."""
        outside = _ip("-n", self.netns, "route", "get", "203.0.113.1", check=False)
        if outside.returncode == 0:
            raise TestEnvError(f"{self.netns} has a route off the machine: {outside.stdout}")
        default = _ip("-n", self.netns, "route", "show", "default").stdout.strip()
        if default:
            raise TestEnvError(f"{self.netns} has a default route: {default}")

    # -- configuration for the components ----------------------------------
    def cni_config(self, ipam_dir: Path) -> dict[str, Any]:
        """The CNI network containerd gives each pod: a veth on the bridge, an address of
        the slot's range (IPAM state in the node's work dir, not the machine-wide default),
        no masquerade. containerd adds loopback itself."""
        net = ipaddress.ip_network(self.pod_cidr)
        base = str(net.network_address).rsplit(".", 1)[0]
        return {
            "cniVersion": "1.0.0",
            "name": f"kubejobs-{self.slot}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [
                            [
                                {
                                    "subnet": self.pod_cidr,
                                    "rangeStart": f"{base}.10",
                                    "rangeEnd": f"{base}.250",
                                    "gateway": f"{base}.1",
                                }
                            ]
                        ],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
