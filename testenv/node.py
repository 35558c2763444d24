"""A real node beside the kwok nodes: containerd + runc + a kubelet, for pods whose containers must run.

``RealNode(kube).start()`` sets up the node's pod network (testenv/podnet.py: a
network namespace of its own with a CNI bridge, no route off the machine), starts
containerd (v2, built by testenv/install-node.sh; its own root, state, socket and
CNI config under the work dir; the version 2 config below is migrated by
containerd itself), a kubelet built into the multi-call kube binary, kube-proxy
(iptables mode) and CoreDNS in that namespace, registers the node ``real-node-0``
(InternalIP ``PodNetwork.node_ip``), and imports the images ``images/build.sh``
built (``.testenv/images/*.tar``): ``localhost/pause:1`` (the sandbox),
``localhost/busybox:1`` and ``localhost/kubejobs:<version>``. Images cannot be
pulled (no registry): pods name these with the default pull policy.

Only pods that ask land on the node: it carries the taint ``TAINT`` and the
label ``LABEL`` (``POD_PLACEMENT`` has the toleration and node selector). Pods
get an address of their own, Services work (the ``kubernetes`` Service included:
its endpoint is the API server on ``HOST_IP``) and names resolve
(``kube-dns`` at 10.96.0.10). The servers the tests start outside the cluster
(Colonies, S3) are reached from pods on ``HOST_IP``, as pods reach a server on a
routable address outside a production cluster: see docs/realnode.md.

The kubelet's cgroups live under a cgroup root of their own
(``/kubejobs-<id>``), so two test sessions on one machine do not clean up each
other's pods, and ``stop()`` kills every container process left in it.
Recipe and what did not work: shared/reference/real-pods.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testenv._proc import (
    BIN,
    PREFIX,
    ROOT,
    Service,
    TestEnvError,
    binary,
    free_port,
    http_ok,
    wait_until,
)
from testenv.podnet import DNS_SERVICE_IP, HOST_IP, PodNetwork

if TYPE_CHECKING:
    from testenv.kube import KubeCluster

NODE_NAME = "real-node-0"
TAINT = {"key": "kubejobs.io/real-node", "value": "true", "effect": "NoSchedule"}
LABEL = {"kubejobs.io/real-node": "true"}
#: What a pod spec needs to land on the real node.
POD_PLACEMENT: dict[str, Any] = {
    "nodeSelector": dict(LABEL),
    "tolerations": [{**TAINT, "operator": "Equal"}],
}
SHIPPER_ACCOUNT = "kubejobs-log-shipper"  # the service_account setting's default
IMAGES_DIR = PREFIX / "images"
PAUSE_IMAGE = "localhost/pause:1"
BUSYBOX_IMAGE = "localhost/busybox:1"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
_CGROUP_FS = Path("/sys/fs/cgroup")
# The pods' share of the CPU against the test servers beside them. The servers run in
# the root cgroup, where every busy task weighs as much (1024) as the kubelet's whole
# cgroup root by default: with four pytest workers' API servers busy, thirty pods
# starting at once got a tenth of the CPU and their log shippers could not start within
# the grace period. On a real node the pods get most of the CPU (the kubelet reserves
# only a little for the system); 8 tasks' worth models that without starving the
# servers (pods burst briefly here).
_POD_CPU_SHARES = 8 * 1024
_PROXY_HEALTH_PORT = 10256  # kube-proxy's default; in the node's own network namespace
_DNS_READY_PORT = 8181  # CoreDNS's ready plugin default


def kubejobs_image() -> str:
    from kubejobs import __version__

    return f"localhost/kubejobs:{__version__}"


class RealNode:
    """containerd + kubelet registering ``real-node-0`` with ``kube``."""

    def __init__(self, kube: KubeCluster, workdir: Path, name: str = NODE_NAME) -> None:
        self.kube = kube
        self.name = name
        self.workdir = Path(workdir)
        # the kubelet's sockets live under it (kubelet/pod-resources/<10 digits>); a unix
        # socket address holds 107 bytes, and the kubelet says only "bind: invalid argument"
        longest = len(str(self.workdir.resolve())) + len("/kubelet/pod-resources/0123456789")
        if longest > 107:
            raise TestEnvError(
                f"the real node's work dir {self.workdir} is too long for the kubelet's unix "
                f"sockets ({longest} > 107 bytes): use a shorter one"
            )
        self.log_dir = self.workdir / "logs"
        self.socket = self.workdir / "containerd.sock"
        self.kubelet_port = free_port()
        self.healthz_port = free_port()
        self.cgroup_root = f"/kubejobs-{os.getpid()}-{os.urandom(2).hex()}"
        self.services: dict[str, Service] = {}
        self.image_import_seconds = 0.0
        self.net = PodNetwork()

    # -- addresses -----------------------------------------------------
    @property
    def host_ip(self) -> str:
        """Where pods reach the servers running on this machine outside the cluster."""
        return HOST_IP

    def pod_url(self, url: str) -> str:
        """``url`` of a server on this machine (127.0.0.1 or localhost), as a pod reaches it."""
        for local in ("127.0.0.1", "localhost"):
            url = url.replace(f"//{local}:", f"//{HOST_IP}:")
            if url.startswith(f"{local}:"):
                url = HOST_IP + url[len(local) :]
        return url

    # -- start / stop --------------------------------------------------
    def start(self) -> RealNode:
        if shutil.which("runc") is None:
            raise TestEnvError("runc is missing: run testenv/install-node.sh")
        for name in ("containerd", "containerd-shim-runc-v2", "ctr", "kubelet"):
            binary(name)
        # Seconds when the images are up to date; rebuilds the kubejobs image when
        # the source changed, so pods never run code older than the checkout.
        build = subprocess.run(
            [str(ROOT / "images" / "build.sh"), "all"], capture_output=True, text=True, check=False
        )
        if build.returncode != 0:
            raise TestEnvError(f"images/build.sh failed:\n{build.stdout}\n{build.stderr}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.net.up()
            self._write_kubeconfig()
            self._start_containerd()
            self._import_images()
            self._make_cgroup_root()
            self._start_kubelet()
            self._wait_registered()
            self._start_proxy()
            self._start_dns()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in ("coredns", "kube-proxy", "kubelet"):
            svc = self.services.get(name)
            if svc is not None:
                svc.stop(timeout=10)
        self._kill_containers()
        containerd = self.services.get("containerd")
        if containerd is not None:
            containerd.stop(timeout=10)
        self._unmount_all()
        self._remove_cgroup_root()
        self.net.down()
        with contextlib.suppress(Exception):
            self.kube.kubectl("delete", "node", self.name, "--ignore-not-found", check=False)

    def _write_kubeconfig(self) -> None:
        """The admin kubeconfig with the API server at ``HOST_IP`` (127.0.0.1 inside the
        node's namespace is its own loopback), for the kubelet, kube-proxy and CoreDNS."""
        config = json.loads(self.kube.kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{HOST_IP}:{self.kube.apiserver_port}"
        self.kubeconfig = self.workdir / "node.kubeconfig"
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    def _in_node(self, argv: list[str]) -> list[str]:
        return [*self.net.prefix, *argv]

    # -- containerd ----------------------------------------------------
    def _start_containerd(self) -> None:
        run = self.workdir
        cni = run / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-kubejobs.conflist").write_text(json.dumps(self.net.cni_config(cni / "ipam")))
        config = f"""\
version = 2
root = "{run}/containerd/root"
state = "{run}/containerd/state"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # the sandbox lacks CAP_SYS_RESOURCE: runc fails to write oom_score_adj otherwise
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  # the pods' network namespaces pinned under the state dir (stop() unmounts them), not
  # in the machine-wide /var/run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni}"
"""
        (run / "containerd.toml").write_text(config)
        svc = Service(
            "containerd",
            self._in_node(
                [
                    binary("containerd"),
                    "--config",
                    str(run / "containerd.toml"),
                    "--log-level",
                    "warn",
                ]
            ),
            self.log_dir,
            # where it finds its shim, containerd-shim-runc-v2
            env={"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        self.services["containerd"] = svc
        svc.start()
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            60,
            "containerd socket",
            interval=0.1,
            service=svc,
        )

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this node's containerd in the CRI namespace (k8s.io)."""
        res = subprocess.run(
            [binary("ctr"), "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise TestEnvError(f"ctr {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def _import_images(self) -> None:
        t0 = time.monotonic()
        for image in ("pause", "busybox", "kubejobs"):
            self.import_image(IMAGES_DIR / f"{image}.tar", f"localhost/{image}")
        self.image_import_seconds = time.monotonic() - t0

    def import_image(self, archive: Path, base_name: str) -> None:
        """Load an OCI archive (images/build.sh) as ``<base_name>:<its tag>``."""
        self.ctr("images", "import", "--base-name", base_name, str(archive), timeout=300)

    def images(self) -> list[str]:
        out = self.ctr("images", "list", "--quiet").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    # -- kubelet -------------------------------------------------------
    def _controllers(self) -> list[Path]:
        """The cgroup v1 hierarchies (and the unified one, if any) the kubelet uses."""
        found = []
        with contextlib.suppress(OSError):
            for entry in sorted(_CGROUP_FS.iterdir()):
                if entry.is_dir() and not entry.is_symlink() and (entry / "cgroup.procs").exists():
                    found.append(entry)
        return found

    def _make_cgroup_root(self) -> None:
        rel = self.cgroup_root.lstrip("/")
        for hierarchy in self._controllers():
            path = hierarchy / rel
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                # a v1 cpuset cgroup starts empty: no task could join it
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((hierarchy / knob).read_text())
            if hierarchy.name == "cpu" and (path / "cpu.shares").exists():
                (path / "cpu.shares").write_text(str(_POD_CPU_SHARES))

    def _start_kubelet(self) -> None:
        run = self.workdir / "kubelet"
        (run / "manifests").mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.net.node_ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": self.net.node_ip,
            "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "staticPodPath": str(run / "manifests"),
            "podLogsDir": str(run / "pod-logs"),
            "enforceNodeAllocatable": [],
            "evictionHard": {},
            # images cannot be pulled again: never collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "",  # pods resolve through the cluster DNS only
            "clusterDNS": [DNS_SERVICE_IP],
            "clusterDomain": "cluster.local",
            "registerWithTaints": [TAINT],
            "nodeStatusUpdateFrequency": "5s",
            "serializeImagePulls": False,
            "localStorageCapacityIsolation": True,
        }
        (run / "config.yaml").write_text(json.dumps(config, indent=2))
        labels = ",".join(f"{k}={v}" for k, v in LABEL.items())
        svc = Service(
            "kubelet",
            self._in_node(
                [
                    binary("kubelet"),
                    f"--config={run / 'config.yaml'}",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.net.node_ip}",
                    f"--root-dir={run}",
                    f"--cert-dir={run / 'pki'}",
                    f"--node-labels={labels}",
                    "--v=1",
                ]
            ),
            self.log_dir,
        )
        self.services["kubelet"] = svc
        svc.start()

    def _wait_registered(self) -> None:
        svc = self.services["kubelet"]

        def registered() -> bool:
            return self.kube._api_get(f"/api/v1/nodes/{self.name}") is not None

        wait_until(registered, 120, f"node {self.name} registered", interval=0.2, service=svc)

        def ready() -> bool:
            node = self.kube.get_json(f"/api/v1/nodes/{self.name}")
            taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            return conds.get("Ready") == "True" and not any(
                k.startswith("node.kubernetes.io/") for k in taints
            )

        wait_until(ready, 120, f"node {self.name} Ready", interval=0.25, service=svc)

    # -- Services and DNS ----------------------------------------------
    def _start_proxy(self) -> None:
        """kube-proxy in iptables mode: ClusterIPs work in the node's namespace. Started
        once the node is registered (it reads the node's address from the Node)."""
        run = self.workdir / "kube-proxy"
        run.mkdir(parents=True, exist_ok=True)
        ip = self.net.node_ip
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": self.net.pod_cidr,
            "detectLocalMode": "ClusterCIDR",
            # NodePorts on the node's address only: no route_localnet for 127.0.0.1
            "nodePortAddresses": ["primary"],
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
            "oomScoreAdj": 0,  # -999 needs CAP_SYS_RESOURCE
            "healthzBindAddress": f"{ip}:{_PROXY_HEALTH_PORT}",
            "metricsBindAddress": f"{ip}:10249",
            # leave the machine-wide conntrack table size and timeouts alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        (run / "config.yaml").write_text(json.dumps(config, indent=2))
        svc = Service(
            "kube-proxy",
            self._in_node([binary("kube-proxy"), f"--config={run / 'config.yaml'}", "--v=1"]),
            self.log_dir,
        )
        self.services["kube-proxy"] = svc
        svc.start()
        # the kubernetes Service's endpoint: the API server as the node reaches it (the API
        # server runs with --endpoint-reconciler-type=none and advertises loopback)
        self._apply_endpoints("default", "kubernetes", HOST_IP, {"https": self.kube.apiserver_port})
        url = f"http://{ip}:{_PROXY_HEALTH_PORT}/healthz"
        wait_until(lambda: http_ok(url), 60, "kube-proxy healthz", interval=0.2, service=svc)

    def _start_dns(self) -> None:
        """CoreDNS serving cluster.local (Services, headless Services' pods) on the node's
        address, as the ``kube-dns`` Service at ``DNS_SERVICE_IP``. Its build has no forward
        plugin and the Corefile no root zone: any other name is refused at once."""
        run = self.workdir / "coredns"
        run.mkdir(parents=True, exist_ok=True)
        ip = self.net.node_ip
        corefile = f"""\
cluster.local:53 in-addr.arpa:53 {{
    errors
    health {ip}:8080
    ready {ip}:{_DNS_READY_PORT}
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {self.kubeconfig} testenv
        pods disabled
        ttl 5
    }}
    loadbalance
}}
"""
        (run / "Corefile").write_text(corefile)
        svc = Service(
            "coredns",
            self._in_node([binary("coredns"), "-conf", str(run / "Corefile")]),
            self.log_dir,
        )
        self.services["coredns"] = svc
        svc.start()
        dns = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        }
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(dns))
        self._apply_endpoints("kube-system", "kube-dns", ip, {"dns": 53, "dns-tcp": 53})
        url = f"http://{ip}:{_DNS_READY_PORT}/ready"
        wait_until(lambda: http_ok(url), 60, "CoreDNS ready", interval=0.2, service=svc)

    def _apply_endpoints(
        self, namespace: str, service: str, address: str, ports: dict[str, int]
    ) -> None:
        """An EndpointSlice of a Service without a selector: the way to a server outside
        the cluster (the UDP port is the one named ``dns``, every other TCP)."""
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-{self.name}",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [
                {"name": name, "port": port, "protocol": "UDP" if name == "dns" else "TCP"}
                for name, port in ports.items()
            ],
        }
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(body))

    def expose(self, name: str, port: int, namespace: str) -> str:
        """A Service ``name`` in ``namespace`` for a server on this machine at ``port``
        (a selectorless Service and its EndpointSlice to ``HOST_IP``, as an operator puts a
        server outside the cluster behind a name); its DNS name."""
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]},
        }
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(service))
        self._apply_endpoints(namespace, name, HOST_IP, {"tcp": port})
        return f"{name}.{namespace}.svc.cluster.local"

    # -- clean-up ------------------------------------------------------
    def _cgroup_pids(self) -> set[int]:
        rel = self.cgroup_root.lstrip("/")
        pids: set[int] = set()
        for hierarchy in self._controllers():
            root = hierarchy / rel
            if not root.is_dir():
                continue
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text().split())
        return pids

    def _kill_containers(self) -> None:
        """Kill every container process (they outlive the kubelet and containerd's shims)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = self._cgroup_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        # the shims of this containerd (they exit once their containers are gone)
        marker = str(self.socket)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and marker.encode() in cmd:
                    os.kill(int(proc.name), signal.SIGKILL)

    def _unmount_all(self) -> None:
        """Unmount what the kubelet and containerd mounted under the work dir (deepest first)."""
        prefix = str(self.workdir.resolve()) + "/"
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
        for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _remove_cgroup_root(self) -> None:
        rel = self.cgroup_root.lstrip("/")
        for hierarchy in self._controllers():
            root = hierarchy / rel
            if not root.is_dir():
                continue
            dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
            for d in [*reversed(dirs), root]:
                with contextlib.suppress(OSError):
                    d.rmdir()

    def logs(self) -> dict[str, Service]:
        return dict(self.services)

    # -- what kubejobs needs to run Jobs here --------------------------
    def executor_settings(self) -> dict[str, str]:
        """kubejobs settings (KUBEJOBS_<NAME> values) that put an executor's Jobs on this node."""
        return {
            "inpod_image": kubejobs_image(),
            # the executor runs on this machine and its pods on the node: one address both
            # reach the Colonies server at (it listens on every address)
            "colonies_host": HOST_IP,
            "node_selector": json.dumps(LABEL),
            "tolerations": json.dumps(POD_PLACEMENT["tolerations"]),
            "termination_grace_seconds": "30",
        }

    def prepare_namespace(
        self, namespace: str, prvkey: str, s3_env: dict[str, str] | None = None
    ) -> None:
        """What the chart gives a Jobs namespace: the log shipper's account and Role, the
        executor key Secret and, with ``s3_env``, the S3 Secret (values never printed)."""
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": SHIPPER_ACCOUNT, "namespace": namespace},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": SHIPPER_ACCOUNT, "namespace": namespace},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": SHIPPER_ACCOUNT, "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": SHIPPER_ACCOUNT,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": SHIPPER_ACCOUNT, "namespace": namespace}
                ],
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kubejobs-executor-key", "namespace": namespace},
                "stringData": {"prvkey": prvkey},
            },
        ]
        if s3_env is not None:
            s3_env = {**s3_env, "AWS_S3_ENDPOINT": self.pod_url(s3_env["AWS_S3_ENDPOINT"])}
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "kubejobs-s3", "namespace": namespace},
                    "stringData": dict(s3_env),
                }
            )
        body = {"apiVersion": "v1", "kind": "List", "items": objects}
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(body))
