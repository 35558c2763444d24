"""Reading one pod's status and container logs through the Kubernetes API (`pods/log`).

The kubernetes client only loads the configuration (in-cluster service-account
token, or a kubeconfig); requests go through a kept `requests` session so a
log stream can carry `sinceTime` (the generated client lacks it) and an idle
read timeout. This is the only in-pod module that imports the kubernetes client.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

from kubejobs.errors import KubejobsError


class KubeUnavailable(KubejobsError):
    """The API server could not be reached or answered with a server error; retrying may help."""


class LogsNotReady(KubejobsError):
    """The container has not started yet (or its logs are not there yet)."""


class PodGone(KubejobsError):
    """The pod no longer exists: its logs went with it."""


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Connection:
    """Where the API server is and how to authenticate: `host`, `tls` (requests' verify/cert)
    and `headers()`, called per request."""

    host: str
    tls: dict[str, Any]

    def headers(self) -> dict[str, str]:
        raise NotImplementedError


class InCluster(Connection):
    """The pod's own service account, read directly. Not through the kubernetes client: its
    import alone costs about 0.3 s of CPU, which a shipper with a small CPU request on a
    busy node may take many seconds to get."""

    def __init__(self, environ: Mapping[str, str], account: Path = SERVICE_ACCOUNT) -> None:
        host = environ["KUBERNETES_SERVICE_HOST"]
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.host = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.token_file = account / "token"
        if not self.token_file.is_file():
            raise KubejobsError(f"no service-account token at {self.token_file}")
        self.tls = {"verify": str(account / "ca.crt")}

    def headers(self) -> dict[str, str]:
        # Read every time: the kubelet rotates the projected token.
        return {"Authorization": "Bearer " + self.token_file.read_text().strip()}


class Kubeconfig(Connection):
    """A kubeconfig file (tests, running by hand), through the kubernetes client."""

    def __init__(self, kubeconfig: str | None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
        self._configuration: Any = configuration
        self.host = str(configuration.host).rstrip("/")
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.tls = {}
        if configuration.cert_file and configuration.key_file:
            self.tls["cert"] = (configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            self.tls["verify"] = False
        elif configuration.ssl_ca_cert:
            self.tls["verify"] = configuration.ssl_ca_cert

    def headers(self) -> dict[str, str]:
        headers = {}
        # auth_settings() re-reads a rotated token through the refresh hook.
        for setting in self._configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers


def connection(kubeconfig: str | None) -> Connection:
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return InCluster(os.environ)
    return Kubeconfig(kubeconfig)


class LogStream:
    """One `pods/log` response as lists of complete lines (one list per network read).

    Ends at EOF, or with `.idle` set when nothing came for `idle_timeout` seconds.
    A final read (`final`: not following, the container has ended) also yields the
    text after the last newline at EOF: the program's last line when it printed no
    newline (the kubelet serves it as is). A following stream holds such a tail back:
    it may still be growing, and the final read gets it whole.
    """

    def __init__(self, response: requests.Response, final: bool = False) -> None:
        self._response = response
        self.final = final
        self.idle = False

    def __iter__(self) -> Iterator[list[bytes]]:
        rest = b""
        try:
            for chunk in self._response.iter_content(chunk_size=256 * 1024):
                if not chunk:
                    continue
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                if lines:
                    yield lines
        except (requests.ConnectionError, requests.Timeout) as err:
            if "timed out" in str(err).lower() or isinstance(err, requests.Timeout):
                self.idle = True
            else:
                raise KubeUnavailable(f"log stream broke: {type(err).__name__}") from None
        except requests.RequestException as err:
            raise KubeUnavailable(f"log stream broke: {type(err).__name__}") from None
        if rest and self.final and not self.idle:
            yield [rest]

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PodLogs:
    """One pod, read with the pod's own identity: its status and its containers' logs."""

    def __init__(
        self, namespace: str, pod: str, kubeconfig: str | None = None, timeout: float = 15.0
    ) -> None:
        self.namespace = namespace
        self.pod_name = pod
        self.timeout = timeout
        self._connection = connection(kubeconfig)
        self._host = self._connection.host
        self._tls = self._connection.tls
        self._session = requests.Session()
        self._path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}"

    def __repr__(self) -> str:
        return f"PodLogs({self.namespace}/{self.pod_name})"

    def _headers(self) -> dict[str, str]:
        return self._connection.headers()

    def pod(self) -> dict[str, Any]:
        """The pod object (JSON); PodGone when it was deleted."""
        try:
            reply = self._session.get(
                self._host + self._path, headers=self._headers(), timeout=self.timeout, **self._tls
            )
        except requests.RequestException as err:
            raise KubeUnavailable(f"API server unreachable: {type(err).__name__}") from None
        if reply.status_code == 404:
            raise PodGone(f"pod {self.namespace}/{self.pod_name} not found")
        if reply.status_code >= 500 or reply.status_code == 429:
            raise KubeUnavailable(f"API server answered HTTP {reply.status_code}")
        if reply.status_code != 200:
            raise KubeUnavailable(
                f"reading pod {self.namespace}/{self.pod_name}: HTTP {reply.status_code}: "
                f"{_message(reply)}"
            )
        result: dict[str, Any] = reply.json()
        return result

    def stream(
        self,
        container: str,
        since: dt.datetime | None = None,
        follow: bool = True,
        idle_timeout: float = 5.0,
        previous: bool = False,
    ) -> LogStream:
        """Open the log of `container` with RFC3339Nano timestamps on every line."""
        params: dict[str, str] = {"container": container, "timestamps": "true"}
        if follow:
            params["follow"] = "true"
        if previous:
            params["previous"] = "true"
        if since is not None:
            params["sinceTime"] = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            reply = self._session.get(
                self._host + self._path + "/log",
                params=params,
                headers=self._headers(),
                stream=True,
                timeout=(self.timeout, idle_timeout),
                **self._tls,
            )
        except requests.RequestException as err:
            raise KubeUnavailable(f"API server unreachable: {type(err).__name__}") from None
        if reply.status_code == 200:
            return LogStream(reply, final=not follow)
        message = _message(reply)
        reply.close()
        if reply.status_code == 404 and "not found" in message.lower() and container not in message:
            raise PodGone(f"pod {self.namespace}/{self.pod_name} not found")
        if reply.status_code in (400, 404):
            # "container ... is waiting to start", "PodInitializing", or no log file yet.
            raise LogsNotReady(f"logs of {container}: {message}")
        raise KubeUnavailable(f"logs of {container}: HTTP {reply.status_code}: {message}")


def _message(reply: requests.Response) -> str:
    try:
        body: Mapping[str, Any] = reply.json()
        return str(body.get("message", ""))[:300]
    except ValueError:
        return reply.text[:300]
