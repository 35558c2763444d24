"""A real Kueue (sigs.k8s.io/kueue) beside the test control plane.

Built by testenv/install.sh (binary ``.testenv/bin/kueue``, manifests in
``.testenv/share/kueue``). :class:`KueueServer` runs it as a plain process
against a started :class:`testenv.kube.KubeCluster`, with no Service or
Deployment: its webhooks are registered by URL (``https://127.0.0.1:<port>``)
with the CA of a PKI of its own.

The API server is shared by every test of the session, so only what Kueue
must see goes through it: the ``batch/v1`` Job webhooks carry an
objectSelector for the label ``kueue.x-k8s.io/queue-name`` (unlabelled Jobs
never reach Kueue), and :meth:`KueueServer.stop` removes the webhook
configurations before it stops the process (``failurePolicy: Fail`` would
otherwise refuse every labelled Job, and the Kueue kinds).

The conversion webhook (``/convert``) is set on the CRDs Kueue's own
kustomization names, so v1beta1 and v1beta2 both work while Kueue runs; the
helpers here use v1beta2 (the storage version, which needs no conversion).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testenv._proc import PREFIX, Service, TestEnvError, binary, free_port, http_ok, wait_until
from testenv.kube import KubeCluster, _write_pki

KUEUE_VERSION = "v0.17.0"
SHARE = PREFIX / "share" / "kueue"
API = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
#: Kueue v0.17.0 reads the metrics certificate from this fixed path whenever
#: internal cert management is off, even with metrics off (cmd/kueue/main.go:
#: metricsCertPath); no setting moves it, so it is written there (needs root).
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
MUTATING = "kueue-mutating-webhook-configuration"
VALIDATING = "kueue-validating-webhook-configuration"
# the webhooks kept from Kueue's manifests: batch/v1 Jobs and Kueue's own kinds
_KEPT_PATH = re.compile(r"^/(mutate|validate)-(batch-v1-job|kueue-x-k8s-io-.*)$")
_JOB_PATH = re.compile(r"-batch-v1-job$")


@dataclass(frozen=True)
class KueueQueues:
    """The objects :meth:`KueueServer.create_queues` made; label Jobs with ``local_queue``."""

    namespace: str
    local_queue: str
    cluster_queue: str
    flavor: str

    @property
    def job_labels(self) -> dict[str, str]:
        return {QUEUE_LABEL: self.local_queue}


class KueueServer:
    """Kueue's controller manager and webhooks for one KubeCluster (one per cluster)."""

    def __init__(self, kube: KubeCluster, workdir: Path | None = None) -> None:
        self.kube = kube
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubejobs-kueue-"))
        self.webhook_port = free_port()
        self.health_port = free_port()
        self.pki = self.workdir / "pki"
        self.cert_dir = self.workdir / "webhook-certs"
        self.config_path = self.workdir / "kueue-config.yaml"
        self.version = KUEUE_VERSION
        self.service = Service(
            "kueue",
            [
                binary("kueue"),
                f"--config={self.config_path}",
                f"--kubeconfig={kube.kubeconfig}",
            ],
            self.workdir / "logs",
        )

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"

    @property
    def services(self) -> dict[str, Service]:
        """Name -> Service, as KubeCluster.services (for log collection)."""
        return {self.service.name: self.service}

    # -- start / stop ------------------------------------------------------
    def start(self) -> KueueServer:
        binary("kueue")
        if not (SHARE / "crds").is_dir():
            raise TestEnvError(f"Kueue manifests missing in {SHARE}: run testenv/install.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_certs()
        _ensure_metrics_certs()
        self.config_path.write_text(self._config())
        try:
            self._apply_crds()
            self.kube.kubectl("create", "namespace", "kueue-system", check=False)
            self.service.start()
            wait_until(self._ready, 120, "kueue /readyz", interval=0.1, service=self.service)
            self._register_webhooks()
            wait_until(self._job_webhook_active, 60, "Kueue's Job webhook", service=self.service)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # the webhooks first: with failurePolicy Fail and no Kueue behind them,
        # labelled Jobs and every Kueue object could no longer be written
        for kind, name in (
            ("mutatingwebhookconfiguration", MUTATING),
            ("validatingwebhookconfiguration", VALIDATING),
        ):
            with contextlib.suppress(Exception):
                self.kube.kubectl("delete", kind, name, "--ignore-not-found")
        self.service.stop(timeout=10)

    def _ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.health_port}/readyz")

    # -- files ---------------------------------------------------------------
    def _write_certs(self) -> None:
        # testenv.kube's PKI: a fresh CA and a serving cert for 127.0.0.1 ("apiserver")
        _write_pki(self.pki)
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.pki / "apiserver.crt", self.cert_dir / "tls.crt")
        shutil.copyfile(self.pki / "apiserver.key", self.cert_dir / "tls.key")
        self.ca_bundle = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()

    def _config(self) -> str:
        cfg = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": "kueue-system",
            "manageJobsWithoutQueueName": False,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {
                "host": "127.0.0.1",
                "port": self.webhook_port,
                "certDir": str(self.cert_dir),
            },
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            # the visibility server would exit without its own certificate
            "featureGates": {"VisibilityOnDemand": False},
            "integrations": {"frameworks": ["batch/job"]},
        }
        return json.dumps(cfg, indent=2)

    # -- CRDs and webhooks ---------------------------------------------------
    def _apply_crds(self) -> None:
        converted = _conversion_crds()
        crds = []
        for path in sorted((SHARE / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            if crd["metadata"]["name"] in converted:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": {"url": f"{self.url}/convert", "caBundle": self.ca_bundle},
                        "conversionReviewVersions": ["v1"],
                    },
                }
            crds.append(crd)
        # server-side: the workloads CRD is too big for the last-applied annotation
        self.kube.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kubejobs-testenv",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": crds}),
        )
        # polled, not `kubectl wait`: that fails at once ("accessor error: <nil>") on a CRD
        # whose status has no conditions yet, which a loaded API server shows for a while
        names = [c["metadata"]["name"] for c in crds]
        wait_until(lambda: all(map(self._established, names)), 60, "Kueue's CRDs Established")

    def _established(self, crd: str) -> bool:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
        try:
            conditions = self.kube.get_json(path).get("status", {}).get("conditions") or []
        except TestEnvError:
            return False
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def webhook_configurations(self) -> list[dict[str, Any]]:
        """Kueue's admission webhooks, pointed at this server, Jobs limited to labelled ones."""
        docs = [
            d for d in yaml.safe_load_all((SHARE / "webhook" / "manifests.yaml").read_text()) if d
        ]
        out = []
        for doc in docs:
            hooks = []
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                if not _KEPT_PATH.match(path):
                    continue
                hook["clientConfig"] = {"url": self.url + path, "caBundle": self.ca_bundle}
                if _JOB_PATH.search(path):
                    # only Jobs meant for Kueue: the API server is shared with every test
                    hook["objectSelector"] = {
                        "matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]
                    }
                hooks.append(hook)
            kind = doc["kind"]
            name = MUTATING if kind == "MutatingWebhookConfiguration" else VALIDATING
            out.append({**doc, "metadata": {"name": name}, "webhooks": hooks})
        return out

    def _register_webhooks(self) -> None:
        body = {"apiVersion": "v1", "kind": "List", "items": self.webhook_configurations()}
        self.kube.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kubejobs-testenv",
            "-f",
            "-",
            input=json.dumps(body),
        )

    def _job_webhook_active(self) -> bool:
        # the API server picks webhook configurations up asynchronously: a
        # server-side dry run shows when Kueue's Job defaulting (suspend) applies
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "kueue-probe", "labels": {QUEUE_LABEL: "kueue-probe"}},
            "spec": {
                "suspend": False,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox:1.36"}],
                    }
                },
            },
        }
        res = self.kube.kubectl(
            "create", "-n", "default", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(job),
            check=False,
        )  # fmt: skip
        return res.returncode == 0 and json.loads(res.stdout)["spec"].get("suspend") is True

    # -- queues and priorities ------------------------------------------------
    def create_queues(
        self,
        namespace: str,
        name: str = "kj-queue",
        cpu: str = "4",
        memory: str = "64Gi",
        preemption: bool = False,
        resources: dict[str, str] | None = None,
        queueing_strategy: str = "BestEffortFIFO",
    ) -> KueueQueues:
        """A ResourceFlavor, a ClusterQueue and a LocalQueue ``name`` in ``namespace``.

        The LocalQueue is what Jobs name in their ``kueue.x-k8s.io/queue-name``
        label; the cluster-scoped flavor and ClusterQueue are named
        ``<namespace>-<name>`` so that tests never share them. ``resources``
        adds quotas (e.g. ``{"nvidia.com/gpu": "8"}``): Kueue does not admit a
        Job asking for a resource its ClusterQueue does not list. With
        ``preemption`` a Workload of higher priority evicts lower ones
        (``withinClusterQueue: LowerPriority``).
        """
        q = KueueQueues(namespace, name, f"{namespace}-{name}"[:253], f"{namespace}-{name}"[:253])
        quotas = {"cpu": cpu, "memory": memory, **(resources or {})}
        cq_spec: dict[str, Any] = {
            "namespaceSelector": {},  # {} admits every namespace; null would admit none
            "queueingStrategy": queueing_strategy,
            "resourceGroups": [
                {
                    "coveredResources": list(quotas),
                    "flavors": [
                        {
                            "name": q.flavor,
                            "resources": [
                                {"name": r, "nominalQuota": v} for r, v in quotas.items()
                            ],
                        }
                    ],
                }
            ],
        }
        if preemption:
            cq_spec["preemption"] = {"withinClusterQueue": "LowerPriority"}
        items = [
            {"apiVersion": API, "kind": "ResourceFlavor", "metadata": {"name": q.flavor}},
            {
                "apiVersion": API,
                "kind": "ClusterQueue",
                "metadata": {"name": q.cluster_queue},
                "spec": cq_spec,
            },
            {
                "apiVersion": API,
                "kind": "LocalQueue",
                "metadata": {"name": q.local_queue, "namespace": namespace},
                "spec": {"clusterQueue": q.cluster_queue},
            },
        ]
        self.kube.kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        return q

    def delete_queues(self, queues: KueueQueues, wait: bool = False) -> None:
        """Delete what :meth:`create_queues` made (call while Kueue runs).

        The ClusterQueue and flavor keep Kueue's ``resource-in-use`` finalizer
        until no admitted Workload uses them; without ``wait`` they go once the
        namespace's Jobs are gone.
        """
        for args in (
            ("localqueue.kueue.x-k8s.io", queues.local_queue, "-n", queues.namespace),
            ("clusterqueue.kueue.x-k8s.io", queues.cluster_queue),
            ("resourceflavor.kueue.x-k8s.io", queues.flavor),
        ):
            self.kube.kubectl(
                "delete", *args, "--ignore-not-found", f"--wait={'true' if wait else 'false'}",
                timeout=120,
            )  # fmt: skip

    def create_priority_class(self, name: str, value: int, description: str = "") -> str:
        """A WorkloadPriorityClass; Jobs use it with the label ``kueue.x-k8s.io/priority-class``."""
        body = {
            "apiVersion": API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description or f"kubejobs testenv priority {value}",
        }
        self.kube.kubectl("create", "-f", "-", input=json.dumps(body))
        return name

    def delete_priority_class(self, name: str) -> None:
        self.kube.kubectl(
            "delete", "workloadpriorityclass.kueue.x-k8s.io", name, "--ignore-not-found"
        )

    def wait_garbage_collector(self, timeout: float = 120) -> None:
        """Return once the garbage collector deletes Kueue objects whose owner is gone.

        Kueue frees the quota of a deleted Job only when its Workload goes,
        and the Workload is deleted by the garbage collector (ownerReference).
        The collector notices CRDs installed after it started only at its next
        discovery resync (every 30 s), so right after :meth:`start` a deleted
        admitted Job can hold its quota for up to 30 s. Call this where that
        matters (benchmarks); it probes with an owned WorkloadPriorityClass.
        """
        for kind in ("workloadpriorityclass.kueue.x-k8s.io", "clusterrole"):  # an earlier probe's
            self.kube.kubectl("delete", kind, "kueue-gc-probe", "--ignore-not-found")
        owner = json.loads(
            self.kube.kubectl(
                "create", "clusterrole", "kueue-gc-probe", "--verb=get", "--resource=pods",
                "-o", "json",
            ).stdout
        )  # fmt: skip
        ref = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
        probe = {
            "apiVersion": API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": "kueue-gc-probe", "ownerReferences": [ref]},
            "value": 0,
        }
        self.kube.kubectl("create", "-f", "-", input=json.dumps(probe))
        self.kube.kubectl("delete", "clusterrole", "kueue-gc-probe")

        def collected() -> bool:
            res = self.kube.kubectl(
                "get", "workloadpriorityclass.kueue.x-k8s.io", "kueue-gc-probe", check=False
            )
            return res.returncode != 0 and "NotFound" in res.stderr

        wait_until(collected, timeout, "the garbage collector to watch Kueue's kinds", 0.5)

    # -- reading -------------------------------------------------------------
    def workloads_of_job(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The Workloads whose controller is the Job with ``job_uid``."""
        out = self.kube.kubectl(
            "get", "workloads.kueue.x-k8s.io", "-n", namespace, "-o", "json"
        ).stdout
        return [
            w
            for w in json.loads(out)["items"]
            if any(
                o.get("uid") == job_uid and o.get("controller")
                for o in w["metadata"].get("ownerReferences", [])
            )
        ]


def _conversion_crds() -> set[str]:
    """The CRDs whose /convert webhook Kueue's kustomization enables."""
    conv = SHARE / "conversion"
    kust = yaml.safe_load((conv / "kustomization.yaml").read_text())
    names = set()
    for patch in kust.get("patches", []):
        path = patch.get("path", "") if isinstance(patch, dict) else ""
        if Path(path).name.startswith("webhook_in_"):
            names.add(yaml.safe_load((conv / path).read_text())["metadata"]["name"])
    return names


def _ensure_metrics_certs() -> None:
    """Put a key pair in /etc/kueue/metrics/certs once (any pair: metrics are off)."""
    if (METRICS_CERT_DIR / "tls.crt").exists() and (METRICS_CERT_DIR / "tls.key").exists():
        return
    try:
        METRICS_CERT_DIR.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".certs-", dir=METRICS_CERT_DIR.parent))
        tmp.chmod(0o755)  # a Kueue that is not root may read the certificate
    except OSError as err:
        raise TestEnvError(
            f"Kueue needs {METRICS_CERT_DIR}/tls.crt and tls.key (a fixed path in v0.17.0): "
            f"run as root or create them ({err})"
        ) from err
    try:
        _write_pki(tmp / "pki")
        shutil.copyfile(tmp / "pki" / "apiserver.crt", tmp / "tls.crt")
        shutil.copyfile(tmp / "pki" / "apiserver.key", tmp / "tls.key")
        shutil.rmtree(tmp / "pki")
        # a rename, so a concurrent session never reads a half-written pair
        with contextlib.suppress(OSError):
            if METRICS_CERT_DIR.is_dir() and not any(METRICS_CERT_DIR.iterdir()):
                METRICS_CERT_DIR.rmdir()
            os.rename(tmp, METRICS_CERT_DIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
