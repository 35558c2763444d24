"""A real Kubernetes control plane on loopback, with kwok playing the kubelets.

etcd, kube-apiserver, kube-controller-manager (Job, TTL-after-finished,
garbage collector, service accounts and tokens, namespaces, ...),
kube-scheduler and kwok, all built by testenv/install.sh. Pods are scheduled
by the real scheduler onto fake kwok nodes; kwok moves them through the
stages in ``STAGES`` below, which tests steer with pod annotations:

- ``kwok.test/run``: how long the pod runs before it completes or fails
  (Go duration, default ``1s``); ``kwok.test/start``: delay before it starts
  (default ``100ms``).
- ``kwok.test/exit-code: "3"``: the main containers terminate with that
  exit code and the pod goes Failed; ``kwok.test/reason`` sets the
  termination reason (default ``Error``; e.g. ``OOMKilled``).
- ``kwok.test/run-forever: "true"``: the pod keeps running until deleted.
- ``kwok.test/message``: the main containers' termination message.
- ``kwok.test/waiting-reason: ErrImagePull`` (and ``kwok.test/waiting-message``):
  the pod stays Pending with its main containers waiting for that reason, as a
  kubelet shows an image that cannot be pulled or a missing Secret.
- Pods whose restartPolicy is Always (Deployments, ...) keep running.

Native sidecars (init containers with ``restartPolicy: Always``) are shown
running next to the main containers and are terminated (exit 0) when the pod
completes, so Jobs with sidecars complete. Other init containers are shown
as completed. A pod being deleted is first terminated (exit 143, phase
Failed), then removed once its finalizers are gone.

Container logs are served through the real ``pods/log`` API by kwok's
kubelet endpoint from files that tests write (``KubeCluster.set_logs``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testenv._proc import (
    PREFIX,
    Service,
    TestEnvError,
    binary,
    free_port,
    http_ok,
    port_open,
    wait_until,
)
from testenv.podnet import HOST_IP

KUBE_VERSION = "v1.34.4"
ANNOTATION_PREFIX = "kwok.test/"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass
class FakeNode:
    name: str
    allocatable: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)


DEFAULT_NODES = (
    FakeNode(
        "kwok-node-0", {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    ),
    FakeNode(
        "kwok-node-1", {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    ),
    FakeNode(
        "kwok-gpu-node-0",
        {
            "cpu": "64",
            "memory": "512Gi",
            "pods": "110",
            "ephemeral-storage": "1Ti",
            "nvidia.com/gpu": "8",
        },
        {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.present": "true"},
    ),
)

# ---------------------------------------------------------------------------
# kwok stages (kwok >= v0.8 ships none built in)
# ---------------------------------------------------------------------------
_NOT_DELETED = """\
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'"""

_RUNNING_READY = """\
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.spec.restartPolicy'
      operator: 'In'
      values: ['Never', 'OnFailure']"""


def _terminated_status(main_exit: str, main_reason: str, phase: str) -> str:
    return f"""\
      {{{{ $now := Now }}}}
      {{{{ $root := . }}}}
      conditions:
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        reason: PodCompleted
        status: "False"
        type: Ready
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        reason: PodCompleted
        status: "False"
        type: ContainersReady
      {{{{ if .spec.initContainers }}}}
      initContainerStatuses:
      {{{{ range .spec.initContainers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{{{ $now | Quote }}}}
            reason: Completed
            startedAt: {{{{ or $root.status.startTime $now | Quote }}}}
      {{{{ end }}}}
      {{{{ end }}}}
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {main_exit}
            finishedAt: {{{{ $now | Quote }}}}
            reason: {main_reason}
            {{{{ with $root.metadata.annotations }}}}{{{{ with index . "kwok.test/message" }}}}
            message: {{{{ . | Quote }}}}
            {{{{ end }}}}{{{{ end }}}}
            startedAt: {{{{ or $root.status.startTime $now | Quote }}}}
      {{{{ end }}}}
      phase: {phase}
"""


