"""restricted_pods: make a rendered Job's pod pass the `restricted` Pod Security level.

Runs after injection, as data, so custom templates get it too. Policy for what a
template wrote itself: a compliant value is kept (a runAsUser of its own, a
Localhost seccomp profile, extra dropped capabilities, NET_BIND_SERVICE); a
missing one is filled in (non-root as run_as_user, group and fsGroup the same,
no privilege escalation, drop ALL, RuntimeDefault seccomp); a value the level
forbids is refused with a TemplateError naming the template and the field,
never silently overwritten: the author asked for it, and a pod that quietly
runs differently from its template is harder to debug than one that does not
render. The checks follow k8s.io/pod-security-admission v0.34 (restricted,
which includes baseline); the injected containers go through the same checks,
so they cannot drift out of compliance unnoticed.
"""

from __future__ import annotations

from typing import Any

from kubejobs.errors import TemplateError
from kubejobs.render.settings import RenderSettings

#: Inline volume types the restricted level allows (besides the volume's name).
ALLOWED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
POD = "spec.template.spec"


def restrict(job: dict[str, Any], settings: RenderSettings, source: str) -> None:
    """Make `job`'s pod restricted in place (no-op without settings.restricted_pods)."""
    if not settings.restricted_pods:
        return
    template = job["spec"]["template"]
    pod: dict[str, Any] = template["spec"]
    check = _Checker(source)
    check.pod(pod, template.get("metadata") or {})
    uid = settings.run_as_user
    pod_context = _mapping(pod, "securityContext")
    pod_context.setdefault("runAsNonRoot", True)
    pod_context.setdefault("runAsUser", uid)
    pod_context.setdefault("runAsGroup", uid)
    # The data volume (emptyDir or the shared PVC) is group-owned by fsGroup and
    # every container gets it as a supplementary group, so the main containers may read and
    # write what the stager put there, whichever uid each runs as. OnRootMismatch: a PVC
    # shared by many Jobs is not walked recursively at every pod start.
    pod_context.setdefault("fsGroup", uid)
    pod_context.setdefault("fsGroupChangePolicy", "OnRootMismatch")
    pod_context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    for _field, container in _containers(pod):
        context = _mapping(container, "securityContext")
        context.setdefault("runAsNonRoot", True)
        context.setdefault("runAsUser", uid)
        context.setdefault("runAsGroup", uid)
        context.setdefault("allowPrivilegeEscalation", False)
        context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
        capabilities = _mapping(context, "capabilities")
        drop = list(capabilities.get("drop") or [])
        if "ALL" not in drop:
            capabilities["drop"] = [*drop, "ALL"]
    check.pod(pod, template.get("metadata") or {}, complete=True)


def _mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        value = obj[key] = {}
    return value


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{field}[{i}]", container)
        for field in ("initContainers", "containers", "ephemeralContainers")
        for i, container in enumerate(pod.get(field) or [])
        if isinstance(container, dict)
    ]


