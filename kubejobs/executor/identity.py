"""Who the executor is: its name and key, and self-registration with a colony key.

With only a colony key, the executor key is generated once and kept in the
namespace's executor-key Secret (the one the injected log shipper mounts), so a
restarted executor is the same executor and can finish what its predecessor
started. Registration (add, approve, register function 'execute') is skipped
when the key is an approved executor already, and tolerates "already exists".

A replica of a StatefulSet (`--replica <pod name>`) is an executor of its own:
its name and its key Secret get the pod's ordinal, so the pod that comes back
under the same name is the same executor and adopts the Jobs it left.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kubejobs.adapters.colonies import (
    ColoniesClient,
    ColoniesError,
    ColoniesUnavailable,
    executor_document,
    generate_prvkey,
    key_id,
)
from kubejobs.adapters.kube import KubeClient, KubeError
from kubejobs.errors import KubejobsError, SettingsError
from kubejobs.executor.backoff import Backoff
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.render.identity import MANAGED_BY, MANAGER

log = logging.getLogger(__name__)
T = TypeVar("T")
FUNCNAME = "execute"
APPROVED = 1  # executor states: 0 pending, 1 approved, 2 rejected, 3 unregistered


_ORDINAL = re.compile(r"-(0|[1-9][0-9]*)$")


def for_replica(settings: ExecutorSettings, pod_name: str) -> ExecutorSettings:
    """The settings of the replica in StatefulSet pod `pod_name` (`<set>-<ordinal>`).

    executor_name and executor_key_secret get `-<ordinal>`: every replica is its
    own executor, marks its Jobs with its own name and keeps its own generated key
    (the log shipper in its Jobs mounts that Secret). The ordinal rather than the
    whole pod name keeps a chosen executor_name as the stem.
    """
    match = _ORDINAL.search(pod_name)
    if not match:
        raise SettingsError(
            f"--replica {pod_name!r}: expected a StatefulSet pod name ending in -<ordinal>"
        )
    if settings.executor_prvkey or settings.executor_prvkey_file:
        raise SettingsError(
            "--replica: every replica generates its own key (with the colony key); "
            "one executor key given for all replicas would make them one executor"
        )
    suffix = match.group(0)
    return dataclasses.replace(
        settings,
        executor_name=settings.executor_name + suffix,
        executor_key_secret=settings.executor_key_secret + suffix,
    )


@dataclass(frozen=True)
class Identity:
    executor_id: str
    prvkey: str = field(repr=False)


class Stopped(KubejobsError):
    """Startup was interrupted by a stop request."""


def establish(
    settings: ExecutorSettings,
    kube: KubeClient,
    namespace: str,
    client_for: Callable[[str], ColoniesClient],
    stop: threading.Event,
) -> Identity:
    """The executor's identity, registered with the colony when a colony key is given."""
    prvkey = settings.executor_key()
    colony_key = settings.colony_key()
    if not prvkey:
        prvkey = _stored_or_new_key(kube, namespace, settings.executor_key_secret, stop)
    identity = Identity(key_id(prvkey), prvkey)
    if colony_key:
        _retrying(
            lambda: _register(
                settings, client_for(colony_key), client_for(prvkey), identity.executor_id
            ),
            stop,
        )
    return identity


def _stored_or_new_key(kube: KubeClient, namespace: str, secret: str, stop: threading.Event) -> str:
    def read_or_create() -> str:
        found = kube.get("Secret", namespace, secret)
        if found is not None:
            data = (found.get("data") or {}).get("prvkey")
            if not data:
                raise SettingsError(f"Secret {namespace}/{secret} has no key 'prvkey'")
            return base64.b64decode(data).decode("ascii").strip()
        key = generate_prvkey()
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": secret, "labels": {MANAGED_BY: MANAGER}},
                "stringData": {"prvkey": key},
            },
            namespace,
        )
        log.info("generated an executor key and stored it in Secret %s/%s", namespace, secret)
        return key

    return _retrying(read_or_create, stop)


def _registered(settings: ExecutorSettings, executor: ColoniesClient, executor_id: str) -> bool:
    """Whether this key is already an approved executor of the colony under this name.

    Asked first because adding an executor again, where the server allows
    re-registration, unregisters the existing one and puts its RUNNING
    processes back to WAITING: a restart would give away the work it is to finish.
    """
    try:
        found = executor.get_executor(settings.colony_name, settings.executor_name)
    except ColoniesUnavailable:
        raise
    except ColoniesError:
        return False  # not a member (yet): unknown, pending or unregistered
    # Unregistered (state 3: silent for the server's stale duration, e.g. a replica
    # scaled away and back) is not registered: approve it again.
    return bool(found and found.get("executorid") == executor_id and found.get("state") == APPROVED)


def _register(
    settings: ExecutorSettings, colony: ColoniesClient, executor: ColoniesClient, executor_id: str
) -> None:
    if _registered(settings, executor, executor_id):
        log.info("executor %s is registered and approved already", settings.executor_name)
        return
    doc = executor_document(
        settings.colony_name, settings.executor_name, settings.executor_type, executor_id
    )
    try:
        colony.add_executor(doc)
        log.info("added executor %s to colony %s", settings.executor_name, settings.colony_name)
    except ColoniesUnavailable:
        raise
    except ColoniesError as err:
        log.info("add executor %s: %s (continuing)", settings.executor_name, err)
    try:
        colony.approve_executor(settings.colony_name, settings.executor_name)
    except ColoniesUnavailable:
        raise
    except ColoniesError as err:
        log.info("approve executor %s: %s (continuing)", settings.executor_name, err)
    try:
        executor.add_function(settings.colony_name, settings.executor_name, FUNCNAME)
    except ColoniesUnavailable:
        raise
    except ColoniesError as err:
        log.info("register function %s: %s (continuing)", FUNCNAME, err)


def _retrying(action: Callable[[], T], stop: threading.Event) -> T:
    backoff = Backoff(cap=5.0)
    while True:
        try:
            return action()
        except (ColoniesUnavailable, KubeError) as err:
            if isinstance(err, KubeError) and not _transient(err):
                raise
            log.warning("startup: %s; retrying", err)
            if backoff.wait(stop):
                raise Stopped("stopped during startup") from None


def _transient(err: KubeError) -> bool:
    return err.status == 0 or err.status >= 500 or err.status == 429
