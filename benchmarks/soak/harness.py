"""One soak run: the mix submitted to two executor replicas while faults come and go.

``Soak(servers, workdir, settings)`` takes running test servers (testenv: the
kube cluster with the real node beside the kwok nodes, the Colonies server behind
its TLS front end, Kueue, S3); ``run()`` returns the History, ``close()`` undoes
the set-up. The harness records and never asserts (checks.py judges).

Set-up: a namespace prepared as the chart does (log shipper account, a key
Secret per replica, the S3 Secret, the Colonies CA as a ConfigMap), a Kueue
ClusterQueue of 2 cpu with preemption of lower priorities and two
WorkloadPriorityClasses (spec priority < 0 is ``low``), the pool label on
real-node-0 and kwok-gpu-node-0, and two ``kubejobs executor`` processes of one
executor type, each its own executor (name, key, key Secret), over TLS.

Threads: the submitter follows the seeded plan (mix.plan), through the real
``colonies`` CLI or the raw-RPC Python client, at random; a preemption pair's
second process waits for a line of the first. The sampler reads both replicas'
RSS. Faults run in the calling thread (faults.py). After ``duration`` the
harness waits, bounded, for every process to close and every object to go,
then reads back each process's state, output, errors, log and synced files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.realnode.run import ts
from benchmarks.soak import faults as faults_mod
from benchmarks.soak import mix
from benchmarks.soak.checks import FAULT_KINDS
from benchmarks.soak.history import History, ProcessRecord
from testenv._proc import free_port, http_ok, wait_until
from testenv.colonies import ColoniesServer
from testenv.executor import executor_env
from testenv.kube import KubeCluster
from testenv.kueue import KueueServer
from testenv.node import NODE_NAME, RealNode
from testenv.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
KWOK_NODE = "kwok-gpu-node-0"
KEY_SECRET = "kubejobs-executor-key"
CA_CONFIGMAP = "colonies-ca"
WORKLOADS = "/apis/kueue.x-k8s.io/v1beta2/namespaces/{ns}/workloads"
REPORTED = re.compile(r"process ([0-9a-f]{64}) (closed|failed: )")
UNANSWERED = re.compile(r"process ([0-9a-f]{64}): cannot report yet")


@dataclass(frozen=True)
class Servers:
    kube: KubeCluster
    node: RealNode
    colonies: ColoniesServer
    kueue: KueueServer
    s3: S3Server


@dataclass(frozen=True)
class Settings:
    seed: int
    duration: float
    per_minute: float = 20.0
    """Submissions per minute (a workflow or a preemption pair is one)."""
    faults: int = 0
    """How many faults (at least one of each kind); 0: none."""
    fault_seconds: tuple[float, float] = (3.0, 30.0)
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    drain_seconds: float = 600.0
    """Bound on the wait for every process to close after the last submission."""
    cleanup_seconds: float = 180.0
    """Bound on the wait for every Job, pod, Service and Workload to go."""


class Replica:
    """One `kubejobs executor` process; restartable under the same identity."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.env, self.log_path = name, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.env["KUBEJOBS_HEALTH_PORT"] = str(free_port())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubejobs.executor"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        url = f"http://127.0.0.1:{self.env['KUBEJOBS_HEALTH_PORT']}/readyz"
        wait_until(lambda: self._alive() and http_ok(url), 120, f"executor {self.name} /readyz")

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"executor {self.name} exited; see {self.log_path}")
        return True

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no SIGTERM: a crash, nothing tidied up
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss(self) -> tuple[int, int] | None:
        """(process id, VmRSS in KiB) while it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return self.proc.pid, int(line.split()[1])
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Soak:
    def __init__(self, servers: Servers, workdir: Path, settings: Settings) -> None:
        self.servers, self.workdir, self.settings = servers, Path(workdir), settings
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(settings.seed)
        self.history = History(settings.seed, settings.duration)
        self.lock = threading.Lock()
        self.replicas: list[Replica] = []
        self.namespace = ""
        self.suffix = f"{settings.seed}-{os.urandom(2).hex()}"
        self.classes: list[str] = []
        self.queues: Any = None
        self.standing_secrets: set[str] = set()
        self.stopping = threading.Event()
        self.mix: mix.Mix | None = None
        self._followers: list[threading.Thread] = []

    def note(self, text: str) -> None:
        with self.lock:
            self.history.events.append((time.time(), text))

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        s = self.servers
        kube, colonies = s.kube, s.colonies
        assert colonies.ca_file is not None, "the soak runs over TLS"
        self.namespace = ns = kube.create_namespace("soak")
        executor_type = f"kj-soak-{self.suffix}"
        keys = [colonies.add_executor(f"{executor_type}-{i}", executor_type) for i in range(2)]
        s.node.prepare_namespace(ns, keys[0][1], dict(s.s3.config.env))
        kube.kubectl(
            "-n", ns, "create", "secret", "generic", f"{KEY_SECRET}-1",
            f"--from-literal=prvkey={keys[1][1]}",
        )  # fmt: skip
        kube.kubectl(
            "-n", ns, "create", "configmap", CA_CONFIGMAP, f"--from-file=ca.crt={colonies.ca_file}"
        )
        self.classes = [
            s.kueue.create_priority_class(f"soak-low-{self.suffix}", 10),
            s.kueue.create_priority_class(f"soak-normal-{self.suffix}", 100),
        ]
        self.queues = s.kueue.create_queues(
            ns, cpu="2", memory="64Gi", preemption=True, resources={"nvidia.com/gpu": "8"}
        )
        s.kueue.wait_garbage_collector()  # a deleted Job's quota is freed promptly from now on
        for node, pool in ((NODE_NAME, "real"), (KWOK_NODE, "kwok")):
            kube.kubectl("label", "node", node, f"{mix.POOL_LABEL}={pool}", "--overwrite")
        self.standing_secrets = set(self._names("/api/v1/namespaces/{ns}/secrets"))
        self.mix = mix.Mix(
            executor_type,
            colonies.colony_name,
            walltime_seconds=int(self.settings.fault_seconds[1]) + 20,
            fs_label_root=f"/soak/{self.suffix}",
        )
        settings = {
            **s.node.executor_settings(),
            "node_selector": json.dumps({mix.POOL_LABEL: "real"}),
            "gpu_node_label": mix.POOL_LABEL,
            "colonies_tls": "true",
            "colonies_ca_file": str(colonies.ca_file),
            "colonies_ca_configmap": CA_CONFIGMAP,
            "queue_name": self.queues.local_queue,
            "workload_priority_classes": json.dumps({self.classes[0]: -50000, self.classes[1]: 0}),
            "extra_annotations": json.dumps({"kwok.test/run": "3s"}),
            # the product's default, not the test env's 30 s: a pod's log shipper rides out an
            # API-server outage only until 3 s before its grace period ends (docs/inpod.md),
            # and the longest outage here, with the API server's own restart, takes up to 60 s
            "termination_grace_seconds": 60,
            "takeback_check_seconds": 2,
            "log_level": "INFO",
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
        for i, (name, key) in enumerate(keys):
            extra = {"executor_key_secret": f"{KEY_SECRET}-1"} if i else {}
            env = {
                **base,
                **executor_env(colonies, kube, ns, name, executor_type, key, **settings, **extra),
            }
            self.replicas.append(Replica(name, env, self.workdir / f"{name}.log"))
        for replica in self.replicas:
            replica.start()
        self.history.namespace = ns
        self.history.replicas = [r.name for r in self.replicas]

    def close(self) -> None:
        """Stop the replicas and undo the set-up (best effort)."""
        s = self.servers
        for replica in self.replicas:
            replica.stop()
        for node in (NODE_NAME, KWOK_NODE):
            s.kube.kubectl("label", "node", node, f"{mix.POOL_LABEL}-", check=False)
        if self.queues is not None:
            with contextlib.suppress(Exception):
                s.kueue.delete_queues(self.queues)
        for name in self.classes:
            with contextlib.suppress(Exception):
                s.kueue.delete_priority_class(name)
        if self.namespace:
            s.kube.delete_namespace(self.namespace)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> History:
        settings, h = self.settings, self.history
        items = mix.plan(self.rng, settings.duration, settings.per_minute)
        planned = (
            faults_mod.plan(
                self.rng,
                settings.duration,
                settings.faults,
                *settings.fault_seconds,
                settings.fault_kinds,
            )
            if settings.faults
            else []
        )
        injector = faults_mod.Injector(self, random.Random(self.rng.random()))
        submit_rng = random.Random(self.rng.random())
        h.started = start = time.time()
        submitter = threading.Thread(target=self._submit_all, args=(items, submit_rng, start))
        sampler = threading.Thread(target=self._sample, daemon=True)
        submitter.start()
        sampler.start()
        try:
            for fault in planned:
                _sleep_until(start + fault.at)
                h.faults.append(injector.inject(fault))
            _sleep_until(start + settings.duration)
            submitter.join()
            for follower in self._followers:
                follower.join()
            self._drain()
            self._collect()
        finally:
            self.stopping.set()
            sampler.join(10)
            h.ended = time.time()
        return h

    def _submit_all(self, items: list[tuple[float, str]], rng: random.Random, start: float) -> None:
        assert self.mix is not None
        for i, (at, kind) in enumerate(items):
            _sleep_until(start + at)
            item = self.mix.item(kind, f"{i:03d}{rng.randrange(16**4):04x}", rng)
            via = rng.choice(("cli", "python"))
            if item.workflow:
                self._submit_workflow(item)
            elif item.after_line:
                self._submit_step(item.steps[0], via)
                follower = threading.Thread(target=self._follow, args=(item, via))
                follower.start()
                self._followers.append(follower)
            else:
                self._submit_step(item.steps[0], via)

    def _follow(self, item: mix.Item, via: str) -> None:
        """Submit the pair's second process once the first printed ``after_line``."""
        first = self._record_of(item.steps[0].marker)
        line = re.compile(rf"^[0-9a-f]{{8}} {re.escape(item.after_line)}$", re.M)
        deadline = time.monotonic() + self.settings.drain_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if first is not None and line.search(self.servers.colonies.log_text(first.pid)):
                    break
            time.sleep(1.0)
        else:
            self.note(
                f"{item.steps[0].marker} never printed {item.after_line!r}; submitting anyway"
            )
        self._submit_step(item.steps[1], via)

    def pids_of(self, kinds: tuple[str, ...]) -> set[str]:
        with self.lock:
            return {p.pid for p in self.history.processes if p.kind in kinds}

    def pod_ended(self, pod: str) -> bool:
        """Whether the pod is gone or has ended (an unreachable API server says no)."""
        path = f"/api/v1/namespaces/{self.namespace}/pods?fieldSelector=metadata.name%3D{pod}"
        try:
            items = self.servers.kube.get_json(path)["items"]
        except Exception:
            return False
        return not items or (items[0].get("status") or {}).get("phase") in ("Succeeded", "Failed")

    def _record_of(self, marker: str) -> ProcessRecord | None:
        with self.lock:
            return next((p for p in self.history.processes if p.marker == marker), None)

    def _submit_step(self, step: mix.Step, via: str) -> None:
        if step.kind == "staged":
            label = step.spec["fs"]["dirs"][0]["label"]
            self._retry(step.marker, lambda: self._put(label, "in.txt", f"in-{step.marker}\n"))
        submitted = time.time()
        if via == "cli":
            pid = self._retry(step.marker, lambda: self._cli_submit(step))
        else:
            pid = self._retry(
                step.marker, lambda: str(self.servers.colonies.submit(step.spec)["processid"])
            )
        self._add(ProcessRecord(pid, step.kind, step.marker, via, submitted, step.expect.as_dict()))

    def _submit_workflow(self, item: mix.Item) -> None:
        submitted = time.time()
        marker = item.steps[0].marker
        workflow_id = self._retry(marker, lambda: self._cli_workflow(item))
        graph = self._retry(marker, lambda: self._workflow_graph(workflow_id))
        label = {node["id"]: node["data"]["label"] for node in graph["nodes"]}
        ids = {label[pid]: pid for pid in graph["processids"]}
        for step in item.steps:
            record = ProcessRecord(
                ids[step.node], step.kind, step.marker, "cli-workflow", submitted,
                step.expect.as_dict(), workflow=workflow_id, node=step.node,
            )  # fmt: skip
            self._add(record)

    def _add(self, record: ProcessRecord) -> None:
        with self.lock:
            self.history.processes.append(record)

    def _retry(self, marker: str, call: Any) -> Any:
        """``call()``'s value, trying again every second while a fault lasts (bounded)."""
        deadline = time.monotonic() + self.settings.drain_seconds
        while True:
            try:
                return call()
            except Exception as err:
                with self.lock:
                    self.history.submit_errors.append((time.time(), marker, str(err)[:300]))
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _cli_submit(self, step: mix.Step) -> str:
        path = self.workdir / f"spec-{step.marker}.json"
        path.write_text(json.dumps(step.spec))
        done = self.servers.colonies.cli("function", "submit", "--spec", str(path), timeout=60)
        found = [w for w in done.stderr.split() if w.startswith("ProcessId=")]
        if not found:
            raise RuntimeError(f"no process id in {done.stderr!r}")
        return found[0].removeprefix("ProcessId=")

    def _cli_workflow(self, item: mix.Item) -> str:
        path = self.workdir / f"workflow-{item.steps[0].marker}.json"
        path.write_text(json.dumps([step.spec for step in item.steps]))
        done = self.servers.colonies.cli("workflow", "submit", "--spec", str(path), timeout=60)
        found = [w for w in done.stderr.split() if w.startswith("WorkflowID=")]
        if not found:
            raise RuntimeError(f"no workflow id in {done.stderr!r}")
        return found[0].removeprefix("WorkflowID=")

    def _workflow_graph(self, workflow_id: str) -> dict[str, Any]:
        cli = self.servers.colonies.cli
        out = cli("workflow", "get", "--workflowid", workflow_id, "--json", timeout=60).stdout
        graph: dict[str, Any] = json.JSONDecoder().raw_decode(out)[0]  # v1.9.7 adds " <nil>"
        return graph

    def _put(self, label: str, name: str, body: str) -> None:
        data = body.encode()
        obj = hashlib.sha256(os.urandom(16)).hexdigest()
        s3 = self.servers.s3
        s3.client().put_object(Bucket=s3.config.bucket, Key=obj, Body=data)
        checksum = hashlib.sha256(data).hexdigest()
        self.servers.colonies.add_file(label, name, len(data), checksum, obj, s3.config)

    def _sample(self) -> None:
        while not self.stopping.wait(2.0):
            now = time.time()
            for replica in self.replicas:
                if (found := replica.rss()) is not None:
                    with self.lock:
                        self.history.rss.setdefault(replica.name, []).append((now, *found))

    # -- the end --------------------------------------------------------------------------
    def _open(self) -> set[str]:
        """Processes of the executor type the server has WAITING or RUNNING."""
        assert self.mix is not None
        found: set[str] = set()
        for state in (mix.WAITING, mix.RUNNING):
            msg = {
                "msgtype": "getprocessesmsg", "colonyname": self.servers.colonies.colony_name,
                "count": 100, "state": state, "executortype": self.mix.executor_type,
                "label": "", "initiator": "",
            }  # fmt: skip
            found |= {p["processid"] for p in self.servers.colonies.rpc(msg) or []}
        return found

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not self._open():  # a duplicate of a submission sent again included
                    return
            time.sleep(2.0)
        self.note(f"not every process closed within {self.settings.drain_seconds:.0f} s")

    def _names(self, path: str) -> list[str]:
        items = self.servers.kube.get_json(path.format(ns=self.namespace)).get("items", [])
        return [i["metadata"]["name"] for i in items]

    def _leftovers(self) -> dict[str, list[str]]:
        found = {
            "Job": self._names("/apis/batch/v1/namespaces/{ns}/jobs"),
            "Pod": self._names("/api/v1/namespaces/{ns}/pods"),
            "Service": self._names("/api/v1/namespaces/{ns}/services"),
            "Workload": self._names(WORKLOADS),
            "Secret": [
                n
                for n in self._names("/api/v1/namespaces/{ns}/secrets")
                if n not in self.standing_secrets
            ],
        }
        return {kind: names for kind, names in found.items() if names}

    def _dump_leftovers(self) -> None:
        paths = {
            "jobs": "/apis/batch/v1/namespaces/{ns}/jobs",
            "pods": "/api/v1/namespaces/{ns}/pods",
            "workloads": WORKLOADS,
        }
        objects = {
            kind: self.servers.kube.get_json(path.format(ns=self.namespace)).get("items", [])
            for kind, path in paths.items()
        }
        (self.workdir / "leftovers.json").write_text(json.dumps(objects, indent=1))

    def _collect(self) -> None:
        h, colonies = self.history, self.servers.colonies
        deadline = time.monotonic() + self.settings.cleanup_seconds
        while (left := self._leftovers()) and time.monotonic() < deadline:
            time.sleep(2.0)
        h.leftovers = left
        if left:  # their status is what explains them, and the servers go with the run
            self._dump_leftovers()
        h.open_processes = sorted(self._open())
        logs = "\n".join(r.log() for r in self.replicas)
        reported = [m.group(1) for m in REPORTED.finditer(logs)]
        unanswered = [m.group(1) for m in UNANSWERED.finditer(logs)]
        for p in h.processes:
            doc = colonies.get_process(p.pid)
            if doc["state"] == mix.FAILED and not doc.get("errors"):
                doc = colonies.wait_state(p.pid, (mix.FAILED,), 10)  # errors come after the state
            p.state, p.retries = doc["state"], doc.get("retries", 0)
            p.out, p.errors, p.input = (
                doc.get("out") or [],
                doc.get("errors") or [],
                doc.get("in") or [],
            )
            p.submission_time = ts(doc["submissiontime"])
            p.end_time = ts(doc["endtime"]) if doc["state"] in (mix.SUCCESS, mix.FAILED) else 0.0
            p.log = colonies.log_text(p.pid).splitlines()
            p.reports, p.unanswered_reports = reported.count(p.pid), unanswered.count(p.pid)
            for path in p.expect["files"]:
                p.files[path] = self._read_file(*path.rsplit("/", 1))

    def _read_file(self, label: str, name: str) -> str | None:
        try:
            found = self.servers.colonies.get_file(label, name)
        except Exception:  # the server refuses a label it has no file under
            return None
        if not found:
            return None
        s3 = self.servers.s3
        obj = found[0]["ref"]["s3object"]["object"]
        body: bytes = s3.client().get_object(Bucket=s3.config.bucket, Key=obj)["Body"].read()
        return body.decode(errors="replace")


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))
