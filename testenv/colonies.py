"""A Colonies server on loopback for the tests, plus a small raw-RPC client.

The server is testenv/colonies_server.py ("colonies-lite"): the real
Colonies v1.9.7 server cannot be built here because the Go module proxy
refuses github.com/colonyos/colonies. It speaks the same signed RPC protocol
on ``POST /api`` and answers ``GET /health``, so pycolonies and the project's
adapter talk to it as to the real server. State persists in its data dir
across ``stop()`` / ``start()`` / ``restart()``.

``ColoniesServer.start()`` creates a colony and one approved executor and
exposes their keys. All helpers take and return raw dicts (the server's JSON).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from testenv._proc import Service, TestEnvError, free_port, wait_until
from testenv.colonies_server import generate_prvkey, key_id, sign

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3


class ColoniesRPCError(RuntimeError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(f"{message} (status {status})")
        self.message = message
        self.status = status


class ColoniesServer:
    def __init__(
        self,
        workdir: Path | None = None,
        colony_name: str = "testcolony",
        executor_type: str = "kubejobs-test",
        executor_name: str = "kubejobs-test-executor",
        server_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubejobs-colonies-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.server_prvkey = generate_prvkey()
        self.server_id = key_id(self.server_prvkey)
        self.colony_name = colony_name
        self.colony_prvkey = generate_prvkey()
        self.colony_id = key_id(self.colony_prvkey)
        self.executor_type = executor_type
        self.executor_name = executor_name
        self.executor_prvkey = generate_prvkey()
        self.executor_id = key_id(self.executor_prvkey)
        self.service = Service(
            "colonies-server",
            [
                sys.executable,
                "-m",
                "testenv.colonies_server",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.workdir / "data"),
                "--server-id",
                self.server_id,
            ],
            self.workdir / "logs",
            env={
                "TZ": "UTC",
                "COLONIES_ALLOW_EXECUTOR_REREGISTER": "true",
                "COLONIES_TLS": "false",
                **(server_env or {}),
            },
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._initialised = False

    # -- lifecycle -----------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """COLONIES_* variables for a client acting as the test executor."""
        return {
            "COLONIES_SERVER_HOST": self.host,
            "COLONIES_SERVER_PORT": str(self.port),
            "COLONIES_SERVER_TLS": "false",
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": self.colony_name,
            "COLONIES_COLONY_PRVKEY": self.colony_prvkey,
            "COLONIES_EXECUTOR_NAME": self.executor_name,
            "COLONIES_EXECUTOR_TYPE": self.executor_type,
            "COLONIES_PRVKEY": self.executor_prvkey,
        }

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as err:
            err.close()
            return False
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> ColoniesServer:
        self.service.start()
        wait_until(self.healthy, 30, "Colonies /health", interval=0.1, service=self.service)
        if not self._initialised:
            self.rpc(
                {
                    "msgtype": "addcolonymsg",
                    "colony": {"colonyid": self.colony_id, "name": self.colony_name},
                },
                self.server_prvkey,
            )
            self.add_executor(self.executor_name, self.executor_type, self.executor_prvkey)
            self._initialised = True
        return self

    def stop(self) -> None:
        self.service.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server, stay down ``down_seconds``, start it again (state kept)."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    # -- RPC -----------------------------------------------------------
    def rpc(self, msg: dict[str, Any], prvkey: str | None = None, timeout: float = 30) -> Any:
        """Send one signed RPC message (default key: the test executor's)."""
        payload = base64.b64encode(json.dumps(msg).encode()).decode()
        body = json.dumps(
            {
                "payloadtype": msg["msgtype"],
                "payload": payload,
                "signature": sign(payload, prvkey or self.executor_prvkey),
            }
        ).encode()
        req = urllib.request.Request(
            f"{self.url}/api",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                reply = json.loads(r.read())
        except urllib.error.HTTPError as err:
            with err:
                reply = json.loads(err.read())
        data = json.loads(base64.b64decode(reply["payload"])) if reply.get("payload") else None
        if reply.get("error"):
            raise ColoniesRPCError(
                str((data or {}).get("message")), int((data or {}).get("status", 0))
            )
        return data

    def add_executor(
        self, name: str, executor_type: str | None = None, prvkey: str | None = None
    ) -> tuple[str, str]:
        """Add and approve an executor; returns (name, prvkey)."""
        prvkey = prvkey or generate_prvkey()
        self.rpc(
            {
                "msgtype": "addexecutormsg",
                "executor": {
                    "executorid": key_id(prvkey),
                    "executortype": executor_type or self.executor_type,
                    "executorname": name,
                    "colonyname": self.colony_name,
                },
            },
            self.colony_prvkey,
        )
        self.rpc(
            {"msgtype": "approveexecutormsg", "colonyname": self.colony_name, "executorname": name},
            self.colony_prvkey,
        )
        return name, prvkey

    def remove_executor(self, name: str) -> None:
        self.rpc(
            {"msgtype": "removeexecutormsg", "colonyname": self.colony_name, "executorname": name},
            self.colony_prvkey,
        )

    def submit(self, spec: dict[str, Any], prvkey: str | None = None) -> dict[str, Any]:
        """Submit a function spec (raw dict); colony and executor type default to the test ones,
        maxexectime / maxwaittime / maxretries default to -1 (none). Returns the process."""
        spec = json.loads(json.dumps(spec))
        cond = spec.setdefault("conditions", {})
        cond.setdefault("colonyname", self.colony_name)
        cond.setdefault("executortype", self.executor_type)
        for key in ("maxexectime", "maxwaittime", "maxretries"):
            spec.setdefault(key, -1)
        result: dict[str, Any] = self.rpc({"msgtype": "submitfuncspecmsg", "spec": spec}, prvkey)
        return result

    def get_process(self, processid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc({"msgtype": "getprocessmsg", "processid": processid})
        return result

    def wait_state(
        self, processid: str, states: tuple[int, ...] = (SUCCESS, FAILED), timeout: float = 60
    ) -> dict[str, Any]:
        """Poll until the process is in one of ``states``; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.get_process(processid)
            if proc["state"] in states:
                return proc
            if time.monotonic() > deadline:
                raise TestEnvError(
                    f"process {processid} still in state {proc['state']} after {timeout}s"
                )
            time.sleep(0.2)

    def assign(self, timeout: int = 5, prvkey: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc(
            {
                "msgtype": "assignprocessmsg",
                "colonyname": self.colony_name,
                "timeout": timeout,
                "availablecpu": "",
                "availablemem": "",
            },
            prvkey,
            timeout=timeout + 10,
        )
        return result

    def add_log(self, processid: str, message: str, prvkey: str | None = None) -> None:
        self.rpc({"msgtype": "addlogmsg", "processid": processid, "message": message}, prvkey)

    def close(
        self, processid: str, out: list[Any] | None = None, prvkey: str | None = None
    ) -> None:
        self.rpc(
            {"msgtype": "closesuccessfulmsg", "processid": processid, "out": out or []}, prvkey
        )

    def fail(
        self, processid: str, errors: list[str] | None = None, prvkey: str | None = None
    ) -> None:
        self.rpc(
            {"msgtype": "closefailedmsg", "processid": processid, "errors": errors or []}, prvkey
        )

    def get_logs(self, processid: str, count: int = 500, since: int = 0) -> list[dict[str, Any]]:
        """Log entries of a process (at most 500 per call; ``since`` in ns)."""
        result: list[dict[str, Any]] | None = self.rpc(
            {
                "msgtype": "getlogsmsg",
                "colonyname": self.colony_name,
                "processid": processid,
                "executorname": "",
                "count": count,
                "since": since,
                "latest": False,
            }
        )
        return result or []  # the server answers null, not [], when there are none

    def log_text(self, processid: str) -> str:
        """All log messages of a process concatenated (pages through 500 at a time)."""
        out: list[str] = []
        since = 0
        while True:
            logs = self.get_logs(processid, 500, since)
            out.extend(entry["message"] for entry in logs)
            if len(logs) < 500:
                return "".join(out)
            since = logs[-1]["timestamp"]

    def add_file(
        self,
        label: str,
        name: str,
        size: int,
        checksum: str,
        s3_object: str,
        s3: Any,
        prvkey: str | None = None,
    ) -> dict[str, Any]:
        """Register CFS metadata for an object already in S3 (``s3``: an S3Config)."""
        host, _, port = s3.endpoint.partition(":")
        result: dict[str, Any] = self.rpc(
            {
                "msgtype": "addfilemsg",
                "file": {
                    "fileid": "",
                    "colonyname": self.colony_name,
                    "label": label,
                    "name": name,
                    "size": size,
                    "sequencenr": 1,
                    "checksum": checksum,
                    "checksumalg": "SHA256",
                    "ref": {
                        "protocol": "s3",
                        "s3object": {
                            "server": host,
                            "port": int(port or 0),
                            "tls": s3.tls,
                            "accesskey": s3.accesskey,
                            "secretkey": s3.secretkey,
                            "region": s3.region,
                            "encryptionkey": "",
                            "encryptionalg": "",
                            "object": s3_object,
                            "bucket": s3.bucket,
                        },
                    },
                    "added": "0001-01-01T00:00:00Z",
                },
            },
            prvkey,
        )
        return result

    def get_file(self, label: str, name: str, latest: bool = True) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.rpc(
            {
                "msgtype": "getfilemsg",
                "colonyname": self.colony_name,
                "fileid": "",
                "label": label,
                "name": name,
                "latest": latest,
            }
        )
        return result
