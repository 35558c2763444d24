"""Faults at seeded moments: what is broken, for how long, and how it comes back.

Each fault uses the test environment's own ways of stopping and starting a
server (testenv: ``ColoniesServer.restart``, ``KubeCluster.restart_apiserver``,
``Service.kill/stop/start``) and returns only once the thing is back (ready
where it has a readiness check). Faults run one at a time, in the caller's
thread: run them from the main thread, since a server started from another
thread does not die with the harness (testenv/_proc.py).

Kinds: ``replica`` (an executor replica SIGKILLed, restarted after the outage),
``colonies`` (the Colonies server and its PostgreSQL stopped and started),
``apiserver`` (kube-apiserver), ``kubelet`` (the real node's), ``kueue``
(SIGKILLed), ``shipper`` (one running log shipper's process SIGKILLed in its
container; the kubelet restarts the native sidecar), ``tls`` (the TLS front
end of the Colonies server SIGKILLed).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.soak.checks import FAULT_KINDS
from benchmarks.soak.history import FaultRecord
from testenv._proc import http_ok, wait_until

if TYPE_CHECKING:
    from benchmarks.soak.harness import Soak


@dataclass(frozen=True)
class Planned:
    at: float
    """Seconds after the start."""
    kind: str
    seconds: float
    """How long the thing stays down (a shipper: ignored, the kubelet decides)."""


def plan(
    rng: random.Random, duration: float, count: int, shortest: float, longest: float
) -> list[Planned]:
    """``count`` faults (at least one of each kind) at random moments of ``duration``: one per
    equal slot, each over before its slot ends."""
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    while len(kinds) < count:
        kinds.append(rng.choice(FAULT_KINDS))
    slot = duration / len(kinds)
    planned = []
    for i, kind in enumerate(kinds):
        seconds = rng.uniform(shortest, min(longest, max(shortest, slot * 0.6)))
        at = i * slot + rng.uniform(0, max(0.0, slot - seconds - 1))
        planned.append(Planned(round(at, 1), kind, round(seconds, 1)))
    return planned


class Injector:
    """Injects the planned faults into a running soak."""

    def __init__(self, soak: Soak, rng: random.Random) -> None:
        self.soak = soak
        self.rng = rng
        self.actions: dict[str, Callable[[float], tuple[str, str]]] = {
            "replica": self.replica,
            "colonies": self.colonies,
            "apiserver": self.apiserver,
            "kubelet": self.kubelet,
            "kueue": self.kueue,
            "shipper": self.shipper,
            "tls": self.tls,
        }

    def inject(self, fault: Planned) -> FaultRecord:
        start = time.time()
        self.soak.note(f"fault {fault.kind} for {fault.seconds} s")
        target, detail = self.actions[fault.kind](fault.seconds)
        record = FaultRecord(fault.kind, target, start, time.time(), detail)
        self.soak.note(f"fault {fault.kind} over ({target}) {detail}".rstrip())
        return record

    def replica(self, seconds: float) -> tuple[str, str]:
        replica = self.rng.choice(self.soak.replicas)
        replica.kill()
        time.sleep(seconds)
        replica.start()
        return replica.name, ""

    def colonies(self, seconds: float) -> tuple[str, str]:
        self.soak.servers.colonies.restart(down_seconds=seconds)
        return "colonies-server+postgres", ""

    def apiserver(self, seconds: float) -> tuple[str, str]:
        self.soak.servers.kube.restart_apiserver(down_seconds=seconds)
        return "kube-apiserver", ""

    def kubelet(self, seconds: float) -> tuple[str, str]:
        kubelet = self.soak.servers.node.services["kubelet"]
        kubelet.stop()
        time.sleep(seconds)
        kubelet.start()
        port = self.soak.servers.node.healthz_port
        url = f"http://{self.soak.servers.node.net.node_ip}:{port}/healthz"
        wait_until(lambda: http_ok(url), 120, "the kubelet's /healthz", service=kubelet)
        return "kubelet", ""

    def kueue(self, seconds: float) -> tuple[str, str]:
        kueue = self.soak.servers.kueue
        kueue.service.kill()
        time.sleep(seconds)
        kueue.service.start()
        ready = f"http://127.0.0.1:{kueue.health_port}/readyz"
        wait_until(lambda: http_ok(ready), 120, "kueue /readyz", service=kueue.service)
        return "kueue", ""

    def shipper(self, seconds: float) -> tuple[str, str]:
        """SIGKILL one log shipper of the soak's running pods (waits up to 60 s for one)."""
        deadline = time.monotonic() + 60
        while not (found := shippers(self.soak.namespace)):
            if time.monotonic() > deadline:
                return "", "skipped: no log shipper running"
            time.sleep(0.5)
        pod, os_pid = self.rng.choice(sorted(found.items()))
        try:
            os.kill(os_pid, signal.SIGKILL)
        except ProcessLookupError:
            return pod, "skipped: it had ended"
        again = time.monotonic() + 60
        while time.monotonic() < again:  # the kubelet restarts it (or the pod has ended)
            now = shippers(self.soak.namespace)
            if now.get(pod, os_pid) != os_pid:
                return pod, "restarted by the kubelet"
            time.sleep(0.2)
        return pod, "not restarted within 60 s (its pod may have ended)"

    def tls(self, seconds: float) -> tuple[str, str]:
        colonies = self.soak.servers.colonies
        assert colonies.tls_proxy is not None
        colonies.tls_proxy.kill()
        time.sleep(seconds)
        colonies.tls_proxy.start()
        wait_until(colonies.healthy, 60, "the TLS front end", service=colonies.tls_proxy)
        return "colonies-tls", ""


def shippers(namespace: str) -> dict[str, int]:
    """Pod name -> process id of the running log shippers of ``namespace``'s pods."""
    found = {}
    want = f"KUBEJOBS_POD_NAMESPACE={namespace}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"ship-logs" not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in environ:
            pod = next(
                (
                    e.split(b"=", 1)[1].decode()
                    for e in environ
                    if e.startswith(b"KUBEJOBS_POD_NAME=")
                ),
                "",
            )
            found[pod] = int(proc.name)
    return found