class _Checker:
    """Refuses what the restricted level forbids, naming the template and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def refuse(self, path: str, value: Any, why: str) -> None:
        raise TemplateError(
            f"{self.source}: {path} is {'missing' if value is None else repr(value)}, which the restricted Pod Security level "
            f"forbids (setting restricted_pods): {why}"
        )

    def pod(self, pod: dict[str, Any], metadata: dict[str, Any], complete: bool = False) -> None:
        """Refuse forbidden values; with `complete`, also missing required ones (after filling)."""
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                self.refuse(f"{POD}.{key}", pod[key], "pods may not share the node's namespaces")
        for name, value in (metadata.get("annotations") or {}).items():
            if str(name).startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or str(value).startswith("localhost/")
            ):
                self.refuse(
                    f"spec.template.metadata.annotations[{name!r}]",
                    value,
                    "use runtime/default or localhost/<profile>",
                )
        context = pod.get("securityContext") or {}
        self.context(f"{POD}.securityContext", context)
        for sysctl in context.get("sysctls") or []:
            if sysctl.get("name") not in ALLOWED_SYSCTLS:
                self.refuse(
                    f"{POD}.securityContext.sysctls",
                    sysctl.get("name"),
                    "only the namespaced, safe sysctls are allowed",
                )
        for i, volume in enumerate(pod.get("volumes") or []):
            kinds = sorted(set(volume) - {"name"})
            if any(kind not in ALLOWED_VOLUMES for kind in kinds):
                self.refuse(
                    f"{POD}.volumes[{i}] ({volume.get('name')!r})",
                    ",".join(kinds),
                    f"volumes may only be {', '.join(sorted(ALLOWED_VOLUMES))}",
                )
        for field, container in _containers(pod):
            where = f"{POD}.{field} ({container.get('name')!r})"
            self.container(where, container)
            if complete:
                self.required(where, context, container.get("securityContext") or {})

    def required(self, where: str, pod: dict[str, Any], context: dict[str, Any]) -> None:
        path = f"{where}.securityContext"
        if context.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            self.refuse(f"{path}.runAsNonRoot", None, "must be true here or on the pod")
        if context.get("allowPrivilegeEscalation") is not False:
            self.refuse(f"{path}.allowPrivilegeEscalation", None, "must be false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            self.refuse(f"{path}.capabilities.drop", None, "must include ALL")
        if not (context.get("seccompProfile") or pod.get("seccompProfile")):
            self.refuse(f"{path}.seccompProfile", None, "must be set here or on the pod")

    def container(self, where: str, container: dict[str, Any]) -> None:
        context = container.get("securityContext") or {}
        path = f"{where}.securityContext"
        self.context(path, context)
        if context.get("privileged"):
            self.refuse(f"{path}.privileged", context["privileged"], "no privileged containers")
        if context.get("allowPrivilegeEscalation"):
            self.refuse(
                f"{path}.allowPrivilegeEscalation", True, "privilege escalation must be off"
            )
        if context.get("procMount", "Default") != "Default":
            self.refuse(f"{path}.procMount", context["procMount"], "only the Default /proc")
        added = set((context.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            self.refuse(
                f"{path}.capabilities.add",
                sorted(added),
                "after dropping ALL, only NET_BIND_SERVICE may be added",
            )
        for i, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                self.refuse(f"{where}.ports[{i}].hostPort", port["hostPort"], "no host ports")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            self.handler(f"{where}.{probe}", container.get(probe))
        for hook, handler in (container.get("lifecycle") or {}).items():
            self.handler(f"{where}.lifecycle.{hook}", handler)

    def handler(self, where: str, handler: Any) -> None:
        for kind in ("httpGet", "tcpSocket"):
            target = (handler or {}).get(kind) or {}
            if target.get("host"):
                self.refuse(f"{where}.{kind}.host", target["host"], "probes may not name a host")

    def context(self, path: str, context: dict[str, Any]) -> None:
        """The fields pod and container security contexts share."""
        if context.get("runAsNonRoot") is False:
            self.refuse(f"{path}.runAsNonRoot", False, "containers must run as non-root")
        if context.get("runAsUser") == 0:
            self.refuse(f"{path}.runAsUser", 0, "uid 0 is root; leave it out to get run_as_user")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp not in (None, "RuntimeDefault", "Localhost"):
            self.refuse(f"{path}.seccompProfile.type", seccomp, "use RuntimeDefault or Localhost")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            self.refuse(f"{path}.appArmorProfile.type", apparmor, "use RuntimeDefault or Localhost")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES:
            self.refuse(
                f"{path}.seLinuxOptions.type",
                selinux["type"],
                f"allowed: {', '.join(sorted(ALLOWED_SELINUX_TYPES - {''}))}",
            )
        for key in ("user", "role"):
            if selinux.get(key):
                self.refuse(f"{path}.seLinuxOptions.{key}", selinux[key], "must be left out")
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            self.refuse(f"{path}.windowsOptions.hostProcess", True, "no host processes")
