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
    """PersistentVolumeClaim for the shared data volume (subPath per Job); empty: an emptyDir."""
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

    def __post_init__(self) -> None:
        try:
            parse_kube_version(self.kube_version)
        except ValueError as err:
            raise SettingsError(f"kube_version: {err}") from None
        if self.ttl_seconds_after_finished < 0 or self.termination_grace_seconds < 0:
            raise SettingsError(
                "ttl_seconds_after_finished and termination_grace_seconds must be >= 0"
            )
        for name in self.inpod_env:
            if not _ENV_NAME.fullmatch(name):
                raise SettingsError(f"inpod_env: {name!r} is not an environment variable name")
            if name.startswith((*_RESERVED_ENV, "AWS_S3_")):
                raise SettingsError(
                    f"inpod_env: {name!r} is set by kubejobs itself; "
                    f"names starting with {', '.join(_RESERVED_ENV)} or AWS_S3_ are reserved"
                )
