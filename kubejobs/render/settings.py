"""Settings that shape rendered manifests (executor-wide, not per spec)."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubejobs import __version__
from kubejobs.errors import SettingsError
from kubejobs.render.kube_version import parse_kube_version

DEFAULT_KUBE_VERSION = "1.34"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: Prefixes of the variables render/inject.py gives the injected containers.
_RESERVED_ENV = ("COLONIES_", "KUBEJOBS_")


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclass(frozen=True)
class RenderSettings:
    """Every setting that reaches a manifest. Env var: KUBEJOBS_<FIELD>."""

    kube_version: str = DEFAULT_KUBE_VERSION
    """Target Kubernetes version (1.29 or newer gets the native-sidecar log shipper)."""
    templates_dir: str = ""
    """Folder of custom templates layered over the built-ins (see `kubejobs templates dump`)."""
    namespace: str = ""
    """Namespace written into manifests; empty leaves it to kubectl or the executor."""
    colony_name: str = ""
    """Colony name for COLONIES_COLONY_NAME when the spec's conditions do not name one."""
    executor_name: str = ""
    """Executor that owns the Jobs (an annotation, used to find them after a restart)."""
    colonies_host: str = "colonies-server"
    """Colonies server host the injected containers talk to."""
    colonies_port: int = 50080
    """Colonies server port."""
    colonies_tls: bool = False
    """Whether the injected containers use TLS to the Colonies server."""
    executor_key_secret: str = "kubejobs-executor-key"
    """Secret (key `prvkey`) with the executor's private key, mounted only into injected containers."""
    s3_secret: str = "kubejobs-s3"
    """Secret with AWS_S3_* keys for CFS, mounted only into injected containers of specs with fs."""
    inpod_image: str = f"ghcr.io/kubejobs/kubejobs:{__version__}"
    """Image of the injected log shipper and data stager."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource name for conditions.gpu.count (nvidia.com/gpu, amd.com/gpu...)."""
    gpu_node_label: str = "nvidia.com/gpu.product"
    """Node label matched against conditions.gpu.name."""
    pvc: str = ""
    """PersistentVolumeClaim for the data volume, its root mounted at fs.mount in every Job
    (shared across processes, docs/shared-volume.md); empty: an emptyDir per pod."""
    service_account: str = "kubejobs-log-shipper"
    """Pod service account; its token is mounted only into the log shipper."""
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets for pulling the main image (comma-separated in the environment)."""
    node_selector: Mapping[str, str] = field(default_factory=_empty)
    """Node selector added to every pod."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """Tolerations added to every pod."""
    priority_class: str = ""
    """PriorityClass of every pod."""
    extra_labels: Mapping[str, str] = field(default_factory=_empty)
    """Labels added to Jobs and pods."""
    extra_annotations: Mapping[str, str] = field(default_factory=_empty)
    """Annotations added to Jobs and pods."""
    ttl_seconds_after_finished: int = 3600
    """Safety net: Kubernetes deletes a finished Job after this, if the executor has not."""
    termination_grace_seconds: int = 60
    """Pod grace period: the log shipper drains and syncs results within it."""
    host_network: bool = False
    """Run the pods in their node's network namespace (hostNetwork, dnsPolicy
    ClusterFirstWithHostNet): for nodes without pod networking, or programs that
    need the node's interfaces. The pod's containers then share the node's ports."""
    inpod_env: Mapping[str, str] = field(default_factory=_empty)
    """Environment added to the injected containers (log shipper, data stager), e.g.
    KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT for host-network pods where
    the kubernetes Service IP is not routed. Names kubejobs sets itself are refused."""
    queue_name: str = ""
    """Kueue LocalQueue of every Job: the Job gets the kueue.x-k8s.io/queue-name label and
    is created suspended, for Kueue to admit. Empty: no Kueue (capacity_* and max_jobs only)."""
    workload_priority_class: str = ""
    """Kueue WorkloadPriorityClass of every Job (kueue.x-k8s.io/priority-class label), unless
    workload_priority_classes picks one by the spec's priority."""
    workload_priority_classes: Mapping[str, int] = field(default_factory=_empty)
    """WorkloadPriorityClass by the spec's priority: class name -> the lowest spec priority
    that gets it; the class with the highest such bound at or below the spec's priority wins.
    A spec below every bound gets workload_priority_class."""
    colonies_ca_configmap: str = ""
    """ConfigMap (key ca.crt) with the CA bundle that signed the Colonies server's certificate,
    mounted read-only into the injected containers. Empty: the system's public CAs."""
    colonies_ca_secret: str = ""
    """As colonies_ca_configmap, from a Secret (key ca.crt). At most one of the two."""
    restricted_pods: bool = False
    """Give the pod and its main containers a securityContext that passes the `restricted`
    Pod Security level (non-root as run_as_user, no privilege escalation, no capabilities,
    RuntimeDefault seccomp)."""
    run_as_user: int = 65532
    """User (and group) id of the main containers with restricted_pods; also the fsGroup
    of pods with a pvc."""
    master_port: int = 29500
    """MASTER_PORT of specs with more than one rank: the port rank 0 listens on for the
    others (torch.distributed's rendezvous). With host_network it is a port of the node."""

    def __post_init__(self) -> None:
        try:
            parse_kube_version(self.kube_version)
        except ValueError as err:
            raise SettingsError(f"kube_version: {err}") from None
        if self.ttl_seconds_after_finished < 0 or self.termination_grace_seconds < 0:
            raise SettingsError(
                "ttl_seconds_after_finished and termination_grace_seconds must be >= 0"
            )
        for name, bound in self.workload_priority_classes.items():
            if isinstance(bound, bool) or not isinstance(bound, int):
                raise SettingsError(
                    f"workload_priority_classes: {name!r} maps to {bound!r}; "
                    "expected an integer (the lowest spec priority that gets the class)"
                )
        if self.workload_priority_classes and not self.queue_name:
            raise SettingsError("workload_priority_classes is a Kueue setting: set queue_name too")
        if self.workload_priority_class and not self.queue_name:
            raise SettingsError("workload_priority_class is a Kueue setting: set queue_name too")
        if self.colonies_ca_configmap and self.colonies_ca_secret:
            raise SettingsError("set colonies_ca_configmap or colonies_ca_secret, not both")
        if self.restricted_pods and self.host_network:
            raise SettingsError(
                "restricted_pods and host_network cannot be combined: the restricted (and even "
                "the baseline) Pod Security level forbids hostNetwork, so the API server would "
                "refuse every pod. Turn one of them off (nodes without pod networking need "
                "host_network and a namespace that does not enforce restricted)"
            )
        if not 1 <= self.master_port <= 65535:
            raise SettingsError(f"master_port: {self.master_port} is not a port (1 to 65535)")
        if self.run_as_user < 1:
            raise SettingsError("run_as_user must be a non-root user id (1 or more)")
        for name in self.inpod_env:
            if not _ENV_NAME.fullmatch(name):
                raise SettingsError(f"inpod_env: {name!r} is not an environment variable name")
            if name.startswith((*_RESERVED_ENV, "AWS_S3_")):
                raise SettingsError(
                    f"inpod_env: {name!r} is set by kubejobs itself; "
                    f"names starting with {', '.join(_RESERVED_ENV)} or AWS_S3_ are reserved"
                )
