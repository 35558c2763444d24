"""A real node beside the kwok nodes: containerd + runc + a kubelet, for pods whose containers must run.

``RealNode(kube).start()`` starts containerd (v2, built by
testenv/install-node.sh; its own root, state, socket and CNI config under the
work dir; the version 2 config below is migrated by containerd itself) and a kubelet built into the multi-call kube
binary, registers the node ``real-node-0`` with the cluster's admin
credentials, gives it the address 127.0.0.1 (the kubelet refuses a loopback
``--node-ip``), and imports the images ``images/build.sh`` built
(``.testenv/images/*.tar``): ``localhost/pause:1`` (the sandbox),
``localhost/busybox:1`` and ``localhost/kubejobs:<version>``. Images cannot be
pulled (no registry): pods name these with the default pull policy.

Only pods that ask land on the node: it carries the taint ``TAINT`` and the
label ``LABEL`` (``POD_PLACEMENT`` has the toleration and node selector).
Its pods must use ``hostNetwork`` (the CNI config has only loopback, so a pod
with its own network namespace cannot start): they reach the API server, the
Colonies server and S3 on 127.0.0.1. The ``kubernetes`` Service IP is not
routed (no kube-proxy), so in-cluster clients in those pods need
``KUBERNETES_SERVICE_HOST``/``_PORT`` set to ``api_env`` (kubejobs'
``inpod_env`` setting does that for the injected containers).

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

from testenv._proc import BIN, PREFIX, ROOT, Service, TestEnvError, binary, free_port, wait_until

if TYPE_CHECKING:
    from testenv.kube import KubeCluster

NODE_NAME = "real-node-0"
TAINT = {"key": "kubejobs.io/real-node", "value": "true", "effect": "NoSchedule"}
LABEL = {"kubejobs.io/real-node": "true"}
#: What a pod spec needs to land on the real node.
POD_PLACEMENT: dict[str, Any] = {
    "nodeSelector": dict(LABEL),
    "tolerations": [{**TAINT, "operator": "Equal"}],
    "hostNetwork": True,
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
_UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"


def kubejobs_image() -> str:
    from kubejobs import __version__

    return f"localhost/kubejobs:{__version__}"


class RealNode:
    """containerd + kubelet registering ``real-node-0`` with ``kube``."""

    def __init__(self, kube: KubeCluster, workdir: Path, name: str = NODE_NAME) -> None:
        self.kube = kube
        self.name = name
        self.workdir = Path(workdir)
        self.log_dir = self.workdir / "logs"
        self.socket = self.workdir / "containerd.sock"
        self.kubelet_port = free_port()
        self.healthz_port = free_port()
        self.cgroup_root = f"/kubejobs-{os.getpid()}-{os.urandom(2).hex()}"
        self.services: dict[str, Service] = {}
        self.image_import_seconds = 0.0

    # -- environment for pods -----------------------------------------
    @property
    def api_env(self) -> dict[str, str]:
        """How in-cluster clients on this node reach the API server (127.0.0.1, its port)."""
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.kube.apiserver_port),
        }

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
            self._start_containerd()
            self._import_images()
            self._make_cgroup_root()
            self._start_kubelet()
            self._wait_registered()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        kubelet = self.services.get("kubelet")
        if kubelet is not None:
            kubelet.stop(timeout=10)
        self._kill_containers()
        containerd = self.services.get("containerd")
        if containerd is not None:
            containerd.stop(timeout=10)
        self._unmount_all()
        self._remove_cgroup_root()
        with contextlib.suppress(Exception):
            self.kube.kubectl("delete", "node", self.name, "--ignore-not-found", check=False)

    # -- containerd ----------------------------------------------------
    def _start_containerd(self) -> None:
        run = self.workdir
        cni = run / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-loopback.conflist").write_text(
            json.dumps(
                {"cniVersion": "1.0.0", "name": "loopback", "plugins": [{"type": "loopback"}]}
            )
        )
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
            [binary("containerd"), "--config", str(run / "containerd.toml"), "--log-level", "warn"],
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
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
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
            "resolvConf": "",
            "registerWithTaints": [TAINT],
            "nodeStatusUpdateFrequency": "5s",
            "serializeImagePulls": False,
            "localStorageCapacityIsolation": True,
        }
        (run / "config.yaml").write_text(json.dumps(config, indent=2))
        labels = ",".join(f"{k}={v}" for k, v in LABEL.items())
        svc = Service(
            "kubelet",
            [
                binary("kubelet"),
                f"--config={run / 'config.yaml'}",
                f"--kubeconfig={self.kube.kubeconfig}",
                f"--hostname-override={self.name}",
                f"--root-dir={run}",
                f"--cert-dir={run / 'pki'}",
                f"--node-labels={labels}",
                # "external": the kubelet keeps the addresses set on the node (ours)
                # instead of putting the machine's own IP there, which it does
                # not listen on
                "--cloud-provider=external",
                "--v=1",
            ],
            self.log_dir,
        )
        self.services["kubelet"] = svc
        svc.start()

    def _wait_registered(self) -> None:
        svc = self.services["kubelet"]

        def registered() -> bool:
            return self.kube._api_get(f"/api/v1/nodes/{self.name}") is not None

        wait_until(registered, 120, f"node {self.name} registered", interval=0.2, service=svc)
        # The kubelet refuses a loopback --node-ip and would report the
        # machine's address, where it does not listen; the API server needs
        # 127.0.0.1 to reach it for logs and exec. With --cloud-provider=external
        # the node waits for a cloud controller to set its addresses and lift
        # its uninitialized taint: this is that controller.
        patch = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ]
            }
        }

        def ready() -> bool:
            node = self.kube.get_json(f"/api/v1/nodes/{self.name}")
            status = node.get("status", {})
            if {"type": "InternalIP", "address": "127.0.0.1"} not in status.get("addresses", []):
                self.kube.kubectl(
                    "patch",
                    "node",
                    self.name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    json.dumps(patch),
                )
                return False
            taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
            if _UNINITIALIZED in taints:
                self.kube.kubectl("taint", "node", self.name, f"{_UNINITIALIZED}-")
                return False
            conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return conds.get("Ready") == "True" and not any(
                k.startswith("node.kubernetes.io/") for k in taints
            )

        wait_until(ready, 120, f"node {self.name} Ready", interval=0.25, service=svc)

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
            "host_network": "true",
            "inpod_env": json.dumps(self.api_env),
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
