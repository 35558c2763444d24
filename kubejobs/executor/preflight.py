"""What every Job of this executor needs in its namespace, checked before it takes work.

A pod naming a missing service account is refused by the API server (the Job
controller's FailedCreate), and a log shipper whose key Secret is missing never
starts (CreateContainerConfigError); templates that cannot render the simplest
spec fail every process. Each would fail every process the executor takes, so
until they are in place the executor is not ready and takes nothing, and says
what is missing and how to create it.

An object the executor may not read (403: its Role does not grant it) is not
reported: the chart grants `get` on the log shipper's account, and mounts the key
Secret into the executor itself, so a missing Secret stops the executor's own pod.

With queue_name, Kueue's API and the LocalQueue must exist: a Job in a queue
nobody serves would stay suspended until its process's maxexectime.
"""

from __future__ import annotations

import base64
import binascii
import logging

from kubejobs.adapters.colonies import key_id
from kubejobs.adapters.kube import KubeClient, KubeError
from kubejobs.errors import InvalidInput, TemplateError
from kubejobs.render import Renderer
from kubejobs.spec import validate_spec

log = logging.getLogger(__name__)

PROBE_SPEC = {"funcname": "execute", "kwargs": {"docker-image": "busybox", "cmd": "true"}}
PROBE_ID = "0" * 64
HOWTO = "see the README, 'Running the executor by hand'"


def problems(
    kube: KubeClient, namespace: str, renderer: Renderer, executor_id: str = ""
) -> list[str]:
    """What is missing for this executor's Jobs, each with how to fix it; [] when ready.

    With `executor_id`, a key Secret the executor may read must hold this executor's key:
    the log shippers of its Jobs sign with it, and the server refuses their logs and
    outputs under any other executor's key (or, worse, takes them as that executor's).
    """
    settings = renderer.settings
    found: list[str] = []
    account = settings.service_account
    if account and _missing(kube, "ServiceAccount", namespace, account):
        found.append(
            f'service account "{account}" (the log shipper\'s, setting service_account) '
            f'is missing in namespace "{namespace}": every pod would be refused. Create it '
            f"with `kubectl -n {namespace} create serviceaccount {account}` and let it get "
            f"pods and pods/log ({HOWTO})"
        )
    secret_name = settings.executor_key_secret
    secret = _read(kube, "Secret", namespace, secret_name)
    create = (
        f"`kubectl -n {namespace} create secret generic {secret_name} "
        f"--from-file=prvkey=EXECUTOR_KEY_FILE`"
    )
    if secret is _ABSENT:
        found.append(
            f'Secret "{secret_name}" (the executor key the log shipper signs with, setting '
            f'executor_key_secret) is missing in namespace "{namespace}": no pod could start. '
            f"Create it with {create}"
        )
    elif isinstance(secret, dict) and not _has_key(secret):
        found.append(
            f'Secret "{secret_name}" in namespace "{namespace}" has no key "prvkey" holding '
            f"the executor's private key. Recreate it with {create}"
        )
    elif isinstance(secret, dict) and executor_id and (held := _key_id(secret)) != executor_id:
        found.append(
            f'Secret "{secret_name}" in namespace "{namespace}" (setting executor_key_secret) '
            f"holds the key of executor id {held}, not this executor's ({executor_id}): the log "
            "shippers of its Jobs would sign with another executor's key. Point "
            "executor_key_secret (chart: executorKey.secretName) at a Secret with this "
            f"executor's key, e.g. {create} with another name"
        )
    found += _ca_problems(
        kube, namespace, settings.colonies_ca_configmap, settings.colonies_ca_secret
    )
    found += _queue_problems(kube, namespace, settings.queue_name)
    try:
        renderer.render(validate_spec(PROBE_SPEC, "preflight"), PROBE_ID)
    except (InvalidInput, TemplateError) as err:
        where = settings.templates_dir or "the built-in templates"
        found.append(f"the templates ({where}) cannot render the simplest spec: {err}")
    return found


_ABSENT = object()
KUEUE_API = "/apis/kueue.x-k8s.io/v1beta2"


def _ca_problems(kube: KubeClient, namespace: str, configmap: str, secret: str) -> list[str]:
    """The CA bundle the injected containers verify the Colonies server with: a missing one
    would hold every pod in ContainerCreating (a failed volume mount) until start_timeout."""
    kind, name, setting = (
        ("ConfigMap", configmap, "colonies_ca_configmap")
        if configmap
        else ("Secret", secret, "colonies_ca_secret")
    )
    if not name:
        return []
    obj = _read(kube, kind, namespace, name)
    create = f"`kubectl -n {namespace} create {kind.lower()}"
    create += " generic" if kind == "Secret" else ""
    create += f" {name} --from-file=ca.crt=CA_BUNDLE.pem`"
    if obj is _ABSENT:
        return [
            f'{kind} "{name}" (the Colonies CA bundle, setting {setting}) is missing in namespace '
            f'"{namespace}": no pod could start. Create it with {create}'
        ]
    data = obj.get("data") if isinstance(obj, dict) else None
    if isinstance(obj, dict) and not (isinstance(data, dict) and data.get("ca.crt")):
        return [
            f'{kind} "{name}" in namespace "{namespace}" has no key "ca.crt" holding the CA '
            f"bundle (setting {setting}). Recreate it with {create}"
        ]
    return []


def _queue_problems(kube: KubeClient, namespace: str, queue: str) -> list[str]:
    if not queue:
        return []
    local_queue = _read(kube, "LocalQueue", namespace, queue)
    if local_queue is not _ABSENT:
        return []
    try:
        kube.request("GET", KUEUE_API, verb="get")
    except KubeError as err:
        if err.status != 404:
            raise
        return [
            f"Kueue is not installed (no {KUEUE_API.removeprefix('/apis/')} API), but setting "
            f'queue_name is "{queue}": install Kueue, or empty queue_name to run Jobs without it'
        ]
    return [
        f'LocalQueue "{queue}" (setting queue_name) is missing in namespace "{namespace}": every '
        "Job would wait in it forever. Create it, pointing at a ClusterQueue: "
        f"`kubectl -n {namespace} apply -f -` with apiVersion kueue.x-k8s.io/v1beta2, kind "
        f"LocalQueue, metadata.name {queue}, spec.clusterQueue <your ClusterQueue>"
    ]


def _read(kube: KubeClient, kind: str, namespace: str, name: str) -> object:
    """The object, _ABSENT when it does not exist, None when it may not be read."""
    try:
        obj = kube.get(kind, namespace, name)
    except KubeError as err:
        if err.status == 403:
            log.debug("may not read %s %s to check it: %s", kind, name, err)
            return None
        raise
    return _ABSENT if obj is None else obj


def _missing(kube: KubeClient, kind: str, namespace: str, name: str) -> bool:
    return _read(kube, kind, namespace, name) is _ABSENT


def _key_id(secret: dict[str, object]) -> str:
    data = secret.get("data")
    value = data.get("prvkey") if isinstance(data, dict) else ""
    try:
        return key_id(base64.b64decode(str(value)).decode("ascii").strip())
    except (binascii.Error, ValueError):
        return "(unreadable)"


def _has_key(secret: dict[str, object]) -> bool:
    data = secret.get("data")
    value = data.get("prvkey") if isinstance(data, dict) else None
    if not isinstance(value, str):
        return False
    try:
        return bool(base64.b64decode(value, validate=True).strip())
    except (binascii.Error, ValueError):
        return False
