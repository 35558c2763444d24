"""Injection: the log shipper, data stager and their volumes, merged into a Job as data.

Runs after the template is parsed, so a template cannot break what it adds. Names
starting with `kubejobs-` are reserved for injected containers and volumes; the
pod annotation kubejobs.io/injected records what was injected, and injecting an
already injected manifest replaces the earlier injection (idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubejobs import process_io
from kubejobs.errors import TemplateError
from kubejobs.render import ranks
from kubejobs.render.identity import ATTEMPT_ENV, INJECTED_ANNOTATION, substitute
from kubejobs.render.kube_version import has_native_sidecars
from kubejobs.render.ranks import COMPLETION_INDEX
from kubejobs.render.settings import RenderSettings
from kubejobs.resources import fresh_yaml
from kubejobs.spec.model import FunctionSpec

RESERVED_PREFIX = "kubejobs-"
SHIPPER = "kubejobs-log-shipper"
STAGER = "kubejobs-data-stager"
DATA_VOLUME = "kubejobs-data"
STATE_DIR = "/var/lib/kubejobs"
CA_VOLUME = "kubejobs-colonies-ca"
CA_DIR = "/etc/kubejobs/colonies-ca"
CA_KEY = "ca.crt"
CA_FILE_ENV = "KUBEJOBS_COLONIES_CA_FILE"  # inpod/config.py reads it
SHARED_PODS_ENV = "KUBEJOBS_SHARED_VOLUME_PODS"  # inpod/config.py, inpod/closing.py
GRACE_ENV = "KUBEJOBS_GRACE_SECONDS"  # inpod/command.py reads it (ship-logs --grace-seconds)


@dataclass(frozen=True)
class Injection:
    """What to inject into one process's pods."""

    spec: FunctionSpec
    settings: RenderSettings
    process_id: str
    colony_name: str
    job_name: str
    input_json: str = "[]"
    """The process's `in` as JSON (process_io.input_json)."""
    attempt: int = 1
    """The attempt (server retries + 1) the log shipper ships for (render/identity.py)."""

    @property
    def native_sidecar(self) -> bool:
        return has_native_sidecars(self.settings.kube_version)


def inject(job: dict[str, Any], injection: Injection, source: str) -> None:
    """Add the injected components to `job` in place; TemplateError if the template used reserved names."""
    pod = _pod_spec(job, source)
    template_meta = job["spec"]["template"].setdefault("metadata", {}) or {}
    job["spec"]["template"]["metadata"] = template_meta
    annotations = template_meta.setdefault("annotations", {}) or {}
    template_meta["annotations"] = annotations
    if INJECTED_ANNOTATION in annotations:
        _remove_injected(pod)
    else:
        _refuse_reserved(pod, source)

    main_names = [c.get("name", "") for c in pod.get("containers", [])]
    for container in pod["containers"]:
        container["env"] = [
            *container.get("env", []),
            *process_io.main_env(container.get("name", ""), injection.input_json),
        ]
        container["volumeMounts"] = [*container.get("volumeMounts", []), *process_io.main_mounts()]
    annotations[process_io.INPUT_ANNOTATION] = injection.input_json
    spec = injection.spec
    hostfile = ranks.distributed(spec.nodes, spec.processes_per_node)
    annotations.pop(ranks.HOSTFILE_ANNOTATION, None)
    if hostfile:
        hosts = ranks.host_names(injection.job_name, spec.nodes)
        annotations[ranks.HOSTFILE_ANNOTATION] = ranks.hostfile(hosts, spec.processes_per_node)
        for container in pod["containers"]:
            container["env"].append({"name": ranks.HOSTFILE_ENV, "value": ranks.HOSTFILE})
            container["volumeMounts"].append(ranks.hostfile_mount())
    mount = _data_mount(injection)
    if mount is not None:
        for container in pod["containers"]:
            mounts = container.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == mount["mountPath"] for m in mounts):
                raise TemplateError(
                    f"{source}: container {container.get('name')!r} already mounts "
                    f"{mount['mountPath']!r}, where fs.mount puts the shared volume"
                )
            mounts.append(mount)

    shipper = _container(SHIPPER, "log-shipper.yaml", injection, main_names, mount)
    shipper["volumeMounts"].append(process_io.shipper_mount())
    grace = pod.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and not isinstance(grace, bool):
        # Its deadline after SIGTERM. Read from the API server otherwise, which may be away
        # as the pod starts: the soak saw a shipper assume 30 s of 60 and give up too soon.
        shipper["env"].append({"name": GRACE_ENV, "value": str(grace)})
    init = list(pod.get("initContainers", []))
    injected = [SHIPPER]
    if injection.native_sidecar:
        shipper["restartPolicy"] = "Always"
        init.insert(0, shipper)
    else:
        pod["containers"].append(shipper)
    if injection.spec.fs is not None:
        init.insert(
            1 if injection.native_sidecar else 0,
            _container(STAGER, "data-stager.yaml", injection, main_names, mount),
        )
        injected.append(STAGER)
    pod["initContainers"] = init
    pod["volumes"] = [*pod.get("volumes", []), *_volumes(injection), *process_io.volumes()]
    if hostfile:
        pod["volumes"].append(ranks.hostfile_volume())
    _volume_group(pod, injection)
    # The token is mounted into the shipper alone; main containers get none.
    pod["automountServiceAccountToken"] = False
    annotations[INJECTED_ANNOTATION] = ",".join(injected)


