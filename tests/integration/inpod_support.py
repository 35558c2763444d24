"""Helpers for the in-pod integration tests: a process to log to, a kwok pod to read, the programs as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.polling import until

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR_TYPE = "kubejobs-inpod-test"


@dataclass
class InpodExecutor:
    """An executor of its own type, so assign only ever hands it this module's processes."""

    colonies: Any
    name: str
    prvkey: str

    def running_process(self, nodes: int = 1) -> str:
        spec = {"funcname": "inpod", "conditions": {"executortype": EXECUTOR_TYPE, "nodes": nodes}}
        self.colonies.submit(spec, self.colonies.executor_prvkey)
        process = self.colonies.assign(timeout=10, prvkey=self.prvkey)
        return str(process["processid"])

    def log_page(self, process_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Up to 500 log entries after `since` (the server's page size)."""
        msg = {
            "msgtype": "getlogsmsg",
            "colonyname": self.colonies.colony_name,
            "processid": process_id,
            "executorname": "",
            "count": 500,
            "since": since,
        }
        return list(self.colonies.rpc(msg, self.prvkey) or [])  # null, not [], when none

    def log_text(self, process_id: str) -> str:
        out: list[str] = []
        since = 0
        while True:
            logs = self.log_page(process_id, since)
            out.extend(entry["message"] for entry in logs)
            if len(logs) < 500:
                return "".join(out)
            since = logs[-1]["timestamp"]

    def log_entries(self, process_id: str) -> int:
        """Entries in the first page: how many requests the shipper's lines took (up to 500)."""
        return len(self.log_page(process_id))


_executors: dict[int, InpodExecutor] = {}


def inpod_executor(colonies: Any) -> InpodExecutor:
    if id(colonies) not in _executors:
        name = f"inpod-{uuid.uuid4().hex[:8]}"
        name, prvkey = colonies.add_executor(name, EXECUTOR_TYPE)
        _executors[id(colonies)] = InpodExecutor(colonies, name, prvkey)
    return _executors[id(colonies)]


def pod_manifest(
    name: str, containers: list[str], run_forever: bool = True, init: list[str] | None = None
) -> dict[str, Any]:
    annotations = {"kwok.test/run": "0s", "kwok.test/start": "0s"}
    if run_forever:
        annotations["kwok.test/run-forever"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {"name": c, "image": "kubejobs:test", "command": ["true"]} for c in init or []
            ],
            "containers": [
                {
                    "name": c,
                    "image": "busybox:1.36",
                    "command": ["true"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
                for c in containers
            ],
        },
    }


def create_pod(ns: Any, manifest: dict[str, Any]) -> None:
    ns.kubectl("create", "-f", "-", input=json.dumps(manifest))
    until(
        lambda: pod_phase(ns, manifest["metadata"]["name"]) in ("Running", "Succeeded"),
        f"pod {manifest['metadata']['name']} running",
    )


def pod_phase(ns: Any, name: str) -> str:
    pod = ns.get_json("pods", name)
    return str(pod.get("status", {}).get("phase", ""))


def complete_pod(ns: Any, name: str) -> None:
    """Let kwok finish the pod: its containers terminate with exit code 0."""
    ns.kubectl("annotate", "pod", name, "kwok.test/run-forever-")
    until(lambda: pod_phase(ns, name) == "Succeeded", f"pod {name} succeeded")


@dataclass
class InpodProgram:
    """`python -m kubejobs.inpod <command>` (the injected containers' entry point) with the injected environment."""

    command: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> InpodProgram:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubejobs.inpod", self.command],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait(self, timeout: float = 600) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def program_env(
    colonies: Any,
    executor: InpodExecutor,
    process_id: str,
    state_dir: Path,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COLONIES_", "KUBEJOBS_", "AWS_S3_"))
    }
    env.update(
        {
            "COLONIES_SERVER_HOST": colonies.host,
            "COLONIES_SERVER_PORT": str(colonies.port),
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": colonies.colony_name,
            "COLONIES_PROCESS_ID": process_id,
            "COLONIES_PRVKEY": executor.prvkey,
            "KUBEJOBS_STATE_DIR": str(state_dir),
            "KUBEJOBS_NODE_RANK": "0",
            "KUBEJOBS_SIDECAR_MODE": "container",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra or {})
    return env


def shipper(
    kube: Any,
    ns: Any,
    pod: str,
    containers: list[str],
    colonies: Any,
    executor: InpodExecutor,
    process_id: str,
    tmp: Path,
    extra: dict[str, str] | None = None,
) -> InpodProgram:
    env = program_env(
        colonies,
        executor,
        process_id,
        tmp / "state",
        {
            "KUBEJOBS_POD_NAME": pod,
            "KUBEJOBS_POD_NAMESPACE": ns.name,
            "KUBEJOBS_MAIN_CONTAINERS": ",".join(containers),
            "KUBECONFIG": str(kube.kubeconfig),
            "KUBEJOBS_LINGER": "0.2",
            **(extra or {}),
        },
    )
    return InpodProgram("ship-logs", env, tmp / "shipper.log")


class CriLog:
    """A container log file in the CRI format the kubelet (and kwok) read, with strictly rising timestamps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ns = time.time_ns()

    def write(self, lines: list[str], stream: str = "stdout") -> None:
        self.ns = max(self.ns, time.time_ns())
        out = []
        for line in lines:
            self.ns += 1000
            seconds, nanos = divmod(self.ns, 1_000_000_000)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
            out.append(f"{stamp} {stream} F {line}\n")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(out))

    def rotate(self) -> None:
        """What the kubelet does at its size limit: rename the file, start a new one."""
        os.rename(self.path, self.path.with_name(self.path.name + f".{time.time_ns()}"))
        self.path.touch()


def cri_log(ns: Any, container: str, pod: str) -> CriLog:
    path = ns.set_logs(container, [], pod=pod, follow=True)
    return CriLog(Path(path))
