# mypy: disable-error-code="no-untyped-call"
"""The Kubernetes API as plain JSON dicts: server-side apply, delete, list, watch.

This is the only module that imports the kubernetes client. It is used for its
kubeconfig / in-cluster loading, authentication and connection pool; requests and
replies stay plain dicts (no generated models), which keeps the executor fast
under load and lets watches stream raw events. Every request is counted by verb
so the executor can export API usage.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubejobs.errors import KubejobsError

log = logging.getLogger(__name__)

FIELD_MANAGER = "kubejobs"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# kind -> (API group path, plural)
_RESOURCES = {
    "Job": ("/apis/batch/v1", "jobs"),
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "Event": ("/api/v1", "events"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    # Kueue (only with queue_name): the Workloads it makes for our Jobs, and the queue they wait in
    "Workload": ("/apis/kueue.x-k8s.io/v1beta2", "workloads"),
    "LocalQueue": ("/apis/kueue.x-k8s.io/v1beta2", "localqueues"),
}


class KubeError(KubejobsError):
    """The API server refused a request; `status` and `reason` are the server's."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnavailable(KubeError):
    """The API server could not be reached, timed out, or answered 5xx/429; retrying may help."""


class WatchExpired(KubeError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def default_namespace() -> str:
    """The pod's own namespace in a cluster, else 'default'."""
    try:
        return IN_CLUSTER_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


class KubeClient:
    """One authenticated connection pool to one API server."""

    def __init__(
        self, kubeconfig: str = "", context: str = "", timeout: float = 30.0, pool_size: int = 32
    ) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        if kubeconfig:
            config.load_kube_config(
                config_file=kubeconfig,
                context=context or None,
                client_configuration=cfg,
                persist_config=False,
            )
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(
                    context=context or None, client_configuration=cfg, persist_config=False
                )
        cfg.connection_pool_maxsize = pool_size
        cfg.retries = False
        self._cfg = cfg
        self._rest = client.ApiClient(cfg).rest_client
        self.host = str(cfg.host).rstrip("/")
        self.timeout = timeout
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"KubeClient({self.host!r})"

    # Plumbing ---------------------------------------------------------------

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubejobs-executor"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = self._cfg.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers[str(auth["key"])] = str(auth["value"])
        return headers

    def _count(self, verb: str) -> None:
        with self._lock:
            self.requests[verb] += 1

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
        verb: str = "",
    ) -> Any:
        """One request; the decoded JSON reply, KubeError (4xx) or KubeUnavailable."""
        url = self.host + path + ("?" + urllib.parse.urlencode(query) if query else "")
        self._count(verb or method.lower())
        try:
            response = self._rest.request(
                method,
                url,
                headers=self._headers(content_type),
                body=body,
                _request_timeout=timeout or self.timeout,
            )
            data = response.read()
        except Exception as err:  # urllib3 raises a family of connection errors
            raise KubeUnavailable(
                f"Kubernetes API {self.host} unreachable: {type(err).__name__}"
            ) from None
        return _decode(response.status, data, f"{method} {path}")

    # Objects ----------------------------------------------------------------

    @staticmethod
    def collection_path(kind: str, namespace: str) -> str:
        group, plural = _RESOURCES[kind]
        return f"{group}/namespaces/{namespace}/{plural}"

    def apply(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        """Server-side apply (field manager 'kubejobs', strict field validation, force)."""
        name = obj["metadata"]["name"]
        path = f"{self.collection_path(obj['kind'], namespace)}/{name}"
        query = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict", "force": "true"}
        result: dict[str, Any] = self.request(
            "PATCH",
            path,
            query,
            body=apply_body(obj),
            content_type="application/apply-patch+yaml",
            verb="apply",
        )
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request(
                "GET", f"{self.collection_path(kind, namespace)}/{name}", verb="get"
            )
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        return result

    def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        """Create (field manager 'kubejobs', strict field validation); 409 if it exists."""
        result: dict[str, Any] = self.request(
            "POST",
            self.collection_path(obj["kind"], namespace),
            {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"},
            body=obj,  # JSON (the client's json.dumps): its surrogate-pair escapes are JSON's
            content_type="application/json",
            verb="create",
        )
        return result

    def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of one object (a resourceVersion in it makes a conflict a 409)."""
        result: dict[str, Any] = self.request(
            "PATCH",
            f"{self.collection_path(kind, namespace)}/{name}",
            body=patch,
            content_type="application/merge-patch+json",
            verb="patch",
        )
        return result

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground") -> bool:
        """Delete one object; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self.request(
                "DELETE",
                f"{self.collection_path(kind, namespace)}/{name}",
                body=body,
                content_type="application/json",
                verb="delete",
            )
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        return True

    def list(
        self, kind: str, namespace: str, label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """Every matching object (paged) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        query = {"limit": "500"}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = self.request("GET", self.collection_path(kind, namespace), query, verb="list")
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = meta["continue"]

    def watch(
        self,
        kind: str,
        namespace: str,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int = 300,
        field_selector: str = "",
    ) -> Iterator[dict[str, Any]]:
        """Events ({'type', 'object'}) from `resource_version` until the server ends the watch.

        BOOKMARK events are passed on (their object carries only a resourceVersion);
        a 410 Gone, as an HTTP status or an ERROR event, raises WatchExpired.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        url = (
            self.host + self.collection_path(kind, namespace) + "?" + urllib.parse.urlencode(query)
        )
        self._count("watch")
        try:
            response = self._rest.request(
                "GET",
                url,
                headers=self._headers(),
                _request_timeout=(self.timeout, timeout_seconds + 30),
            )
        except Exception as err:
            raise KubeUnavailable(
                f"Kubernetes API {self.host} unreachable: {type(err).__name__}"
            ) from None
        if response.status != 200:
            _decode(response.status, response.read(), f"watch {kind}")
        raw = response.response
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _watch_event(json.loads(line))
        except (WatchExpired, KubeError):
            raise
        except Exception as err:
            raise KubeUnavailable(f"watch of {kind} interrupted: {type(err).__name__}") from None
        finally:
            raw.release_conn()


# What a YAML double-quoted scalar holds literally without change: printable ASCII
# and the planes above the BMP. The rest of the BMP is escaped: YAML refuses C1
# controls, DEL, U+FEFF and U+FFFE/F as raw characters, and folds the line breaks
# U+0085, U+2028 and U+2029 to spaces.
_YAML_ESCAPE = re.compile("[^\x20-\x7e\U00010000-\U0010ffff]")


def apply_body(obj: Any) -> bytes:
    """The object as a server-side apply body: JSON that YAML reads back exactly.

    An apply body is YAML, of which JSON is a subset, except that YAML refuses
    the surrogate-pair escapes (\\ud83d\\ude80) json.dumps writes for characters
    beyond the BMP ("found invalid Unicode character escape code"). Those are
    written as UTF-8 instead, every other non-ASCII character as a \\u escape.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _YAML_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


def _watch_event(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        code = int(status.get("code") or 0)
        message = str(status.get("message", "watch error"))
        if code == 410:
            raise WatchExpired(message, 410, "Expired")
        raise KubeUnavailable(message, code, str(status.get("reason", "")))
    return event


def _decode(status: int, data: bytes, what: str) -> Any:
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"message": data[:200].decode("utf-8", "replace")}
    if 200 <= status < 300:
        return payload
    message = (
        str(payload.get("message") or f"HTTP {status}")
        if isinstance(payload, dict)
        else str(payload)
    )
    reason = str(payload.get("reason", "")) if isinstance(payload, dict) else ""
    if status == 410:
        raise WatchExpired(f"{what}: {message}", status, reason)
    if status >= 500 or status == 429:
        raise KubeUnavailable(f"{what}: {message}", status, reason)
    raise KubeError(f"{what}: {message}", status, reason)