def _pod_spec(job: dict[str, Any], source: str) -> dict[str, Any]:
    try:
        pod = job["spec"]["template"]["spec"]
    except (KeyError, TypeError):
        raise TemplateError(f"{source}: the Job has no spec.template.spec") from None
    if (
        not isinstance(pod, dict)
        or not isinstance(pod.get("containers"), list)
        or not pod["containers"]
    ):
        raise TemplateError(f"{source}: the Job's pod template has no containers")
    return pod


def _refuse_reserved(pod: dict[str, Any], source: str) -> None:
    for field in ("containers", "initContainers", "volumes"):
        for item in pod.get(field) or []:
            name = str(item.get("name", ""))
            if name.startswith(RESERVED_PREFIX):
                raise TemplateError(
                    f"{source}: {field} name {name!r} is reserved: names starting with "
                    f"{RESERVED_PREFIX!r} belong to the components kubejobs injects"
                )


def _remove_injected(pod: dict[str, Any]) -> None:
    def keep(item: dict[str, Any]) -> bool:
        return not str(item.get("name", "")).startswith(RESERVED_PREFIX)

    for field in ("containers", "initContainers", "volumes"):
        if field in pod:
            pod[field] = [i for i in pod[field] if keep(i)]
    for container in pod["containers"]:
        if "volumeMounts" in container:
            container["volumeMounts"] = [m for m in container["volumeMounts"] if keep(m)]
        if "env" in container:
            container["env"] = [
                e
                for e in container["env"]
                if e.get("name") not in process_io.MAIN_ENV_NAMES
                and e.get("name") != ranks.HOSTFILE_ENV
            ]


def _data_mount(injection: Injection) -> dict[str, Any] | None:
    fs = injection.spec.fs
    if fs is None:
        return None
    # With a PVC the claim's root is the mount of every Job: the volume is shared across
    # processes (a dir with {processid} in it gives a process a folder of its own).
    return {"name": DATA_VOLUME, "mountPath": fs.mount}


def _volume_group(pod: dict[str, Any], injection: Injection) -> None:
    """A PVC's folders belong to whoever made the volume (root, mode 0755 on a fresh disk),
    where the stager (uid 65532) could write nothing. fsGroup makes the kubelet give the
    volume to the pod's group, group-writable, and adds that group to every container.
    OnRootMismatch: a volume shared by many Jobs is walked only when its root is not yet
    the group's. A template's own fsGroup is kept."""
    if not injection.settings.pvc or injection.spec.fs is None:
        return
    context = pod.get("securityContext")
    if not isinstance(context, dict):
        context = pod["securityContext"] = {}
    context.setdefault("fsGroup", injection.settings.run_as_user)
    context.setdefault("fsGroupChangePolicy", "OnRootMismatch")


