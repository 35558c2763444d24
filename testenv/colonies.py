"""The real Colonies v1.9.7 server on PostgreSQL 15, on loopback, plus a small raw-RPC client.

The server binary is built by testenv/install.sh from ../shared/third_party/colonies
(the v1.9.7 source with its Go dependencies vendored) into ``.testenv/bin/colonies``;
it is also the real ``colonies`` CLI. Each :class:`ColoniesServer` gets its own
PostgreSQL cluster (testenv/postgres.py), its own ports and its own embedded-etcd
data dir. The first start runs ``--initdb`` (which stores the server id once);
later starts keep the data, so ``stop()`` / ``start()`` / ``restart()`` behave like
restarting a production server.

``ColoniesServer.start()`` creates a colony and one approved executor and
exposes their keys. All helpers take and return raw dicts (the server's JSON).

``ColoniesServer(tls=True)`` serves HTTPS with a certificate from a test CA of its
own (testenv/kube.py's PKI code: SANs localhost, 127.0.0.1 and testenv.podnet.HOST_IP,
where the real node's pods reach it); ``ca_file`` is that CA, which the
helpers here and ``cli()`` (through SSL_CERT_FILE: the Go CLI has no CA option)
trust. ``make_ca(dir)`` makes another, unrelated CA for wrong-CA tests.

v1.9.7 accepts ``--tlscert``/``--tlskey`` and ``COLONIES_TLS=true`` but still serves
plain HTTP: ``Server.ServeForever`` (pkg/server/server.go) calls ``ListenAndServe``,
never the backend's ``ListenAndServeTLS``. So TLS is terminated in front of it, as
an ingress or load balancer does in production: ``serve_tls`` (its own process)
listens on ``port`` and forwards the bytes to the server on ``backend_port``.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubejobs.adapters.colonies import generate_prvkey, key_id, sign
from testenv._proc import Service, TestEnvError, binary, free_port, wait_until
from testenv.kube import _write_pki
from testenv.postgres import PostgresServer

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3


class ColoniesRPCError(RuntimeError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(f"{message} (status {status})")
        self.message = message
        self.status = status


def colonies_binary() -> str:
    """The real Colonies server and CLI built by testenv/install.sh."""
    return binary("colonies")


def serve_tls(port: str, backend: str, cert: str, key: str) -> None:
    """Terminate TLS on ``port`` (every address: pods come through HOST_IP) and pass the bytes on to ``backend`` (HTTP and the
    server's websockets alike); runs until killed."""
    import asyncio

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:  # ssl.SSLError and connection resets are OSErrors
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(backend))
        except OSError:  # the server is down (a restart test): the client sees a reset
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "0.0.0.0", int(port), ssl=context)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def make_ca(directory: Path) -> Path:
    """A test CA (``ca.crt``) with a server certificate (``apiserver.crt``/``.key``: SANs
    localhost, 127.0.0.1 and HOST_IP) in ``directory``; the CA's path."""
    _write_pki(directory)
    return directory / "ca.crt"


