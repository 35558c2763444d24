"""Who the executor is: its name and key, and self-registration with a colony key.

With only a colony key, the executor key is generated once and kept in the
namespace's executor-key Secret (the one the injected log shipper mounts), so a
restarted executor is the same executor and can finish what its predecessor
started. The Secret records whose key it is (annotations kubejobs.io/colony and
kubejobs.io/executor): an executor that finds another executor's key there
takes no work and says which Secret and setting to change, since two executors
with one key are one executor to the Colonies server (it hands the second the
first's work). A Secret that records no owner (made by an older kubejobs, or by
hand) is adopted, its annotations written, unless the Colonies server already
knows its key as another executor.

Registration (add, approve, register function 'execute') starts from what the
server knows: an executor approved already under this name with this key is
not added again, as adding it again (the server allows re-registration)
unregisters it and puts its RUNNING processes back to WAITING. Any refusal
keeps the executor not ready with the server's message, retried until it is
fixed.

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
from typing import Any

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
from kubejobs.render.identity import COLONY_ANNOTATION, EXECUTOR_ANNOTATION, MANAGED_BY, MANAGER

log = logging.getLogger(__name__)
FUNCNAME = "execute"
# executor states
PENDING, APPROVED, REJECTED, UNREGISTERED = 0, 1, 2, 3
RETRY_FIRST, RETRY_CAP = 2.0, 30.0
"""Seconds between attempts while not ready: doubling from the first to the cap."""


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


class NotReady(KubejobsError):
    """Why the executor cannot have its identity yet, with what to change; retried."""


Report = Callable[[list[str]], None]


def establish(
    settings: ExecutorSettings,
    kube: KubeClient,
    namespace: str,
    client_for: Callable[[str], ColoniesClient],
    stop: threading.Event,
    report: Report = lambda problems: None,
) -> Identity:
    """The executor's identity, registered with the colony when a colony key is given.

    Until it is established, every attempt's problem goes to `report` (for /readyz)
    and to the log (ERROR when it is a refusal, WARNING for an outage), and the
    attempt is repeated; Stopped when `stop` is set meanwhile.
    """
    registration = _Registration(settings)
    backoff = Backoff(RETRY_FIRST, RETRY_CAP)
    last = ""
    while True:
        try:
            identity = _attempt(settings, kube, namespace, client_for, registration)
        except NotReady as err:
            problem, level = str(err), logging.ERROR
        except (ColoniesUnavailable, KubeError) as err:
            problem = f"cannot establish the executor's identity yet: {err}"
            refused = isinstance(err, KubeError) and not _transient(err)
            level = logging.ERROR if refused else logging.WARNING
        else:
            report([])
            return identity
        report([problem])
        if problem != last:
            log.log(level, "not ready: %s", problem)
            last = problem
        if backoff.wait(stop):
            raise Stopped("stopped during startup")


def _attempt(
    settings: ExecutorSettings,
    kube: KubeClient,
    namespace: str,
    client_for: Callable[[str], ColoniesClient],
    registration: _Registration,
) -> Identity:
    prvkey = settings.executor_key()
    colony_key = settings.colony_key()
    unowned: dict[str, Any] | None = None
    if not prvkey:
        prvkey, unowned = _stored_or_new_key(kube, namespace, settings)
    identity = Identity(key_id(prvkey), prvkey)
    if colony_key:
        colony, executor = client_for(colony_key), client_for(prvkey)
        try:
            registration.run(colony, executor, identity.executor_id)
        finally:
            colony.close_session()
            executor.close_session()
    if unowned is not None:
        _adopt(kube, namespace, unowned, settings)
    return identity


def owner_annotations(settings: ExecutorSettings) -> dict[str, str]:
    """What the key Secret records about whose key it holds."""
    return {COLONY_ANNOTATION: settings.colony_name, EXECUTOR_ANNOTATION: settings.executor_name}


def _stored_or_new_key(
    kube: KubeClient, namespace: str, settings: ExecutorSettings
) -> tuple[str, dict[str, Any] | None]:
    """(the key, the Secret when it records no owner yet); NotReady when it is another's."""
    secret = settings.executor_key_secret
    found = kube.get("Secret", namespace, secret)
    if found is None:
        key = generate_prvkey()
        try:
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {
                        "name": secret,
                        "labels": {MANAGED_BY: MANAGER},
                        "annotations": owner_annotations(settings),
                    },
                    "stringData": {"prvkey": key},
                },
                namespace,
            )
        except KubeError as err:
            if err.status == 409:  # made meanwhile (by another executor?): read it
                raise NotReady(
                    f'Secret "{secret}" in namespace "{namespace}" was created by someone else '
                    "while this executor was creating it; reading it again"
                ) from None
            raise
        log.info("generated an executor key and stored it in Secret %s/%s", namespace, secret)
        return key, None
    data = (found.get("data") or {}).get("prvkey")
    if not data:
        raise NotReady(
            f'Secret "{secret}" in namespace "{namespace}" (setting executor_key_secret) has no '
            f'key "prvkey": delete it to let this executor generate its key there, or name '
            "another Secret"
        )
    key = base64.b64decode(data).decode("ascii").strip()
    annotations = (found.get("metadata") or {}).get("annotations") or {}
    owner = (annotations.get(COLONY_ANNOTATION), annotations.get(EXECUTOR_ANNOTATION))
    if owner == (None, None):
        return key, found
    if owner != (settings.colony_name, settings.executor_name):
        raise NotReady(
            f'Secret "{secret}" in namespace "{namespace}" holds the key of executor '
            f'"{owner[1]}" in colony "{owner[0]}" (its annotations {EXECUTOR_ANNOTATION} and '
            f'{COLONY_ANNOTATION}), not of this executor "{settings.executor_name}" in colony '
            f'"{settings.colony_name}": with that key this executor would be "{owner[1]}" to '
            "the Colonies server and take its work. Give this executor a key Secret of its own: "
            "set executor_key_secret (KUBEJOBS_EXECUTOR_KEY_SECRET; in the Helm chart "
            f'executorKey.secretName), e.g. "{secret}-{settings.executor_name}"'
        )
    return key, None