def _volumes(injection: Injection) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = fresh_yaml("sidecars", "volumes.yaml")
    ca = _ca_source(injection.settings)
    if ca is not None:
        volumes.append({"name": CA_VOLUME, **ca})
    if injection.spec.fs is not None:
        if injection.settings.pvc:
            volumes.append(
                {
                    "name": DATA_VOLUME,
                    "persistentVolumeClaim": {"claimName": injection.settings.pvc},
                }
            )
        else:
            empty_dir: dict[str, Any] = {}
            if injection.spec.storage:
                empty_dir["sizeLimit"] = injection.spec.storage
            volumes.append({"name": DATA_VOLUME, "emptyDir": empty_dir})
    return volumes


def _container(
    name: str,
    definition: str,
    injection: Injection,
    main_names: list[str],
    mount: dict[str, Any] | None,
) -> dict[str, Any]:
    definition_data: dict[str, Any] = fresh_yaml("sidecars", definition)
    assert definition_data["name"] == name, f"sidecars/{definition} must define {name}"
    container = {"name": name, "image": injection.settings.inpod_image, **definition_data}
    container["env"] = _env(injection, main_names)
    if injection.spec.fs is not None:
        container["envFrom"] = [{"secretRef": {"name": injection.settings.s3_secret}}]
    if mount is not None:
        container.setdefault("volumeMounts", []).append(dict(mount))
    if _ca_source(injection.settings) is not None:
        container.setdefault("volumeMounts", []).append(
            {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}
        )
    return container


def _ca_source(settings: RenderSettings) -> dict[str, Any] | None:
    """The volume source of the operator's CA for the Colonies server (only key ca.crt), if any.

    Injected containers only: main containers do not talk to the Colonies server.
    """
    items = [{"key": CA_KEY, "path": CA_KEY}]
    if settings.colonies_ca_configmap:
        return {"configMap": {"name": settings.colonies_ca_configmap, "items": items}}
    if settings.colonies_ca_secret:
        return {"secret": {"secretName": settings.colonies_ca_secret, "items": items}}
    return None


def _env(injection: Injection, main_names: list[str]) -> list[dict[str, Any]]:
    settings = injection.settings
    indexed = injection.spec.nodes > 1
    env: list[dict[str, Any]] = [
        {"name": "COLONIES_SERVER_HOST", "value": settings.colonies_host},
        {"name": "COLONIES_SERVER_PORT", "value": str(settings.colonies_port)},
        {"name": "COLONIES_TLS", "value": "true" if settings.colonies_tls else "false"},
        {"name": "COLONIES_COLONY_NAME", "value": injection.colony_name.replace("$", "$$")},
        {"name": "COLONIES_PROCESS_ID", "value": injection.process_id},
        {
            "name": "COLONIES_PRVKEY",
            "valueFrom": {"secretKeyRef": {"name": settings.executor_key_secret, "key": "prvkey"}},
        },
        {"name": "KUBEJOBS_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "KUBEJOBS_POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": "KUBEJOBS_MAIN_CONTAINERS", "value": ",".join(main_names)},
        {
            "name": "KUBEJOBS_NODE_RANK",
            **(
                {"valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}
                if indexed
                else {"value": "0"}
            ),
        },
        {"name": "KUBEJOBS_STATE_DIR", "value": STATE_DIR},
        {
            "name": "KUBEJOBS_SIDECAR_MODE",
            "value": "native" if injection.native_sidecar else "container",
        },
    ]
    if injection.attempt > 1:
        env.append({"name": ATTEMPT_ENV, "value": str(injection.attempt)})
    env += [
        {"name": name, "value": value.replace("$", "$$")}
        for name, value in sorted(settings.inpod_env.items())
    ]
    if _ca_source(settings) is not None:
        env.append({"name": CA_FILE_ENV, "value": f"{CA_DIR}/{CA_KEY}"})
    fs = injection.spec.fs
    if fs is not None:
        env.append({"name": "KUBEJOBS_FS", "value": _fs_json(injection).replace("$", "$$")})
        if settings.pvc:
            # the ranks' pods see the same folders: the last one to end runs the onclose
            env.append({"name": SHARED_PODS_ENV, "value": str(injection.spec.nodes)})
    return env


def _fs_json(injection: Injection) -> str:
    """fs as the in-pod programs read it: {processid} already substituted."""
    fs = injection.spec.raw["fs"]
    pid = injection.process_id

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return substitute(value, pid)
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return json.dumps(sub(fs), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