class ColoniesServer:
    def __init__(
        self,
        workdir: Path | None = None,
        colony_name: str = "testcolony",
        executor_type: str = "kubejobs-test",
        executor_name: str = "kubejobs-test-executor",
        server_env: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        """``server_env`` adds server settings, e.g. ``COLONIES_STALE_EXECUTOR_DURATION``;
        ``tls`` serves HTTPS with a certificate of a test CA (``ca_file``)."""
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubejobs-colonies-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.backend_port = free_port() if tls else self.port  # the server's own (HTTP) port
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
        self.ca_file: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self.tls_proxy: Service | None = None
        if tls:
            pki = self.workdir / "pki"
            self.ca_file = make_ca(pki)
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
            self.tls_proxy = Service(
                "colonies-tls",
                [
                    sys.executable,
                    "-c",
                    "import sys; from testenv.colonies import serve_tls; serve_tls(*sys.argv[1:])",
                    str(self.port),
                    str(self.backend_port),
                    str(pki / "apiserver.crt"),
                    str(pki / "apiserver.key"),
                ],
                self.workdir / "logs",
                cwd=Path(__file__).resolve().parents[1],
            )
        self.server_prvkey = generate_prvkey()
        self.server_id = key_id(self.server_prvkey)
        self.colony_name = colony_name
        self.colony_prvkey = generate_prvkey()
        self.colony_id = key_id(self.colony_prvkey)
        self.executor_type = executor_type
        self.executor_name = executor_name
        self.executor_prvkey = generate_prvkey()
        self.executor_id = key_id(self.executor_prvkey)
        self.postgres = PostgresServer(self.workdir / "logs")
        # the embedded etcd and the relay get ports of their own, kept across restarts
        etcd_client, etcd_peer, relay = free_port(), free_port(), free_port()
        self._argv = [
            colonies_binary(),
            "server",
            "start",
            "--port",
            str(self.backend_port),
            "--insecure",
            "--etcdname",
            "colonies",
            "--etcdhost",
            self.host,
            "--etcdclientport",
            str(etcd_client),
            "--etcdpeerport",
            str(etcd_peer),
            "--relayport",
            str(relay),
            "--etcddatadir",
            str(self.workdir / "etcd"),
        ]
        self.service = Service(
            "colonies-server",
            [*self._argv, "--initdb"],
            self.workdir / "logs",
            env={
                "TZ": "UTC",
                "COLONIES_DB_HOST": self.postgres.host,
                "COLONIES_DB_PORT": str(self.postgres.port),
                "COLONIES_DB_USER": "postgres",
                "COLONIES_DB_PASSWORD": self.postgres.password,
                "COLONIES_SERVER_ID": self.server_id,
                "COLONIES_TLS": "false",
                "COLONIES_ALLOW_EXECUTOR_REREGISTER": "true",
                **(server_env or {}),
            },
        )
        self._initialised = False

    # -- lifecycle -----------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """COLONIES_* variables for a client acting as the test executor (the CLI reads them)."""
        tls = "true" if self.tls else "false"
        return {
            "COLONIES_SERVER_HOST": self.host,
            "COLONIES_SERVER_PORT": str(self.port),
            "COLONIES_SERVER_TLS": tls,
            "COLONIES_TLS": tls,
            "COLONIES_COLONY_NAME": self.colony_name,
            "COLONIES_COLONY_PRVKEY": self.colony_prvkey,
            "COLONIES_EXECUTOR_NAME": self.executor_name,
            "COLONIES_EXECUTOR_TYPE": self.executor_type,
            "COLONIES_PRVKEY": self.executor_prvkey,
        }

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2, context=self._ssl) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as err:
            err.close()
            return False
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> ColoniesServer:
        """Start PostgreSQL and the server (the first start initialises the database)."""
        self.postgres.start()
        self.service.start()
        if self.tls_proxy is not None:
            self.tls_proxy.start()
        wait_until(self.healthy, 60, "Colonies /health", interval=0.1, service=self.service)
        if not self._initialised:
            # --initdb only once: it would recreate the tables on every start
            self.service.argv = list(self._argv)
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
        """Stop the server and its database (the data is kept for the next start)."""
        self.service.stop()
        self.postgres.stop()

    def shutdown(self) -> None:
        """Stop everything and remove the database."""
        if self.tls_proxy is not None:
            self.tls_proxy.stop()
        self.service.stop()
        self.postgres.remove()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server, stay down ``down_seconds``, start it again (state kept)."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def cli(
        self, *args: str, prvkey: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``colonies`` CLI against this server (default key: the test executor's)."""
        env = {**self.env, "COLONIES_PRVKEY": prvkey or self.executor_prvkey}
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = str(self.ca_file)  # Go's crypto/x509 reads it on Linux
        result = subprocess.run(
            [colonies_binary(), *args, *([] if self.tls else ["--insecure"])],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise TestEnvError(
                f"colonies {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

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
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as r:
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
        """Poll until the process is in one of ``states``; returns it.

        v1.9.7 fails a process in separate statements (state FAILED, then its
        errors; no transaction), so a read in between sees FAILED with no
        errors. A FAILED process without errors is read again for up to 5 s
        before it is returned as it is.
        """
        deadline = time.monotonic() + timeout
        errors_due: float | None = None
        while True:
            proc = self.get_process(processid)
            if proc["state"] in states:
                if proc["state"] != FAILED or proc.get("errors"):
                    return proc
                errors_due = errors_due or time.monotonic() + 5
                if time.monotonic() > errors_due:
                    return proc
                time.sleep(0.05)
                continue
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

    def create_snapshot(self, label: str, name: str) -> dict[str, Any]:
        """A CFS snapshot of the files now under ``label`` (what the stager pulls by name)."""
        result: dict[str, Any] = self.rpc(
            {
                "msgtype": "createsnapshotmsg",
                "colonyname": self.colony_name,
                "label": label,
                "name": name,
            }
        )
        return result
