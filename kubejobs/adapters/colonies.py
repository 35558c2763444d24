"""The Colonies server RPC: signed JSON messages over HTTP, with timeouts and a kept session.

pycolonies is used only for its message signing (secp256k1 over SHA3-256): its
client has no timeouts, no retries, no session reuse, and its pydantic models
reject specs the server accepts, so the messages are built and read here as
plain JSON. pycolonies installs generic top-level modules (`crypto`); this is
the one module that imports them.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import requests
import requests.adapters

from kubejobs.adapters import signing
from kubejobs.errors import KubejobsError

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
NO_PROCESS_TEXT = "No process available"


class ColoniesError(KubejobsError):
    """The server answered with an error (the message is the server's)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ColoniesUnavailable(ColoniesError):
    """The server could not be reached or did not answer in time; retrying may help."""


class ColoniesCertificateError(ColoniesUnavailable):
    """TLS to the server failed: its certificate did not verify against the CA, or the CA
    file cannot be used. Unavailable, so long-lived callers keep retrying (a fixed CA or
    certificate heals them); the message names the server, the CA file and the reason."""


def generate_prvkey() -> str:
    from crypto import Crypto  # pycolonies' signing module

    return str(Crypto().prvkey())


def key_id(prvkey: str) -> str:
    from crypto import Crypto

    return str(Crypto().id(prvkey))


def executor_document(
    colony: str, name: str, executor_type: str, executor_id: str
) -> dict[str, Any]:
    """The executor object addexecutormsg carries (the server fills state and times)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "executorid": executor_id,
        "executortype": executor_type,
        "executorname": name,
        "colonyname": colony,
        "state": 0,
        "requirefuncreg": False,
        "commissiontime": now,
        "lastheardfromtime": now,
        "capabilities": {"hardware": [], "software": []},
        "allocations": {"projects": {}},
    }


def sign(payload: str, prvkey: str) -> str:
    """The signature of a base64 payload, as the server checks it (pycolonies' own, made
    faster: kubejobs/adapters/signing.py)."""
    return signing.sign(payload, prvkey)


class ColoniesClient:
    """One identity (private key) talking to one Colonies server."""

    def __init__(
        self,
        host: str,
        port: int,
        prvkey: str,
        tls: bool = False,
        timeout: float = 30.0,
        ca_file: str = "",
    ) -> None:
        self.base = f"{'https' if tls else 'http'}://{host}:{port}"
        self.url = f"{self.base}/api"
        self.server = f"{host}:{port}"
        self.ca_file = ca_file if tls else ""
        self._prvkey = prvkey
        self.timeout = timeout
        self._session = requests.Session()
        self.tls_problem = ""
        """The last certificate failure, until a request succeeds again (for /readyz)."""
        # one pool shared by the executor's threads (assign workers, reports, take-back checks)
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=32)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by msgtype, for the executor's metrics

    def __repr__(self) -> str:  # never show the key
        return f"ColoniesClient({self.url!r})"

    def close_session(self) -> None:
        self._session.close()

    def rpc(self, msg: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one signed message; the decoded reply payload, or ColoniesError."""
        with self._lock:
            self.requests[msg["msgtype"]] += 1
        payload = base64.b64encode(json.dumps(msg).encode("utf-8")).decode("ascii")
        body = json.dumps(
            {
                "payloadtype": msg["msgtype"],
                "payload": payload,
                "signature": sign(payload, self._prvkey),
            }
        )
        reply = self._send("POST", self.url, body, timeout or self.timeout)
        try:
            envelope = reply.json()
            result = (
                json.loads(base64.b64decode(envelope["payload"]))
                if envelope.get("payload")
                else None
            )
        except (ValueError, KeyError, TypeError):
            if reply.status_code >= 500:
                raise ColoniesUnavailable(
                    f"Colonies server answered HTTP {reply.status_code}"
                ) from None
            raise ColoniesError(
                f"unreadable reply (HTTP {reply.status_code})", reply.status_code
            ) from None
        if envelope.get("error") or reply.status_code != 200:
            message = result.get("message", "") if isinstance(result, dict) else str(result)
            raise ColoniesError(message or f"HTTP {reply.status_code}", reply.status_code)
        return result

    def health(self) -> None:
        """GET /health: whether the server is reachable and, with TLS, trusted (no key needed)."""
        reply = self._send("GET", f"{self.base}/health", None, self.timeout)
        if reply.status_code != 200:
            raise ColoniesUnavailable(f"Colonies server /health answered HTTP {reply.status_code}")

    def _send(self, method: str, url: str, body: str | None, timeout: float) -> requests.Response:
        try:
            # An operator's CA replaces the public ones for this server only (S3 and the
            # Kubernetes API keep theirs); without one, the public CAs (REQUESTS_CA_BUNDLE or
            # certifi). Per request: a session-wide verify loses to REQUESTS_CA_BUNDLE.
            reply = self._session.request(
                method, url, data=body, timeout=timeout, verify=self.ca_file or True
            )
        except requests.exceptions.SSLError as err:
            if isinstance(_ssl_error(err), CUT):
                # the connection was cut mid-handshake or mid-request (the server or its TLS
                # front end restarting): an outage like a refused connection, not a CA problem
                raise ColoniesUnavailable(
                    f"Colonies server {self.url} unreachable: TLS connection cut "
                    f"({type(_ssl_error(err)).__name__})"
                ) from None
            self.tls_problem = self._tls_message(err)
            raise ColoniesCertificateError(self.tls_problem) from None
        except requests.RequestException as err:
            raise ColoniesUnavailable(
                f"Colonies server {self.url} unreachable: {type(err).__name__}"
            ) from None
        except OSError as err:  # requests' own check of the CA path, before any connection
            self.tls_problem = f"cannot use the CA file {self.ca_file} for {self.server}: {err}"
            raise ColoniesCertificateError(self.tls_problem) from None
        self.tls_problem = ""
        return reply

    def _tls_message(self, err: Exception) -> str:
        ca = f"the CA file {self.ca_file}" if self.ca_file else "the public CAs"
        found = _ssl_error(err)
        if isinstance(found, ssl.SSLCertVerificationError):
            return (
                f"the Colonies server's TLS certificate failed verification: server "
                f"{self.server}, checked against {ca}: {found.verify_message}"
            )
        reason = getattr(found, "reason", None) or (str(found) if found else type(err).__name__)
        return f"TLS to the Colonies server {self.server} failed (CA: {ca}): {reason}"

    # Executors -----------------------------------------------------------

    def add_executor(self, executor: dict[str, Any]) -> Any:
        return self.rpc({"msgtype": "addexecutormsg", "executor": executor})

    def approve_executor(self, colony: str, name: str) -> Any:
        return self.rpc(
            {"msgtype": "approveexecutormsg", "colonyname": colony, "executorname": name}
        )

    def remove_executor(self, colony: str, name: str) -> Any:
        return self.rpc(
            {"msgtype": "removeexecutormsg", "colonyname": colony, "executorname": name}
        )

    def add_function(self, colony: str, executor: str, funcname: str) -> Any:
        return self.rpc(
            {
                "msgtype": "addfunctionmsg",
                "fun": {"colonyname": colony, "executorname": executor, "funcname": funcname},
            }
        )

    def get_executors(self, colony: str) -> list[dict[str, Any]]:
        """Every executor of the colony, in any state (members only: the server refuses others)."""
        result = self.rpc({"msgtype": "getexecutorsmsg", "colonyname": colony})
        return list(result or [])

    def get_executor(self, colony: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc(
            {"msgtype": "getexecutormsg", "colonyname": colony, "executorname": name}
        )
        return result

    # Processes -----------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc({"msgtype": "submitfuncspecmsg", "spec": spec})
        return result

    def assign(
        self, colony: str, timeout: int, available_cpu: str = "", available_mem: str = ""
    ) -> dict[str, Any] | None:
        """A RUNNING process assigned to this executor, or None when none came within `timeout` s.

        The server refuses timeout 0 and makes one attempt for a negative one; it
        reads available cpu only as millicores ("500m"; "2" is 0) and memory with a
        unit. Only assign tells the server this executor is alive: one that has not
        assigned for COLONIES_STALE_EXECUTOR_DURATION (600 s) is unregistered.
        """
        msg: dict[str, Any] = {
            "msgtype": "assignprocessmsg",
            "colonyname": colony,
            "timeout": timeout,
        }
        if available_cpu:
            msg["availablecpu"] = available_cpu
        if available_mem:
            msg["availablemem"] = available_mem
        try:
            result: dict[str, Any] = self.rpc(msg, timeout=timeout + self.timeout)
        except ColoniesUnavailable:
            raise
        except ColoniesError as err:
            if NO_PROCESS_TEXT.lower() in str(err).lower():
                return None
            raise
        return result

    def get_processes(
        self, colony: str, state: int, count: int = 100, executor_type: str = ""
    ) -> list[dict[str, Any]]:
        """Processes of a colony in `state` (the server returns at most 100 per call)."""
        result = self.rpc(
            {
                "msgtype": "getprocessesmsg",
                "colonyname": colony,
                "count": count,
                "state": state,
                "executortype": executor_type,
                "label": "",
                "initiator": "",
            }
        )
        return list(result or [])

    def get_process(self, process_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc({"msgtype": "getprocessmsg", "processid": process_id})
        return result

    def close(self, process_id: str, output: list[Any]) -> Any:
        return self.rpc({"msgtype": "closesuccessfulmsg", "processid": process_id, "out": output})

    def fail(self, process_id: str, errors: list[str]) -> Any:
        return self.rpc({"msgtype": "closefailedmsg", "processid": process_id, "errors": errors})

    def set_output(self, process_id: str, output: list[Any]) -> Any:
        """The output of a RUNNING process; a later close with an empty `out` keeps it."""
        return self.rpc({"msgtype": "setoutputmsg", "processid": process_id, "out": output})

    # Logs ------------------------------------------------------------------

    def add_log(self, process_id: str, message: str) -> Any:
        # The server keeps logs in PostgreSQL text, which cannot hold a NUL: v1.9.7
        # refuses the whole message. A program may print one; it is shown as U+FFFD,
        # as undecodable bytes are.
        message = message.replace("\x00", "\ufffd")
        return self.rpc({"msgtype": "addlogmsg", "processid": process_id, "message": message})

    def get_logs(
        self, colony: str, process_id: str, count: int = 500, since: int = 0
    ) -> list[dict[str, Any]]:
        """Log entries of a process, oldest first, at most 500 per call; `since` in ns."""
        result = self.rpc(
            {
                "msgtype": "getlogsmsg",
                "colonyname": colony,
                "processid": process_id,
                "executorname": "",  # a name here would select the executor's logs instead
                "count": count,
                "since": since,
                "latest": False,
            }
        )
        return list(result or [])  # the server answers null when there are none


def server_time(text: Any) -> float | None:
    """An RFC 3339 time of the server's (nanoseconds allowed) as epoch seconds; None for
    Go's zero time (not set) and anything else that is not a time."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def assignment_deadline(process: dict[str, Any]) -> float:
    """When the server's timeout loop may take the process's current assignment back:
    its starttime + maxexectime (epoch seconds; inf: no maxexectime, or not started)."""
    limit = (process.get("spec") or {}).get("maxexectime", -1)
    started = server_time(process.get("starttime"))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0 or started is None:
        return math.inf
    return started + limit


# TLS errors that say the connection ended, not that the certificate or the CA is wrong.
CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _ssl_error(err: BaseException) -> ssl.SSLError | None:
    """The ssl module's error inside requests' and urllib3's wrappers, if any."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        todo += [a for a in current.args if isinstance(a, BaseException)]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        if isinstance(reason, BaseException):
            todo.append(reason)
    return None