STAGES = f"""\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  delay:
    durationMilliseconds: 0
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      conditions:
      {{{{ range NodeConditions }}}}
      - lastHeartbeatTime: {{{{ $now | Quote }}}}
        lastTransitionTime: {{{{ $now | Quote }}}}
        message: {{{{ .message | Quote }}}}
        reason: {{{{ .reason | Quote }}}}
        status: {{{{ .status | Quote }}}}
        type: {{{{ .type | Quote }}}}
      {{{{ end }}}}
      addresses:
      - address: {{{{ NodeIP | Quote }}}}
        type: InternalIP
      - address: {{{{ .metadata.name | Quote }}}}
        type: Hostname
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{{{ NodePort }}}}
      {{{{ with .status.allocatable }}}}
      allocatable:
      {{{{ YAML . 1 }}}}
      capacity:
      {{{{ YAML . 1 }}}}
      {{{{ end }}}}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {KUBE_VERSION}
        kubeProxyVersion: {KUBE_VERSION}
        containerRuntimeVersion: kwok
        kernelVersion: kwok
        osImage: kwok
        machineID: ""
        bootID: ""
        systemUUID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      conditions:
      {{{{ range NodeConditions }}}}
      - lastHeartbeatTime: {{{{ $now | Quote }}}}
        lastTransitionTime: {{{{ $now | Quote }}}}
        message: {{{{ .message | Quote }}}}
        reason: {{{{ .reason | Quote }}}}
        status: {{{{ .status | Quote }}}}
        type: {{{{ .type | Quote }}}}
      {{{{ end }}}}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-start
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
{_NOT_DELETED}
    - key: '.status.podIP'
      operator: 'DoesNotExist'
    - key: '.spec.nodeName'
      operator: 'Exists'
    - key: '.metadata.annotations["kwok.test/waiting-reason"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 100
    durationFrom:
      expressionFrom: '.metadata.annotations["kwok.test/start"]'
  next:
    event:
      type: Normal
      reason: Started
      message: Started containers (kwok)
    statusTemplate: |
      {{{{ $now := Now }}}}
      conditions:
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        status: "True"
        type: PodReadyToStartContainers
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        status: "True"
        type: Initialized
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        status: "True"
        type: ContainersReady
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        status: "True"
        type: Ready
      {{{{ if .spec.initContainers }}}}
      initContainerStatuses:
      {{{{ range .spec.initContainers }}}}
      {{{{ if eq (or .restartPolicy "") "Always" }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{{{ $now | Quote }}}}
      {{{{ else }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{{{ $now | Quote }}}}
            reason: Completed
            startedAt: {{{{ $now | Quote }}}}
      {{{{ end }}}}
      {{{{ end }}}}
      {{{{ end }}}}
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{{{ $now | Quote }}}}
      {{{{ end }}}}
      hostIP: {{{{ NodeIPWith .spec.nodeName | Quote }}}}
      podIP: {{{{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}}}
      phase: Running
      startTime: {{{{ $now | Quote }}}}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-waiting
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
{_NOT_DELETED}
    - key: '.spec.nodeName'
      operator: 'Exists'
    - key: '.metadata.annotations["kwok.test/waiting-reason"]'
      operator: 'Exists'
    - key: '.status.containerStatuses'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 100
  next:
    event:
      type: Warning
      reason: Failed
      message: Containers cannot start (kwok)
    statusTemplate: |
      {{{{ $now := Now }}}}
      {{{{ $root := . }}}}
      conditions:
      - lastProbeTime: null
        lastTransitionTime: {{{{ $now | Quote }}}}
        reason: ContainersNotReady
        status: "False"
        type: Ready
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: {{{{ index $root.metadata.annotations "kwok.test/waiting-reason" | Quote }}}}
            message: {{{{ or (index $root.metadata.annotations "kwok.test/waiting-message") "" | Quote }}}}
      {{{{ end }}}}
      hostIP: {{{{ NodeIPWith .spec.nodeName | Quote }}}}
      phase: Pending
      startTime: {{{{ $now | Quote }}}}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
{_NOT_DELETED}
{_RUNNING_READY}
    - key: '.metadata.annotations["kwok.test/exit-code"]'
      operator: 'Exists'
    - key: '.metadata.annotations["kwok.test/run-forever"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 1000
    durationFrom:
      expressionFrom: '.metadata.annotations["kwok.test/run"]'
  next:
    event:
      type: Normal
      reason: Failed
      message: Containers failed (kwok)
    statusTemplate: |
{
    _terminated_status(
        '{{ index $root.metadata.annotations "kwok.test/exit-code" }}',
        '{{ or (index $root.metadata.annotations "kwok.test/reason") "Error" | Quote }}',
        "Failed",
    )
}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
{_NOT_DELETED}
{_RUNNING_READY}
    - key: '.metadata.annotations["kwok.test/exit-code"]'
      operator: 'DoesNotExist'
    - key: '.metadata.annotations["kwok.test/run-forever"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 1000
    durationFrom:
      expressionFrom: '.metadata.annotations["kwok.test/run"]'
  next:
    event:
      type: Normal
      reason: Completed
      message: Containers completed (kwok)
    statusTemplate: |
{_terminated_status("0", "Completed", "Succeeded")}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-terminate
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending', 'Running']
  delay:
    durationMilliseconds: 100
  next:
    statusTemplate: |
{_terminated_status("143", "Error", "Failed")}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'NotIn'
      values: ['Pending', 'Running']
    - key: '.metadata.finalizers'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 100
  next:
    delete: true
"""


# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------
def _write_pki(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    later = now + dt.timedelta(days=30)

    def key_pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubejobs-testenv-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(key_pem(ca_key))

    def issue(name: str, cn: str, orgs: tuple[str, ...] = (), server: bool = False) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                        # the host as the real node's pods and components see it
                        x509.IPAddress(ipaddress.ip_address(HOST_IP)),
                    ]
                ),
                critical=False,
            )
        cert = b.sign(ca_key, hashes.SHA256())
        (pki / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (pki / f"{name}.key").write_bytes(key_pem(key))

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "kubernetes-admin", ("system:masters",))
    issue("kwok", "kwok", ("system:masters",), server=True)
    issue("front-proxy-client", "front-proxy-client")

    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(
        sa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _kubeconfig(server: str, pki: Path) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testenv",
                    "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "admin"}}],
            "current-context": "testenv",
        },
        indent=2,
    )


def _cri_log(lines: list[str] | str, stream: str = "stdout") -> str:
    if isinstance(lines, str):
        lines = lines.splitlines()
    base = dt.datetime.now(dt.UTC)
    out = []
    for i, line in enumerate(lines):
        ts = (base + dt.timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        out.append(f"{ts} {stream} F {line}\n")
    return "".join(out)


# ---------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------
class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok."""

    version = KUBE_VERSION

    def __init__(
        self, workdir: Path | None = None, nodes: tuple[FakeNode, ...] = DEFAULT_NODES
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubejobs-kube-"))
        self.pki = self.workdir / "pki"
        self.log_dir = self.workdir / "logs"
        self.logs_dir = self.workdir / "container-logs"
        self.nodes = nodes
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.kwok_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.services: dict[str, Service] = {}
        self._ssl: ssl.SSLContext | None = None
        self._ns_counter = 0
        self._client: Any = None  # the namespaces' ApiClient, made at first use

    # -- env for subprocesses / clients ---------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def _svc(self, name: str, argv: list[str]) -> Service:
        svc = Service(name, argv, self.log_dir)
        self.services[name] = svc
        return svc

    def start(self) -> KubeCluster:
        for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
            binary(b)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        _write_pki(self.pki)
        self.kubeconfig.write_text(_kubeconfig(self.server, self.pki))
        (self.workdir / "kwok-stages.yaml").write_text(STAGES)
        try:
            self._start_etcd()
            self._start_apiserver()
            self._install_kwok_crds()
            self._start_controllers()
            self._start_kwok()
            self._create_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        svc = self._svc(
            "etcd",
            [
                binary("etcd"),
                "--name",
                "testenv",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"testenv={peer}",
                "--initial-cluster-state",
                "new",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
                "--quota-backend-bytes",
                str(2 * 1024**3),
            ],
        ).start()
        wait_until(lambda: http_ok(f"{client}/health"), 60, "etcd /health", service=svc)

    def _apiserver_argv(self) -> list[str]:
        p = self.pki
        return [
            binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--advertise-address=127.0.0.1",
            # every address: host clients use 127.0.0.1, the real node's kubelet and pods
            # testenv.podnet.HOST_IP (one bind address is all the API server takes)
            "--bind-address=0.0.0.0",
            f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=none",
            f"--kubelet-client-certificate={p / 'admin.crt'}",
            f"--kubelet-client-key={p / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--event-ttl=30m",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            # front-proxy settings: keep the components' authentication config complete
            f"--requestheader-client-ca-file={p / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
        ]

    def _start_apiserver(self) -> None:
        svc = self._svc("kube-apiserver", self._apiserver_argv()).start()
        self.wait_apiserver_ready(svc)

    def wait_apiserver_ready(self, svc: Service | None = None, timeout: float = 120) -> None:
        svc = svc or self.services["kube-apiserver"]
        wait_until(
            lambda: self._api_get("/readyz") is not None,
            timeout,
            "kube-apiserver /readyz",
            interval=0.25,
            service=svc,
        )

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop the kube-apiserver, optionally stay down a while, start it again, wait ready."""
        svc = self.services["kube-apiserver"]
        svc.stop(timeout=3)  # graceful shutdown can hang on open watches; then SIGKILL
        if down_seconds:
            time.sleep(down_seconds)
        svc.start()
        self.wait_apiserver_ready(svc)

    def stop_apiserver(self) -> None:
        self.services["kube-apiserver"].stop(timeout=3)

    def start_apiserver(self) -> None:
        svc = self.services["kube-apiserver"].start()
        self.wait_apiserver_ready(svc)

    def _install_kwok_crds(self) -> None:
        crd_dir = PREFIX / "share" / "kwok" / "crds"
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            raise TestEnvError(f"kwok CRDs missing in {crd_dir}: run testenv/install.sh")
        self.kubectl("apply", "--server-side", *[a for f in files for a in ("-f", str(f))])
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/logs.kwok.x-k8s.io",
            "crd/clusterlogs.kwok.x-k8s.io",
        )

    def _start_controllers(self) -> None:
        p = self.pki
        kc = str(self.kubeconfig)
        self._svc(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--concurrent-job-syncs=10",
                # client-go's default 20 requests/s (burst 30) paced the Job controller to
                # about 4 Jobs/s here (each Job: a pod, status updates, a finalizer removal),
                # the floor of every many-process test; busy production clusters raise it too
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--node-monitor-grace-period=60s",
                "--profiling=false",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
            ],
        ).start()
        self._svc(
            "kube-scheduler",
            [
                binary("kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--kube-api-qps=200",  # binds pods at the rate the Jobs create them
                "--kube-api-burst=400",
                "--profiling=false",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
        ).start()

    def _start_kwok(self) -> None:
        p = self.pki
        svc = self._svc(
            "kwok",
            [
                binary("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={self.workdir / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={self.kwok_port}",
                f"--server-address=127.0.0.1:{self.kwok_port}",
                f"--tls-cert-file={p / 'kwok.crt'}",
                f"--tls-private-key-file={p / 'kwok.key'}",
                "--node-lease-duration-seconds=40",
                "--enable-crds=Logs,ClusterLogs",
                "--cidr=10.244.0.1/16",
            ],
        ).start()
        wait_until(lambda: port_open(self.kwok_port), 60, "kwok server port", service=svc)

    def add_node(self, node: FakeNode, wait: bool = True) -> None:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            **node.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": labels,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "status": {"allocatable": node.allocatable, "capacity": node.allocatable},
        }
        self.kubectl("create", "-f", "-", input=json.dumps(body))
        # make sure the resources are there whatever kwok's initialize stage did first
        self.kubectl(
            "patch",
            "node",
            node.name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"allocatable": node.allocatable, "capacity": node.allocatable}}),
        )
        if wait:
            self.wait_node_ready(node.name)

    def wait_node_ready(self, name: str, timeout: float = 60) -> None:
        def ready() -> bool:
            n = self.get_json(f"/api/v1/nodes/{name}")
            conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            taints = [t["key"] for t in n.get("spec", {}).get("taints", []) or []]
            return conds.get("Ready") == "True" and not any(
                k.startswith("node.kubernetes.io/") for k in taints
            )

        wait_until(
            ready, timeout, f"node {name} Ready", interval=0.25, service=self.services["kwok"]
        )

    def _create_nodes(self) -> None:
        for node in self.nodes:
            self.add_node(node, wait=False)
        for node in self.nodes:
            self.wait_node_ready(node.name)

    def stop(self) -> None:
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            svc = self.services.get(name)
            if svc is not None:
                svc.stop(timeout=5)

    def logs(self) -> dict[str, Service]:
        return dict(self.services)

    # -- API access ----------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
            self._ssl = ctx
        return self._ssl

    def _api_get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(
                self.server + path, timeout=5, context=self._ssl_context()
            ) as r:
                return bytes(r.read()) if r.status == 200 else None
        except urllib.error.HTTPError as err:
            err.close()
            return None
        except (OSError, urllib.error.URLError):
            return None

    def get_json(self, path: str) -> dict[str, Any]:
        """GET `path` as admin, in this process: tests poll every 0.2 s, and a kubectl
        process costs about 0.1 s of CPU per call (2,000 of them were a sixth of the
        suite's CPU)."""
        data = self._api_get(path)
        if data is None:
            raise TestEnvError(f"GET {path} failed")
        result: dict[str, Any] = json.loads(data)
        return result

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster (admin); raises with stderr on failure."""
        res = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise TestEnvError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient (python client) for the admin kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def _api(self) -> Any:
        if self._client is None:
            self._client = self.api_client()
        return self._client

    # -- namespaces and logs -------------------------------------------
    def create_namespace(self, prefix: str = "t") -> str:
        from kubernetes import client

        self._ns_counter += 1
        name = f"{prefix}-{self._ns_counter}-{os.urandom(3).hex()}"[:63]
        core = client.CoreV1Api(self._api())
        core.create_namespace({"metadata": {"name": name}})

        def has_sa() -> bool:
            found = core.list_namespaced_service_account(
                name, field_selector="metadata.name=default"
            )
            return bool(found.items)

        wait_until(has_sa, 30, f"default service account in {name}", interval=0.1)
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete the namespace (not waiting for it to go) and the kwok logs made for it;
        best effort, as a test's clean-up (a test may have stopped the API server)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        with contextlib.suppress(ApiException, HTTPError):
            client.CoreV1Api(self._api()).delete_namespace(name)
        with contextlib.suppress(ApiException, HTTPError):
            client.CustomObjectsApi(self._api()).delete_collection_cluster_custom_object(
                "kwok.x-k8s.io", "v1alpha1", "clusterlogs",
                label_selector=f"kwok.test/namespace={name}",
            )  # fmt: skip

    def set_logs(
        self,
        namespace: str,
        container: str,
        lines: list[str] | str,
        pod: str | None = None,
        follow: bool = False,
        append: bool = False,
    ) -> Path:
        """Make ``pods/log`` of ``container`` in ``namespace`` (one pod or all) return ``lines``.

        The file is written in the CRI log format kwok reads; with ``append`` the
        lines are added (for following streams, use ``follow=True``).
        Returns the log file path.
        """
        key = f"{namespace}--{pod or 'all'}--{container}"
        path = self.logs_dir / f"{key}.log"
        with open(path, "a" if append else "w") as f:
            f.write(_cri_log(lines))
        if not append:
            selector: dict[str, Any] = {"matchNamespaces": [namespace]}
            if pod:
                selector["matchNames"] = [pod]
            body = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {
                    "name": f"ns-{key}"[:253].lower(),
                    "labels": {"kwok.test/namespace": namespace},
                },
                "spec": {
                    "selector": selector,
                    "logs": [{"containers": [container], "logsFile": str(path), "follow": follow}],
                },
            }
            self.kubectl("apply", "-f", "-", input=json.dumps(body))
        return path