def _adopt(
    kube: KubeClient, namespace: str, secret: dict[str, Any], settings: ExecutorSettings
) -> None:
    """Record this executor as the owner of a key Secret that names none."""
    meta = secret.get("metadata") or {}
    name = meta.get("name", settings.executor_key_secret)
    patch = {
        "metadata": {
            # the Secret as read: a concurrent change (another executor adopting it) is a 409
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": owner_annotations(settings),
        }
    }
    try:
        kube.merge_patch("Secret", namespace, name, patch)
    except KubeError as err:
        if err.status == 409:
            raise NotReady(
                f'Secret "{name}" in namespace "{namespace}" changed while this executor '
                "adopted it; reading it again"
            ) from None
        if err.status != 403:
            raise
        log.warning(
            "Secret %s/%s records no owner and this executor may not patch it (%s): it keeps "
            "its key, but another executor reading the Secret would not be told it is taken",
            namespace,
            name,
            err,
        )
        return
    log.info(
        "Secret %s/%s recorded no owner: adopted as executor %s's key (annotations %s, %s)",
        namespace,
        name,
        settings.executor_name,
        EXECUTOR_ANNOTATION,
        COLONY_ANNOTATION,
    )


class _Registration:
    """Add, approve and register the function, from what the server already knows."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.function_pending = False

    def run(self, colony: ColoniesClient, executor: ColoniesClient, executor_id: str) -> None:
        s = self.settings
        name, colony_name = s.executor_name, s.colony_name
        known = _executors_known_to(executor, colony_name)
        mine = self._check(known, executor_id)
        if mine is not None and mine.get("state") == APPROVED:
            if not self.function_pending:
                log.info("executor %s is registered and approved already", name)
                return
        elif mine is None or mine.get("state") == UNREGISTERED:
            self._add(colony, executor, executor_id)
        if mine is None or mine.get("state") != APPROVED:
            self.function_pending = True
            try:
                colony.approve_executor(colony_name, name)
            except ColoniesUnavailable:
                raise
            except ColoniesError as err:
                raise NotReady(
                    f'the Colonies server refused to approve executor "{name}" in colony '
                    f'"{colony_name}" (with the colony key): {err}'
                ) from None
            log.info("approved executor %s in colony %s", name, colony_name)
        if self.function_pending:
            try:
                executor.add_function(colony_name, name, FUNCNAME)
            except ColoniesUnavailable:
                raise
            except ColoniesError as err:
                raise NotReady(
                    f'the Colonies server refused to register function "{FUNCNAME}" of executor '
                    f'"{name}" in colony "{colony_name}": {err}'
                ) from None
            self.function_pending = False

    def _check(self, known: list[dict[str, Any]] | None, executor_id: str) -> dict[str, Any] | None:
        """This executor as the server knows it with this key (None: not yet); NotReady when
        the key is another executor's, or this one was rejected."""
        s = self.settings
        if known is None:
            return None
        others = [
            e
            for e in known
            if e.get("executorid") == executor_id
            and e.get("executorname") != s.executor_name
            and e.get("state") != UNREGISTERED
        ]
        if others:
            names = ", ".join(
                f'"{e.get("executorname")}" (type {e.get("executortype")})' for e in others
            )
            raise NotReady(
                f"this executor's key (executor id {executor_id}) is already executor {names} "
                f'in colony "{s.colony_name}": with it this executor "{s.executor_name}" would '
                f"take that executor's work. {_key_hint(s)}"
            )
        mine = next((e for e in known if e.get("executorname") == s.executor_name), None)
        if mine is None or mine.get("executorid") != executor_id:
            return None
        if mine.get("state") == REJECTED:
            raise NotReady(
                f'executor "{s.executor_name}" was rejected in colony "{s.colony_name}": approve '
                f"it (`colonies executor approve --name {s.executor_name}` with the colony key) "
                "or remove it so that it registers again"
            )
        return mine

    def _add(self, colony: ColoniesClient, executor: ColoniesClient, executor_id: str) -> None:
        s = self.settings
        doc = executor_document(s.colony_name, s.executor_name, s.executor_type, executor_id)
        try:
            colony.add_executor(doc)
        except ColoniesUnavailable:
            raise
        except ColoniesError as err:
            if "already exists" in str(err):
                # Only "this executor, with this key" is fine: ask what is there now.
                mine = self._check(_executors_known_to(executor, s.colony_name), executor_id)
                if mine is not None and mine.get("state") != UNREGISTERED:
                    return
                raise NotReady(
                    f'the Colonies server refused to add executor "{s.executor_name}" to colony '
                    f'"{s.colony_name}": {err}. That name is registered with another key: another '
                    "executor uses it, or this executor's key changed. Give this executor another "
                    "executor_name; or, if that registration is this executor's with its old key, "
                    f"move it to this key (executor id {executor_id}) with the old key: "
                    f"`colonies executor chid --executorid {executor_id}` with COLONIES_PRVKEY set "
                    "to the old key (a server that refuses re-registration never adds the name "
                    "again, even after `colonies executor remove`)"
                ) from None
            raise NotReady(
                f'the Colonies server refused to add executor "{s.executor_name}" to colony '
                f'"{s.colony_name}" (with the colony key): {err}'
            ) from None
        log.info("added executor %s to colony %s", s.executor_name, s.colony_name)


def _executors_known_to(executor: ColoniesClient, colony: str) -> list[dict[str, Any]] | None:
    """The colony's executors as this key may see them; None when the key is no member yet.

    Only members may list them (the colony key is not one): a key that is not an
    executor of the colony is refused with 403.
    """
    try:
        return executor.get_executors(colony)
    except ColoniesUnavailable:
        raise
    except ColoniesError as err:
        if err.status == 403:
            return None
        raise NotReady(f'cannot list the executors of colony "{colony}": {err}') from None


def _key_hint(settings: ExecutorSettings) -> str:
    if settings.executor_key() or not settings.colony_key():
        return (
            "Give this executor a key of its own (executor_prvkey / executor_prvkey_file; in the "
            "Helm chart executorKey)"
        )
    return (
        f'Its key is in Secret "{settings.executor_key_secret}": give this executor a key '
        "Secret of its own (setting executor_key_secret, KUBEJOBS_EXECUTOR_KEY_SECRET; in the "
        "Helm chart executorKey.secretName)"
    )


def _transient(err: KubeError) -> bool:
    return err.status == 0 or err.status >= 500 or err.status == 429
