"""`make demo`: the whole path on this machine, from a function spec to a real container.

    python -m testenv.demo [--spec FILE] [--once]

Brings up the Kubernetes control plane, the real node ``real-node-0``
(containerd + kubelet), the real Colonies server on PostgreSQL and a ``kubejobs
executor`` for the spec's executor type; submits the spec
(examples/hello-world.json) with the real ``colonies`` CLI, which prints the
process's log as the log shipper sends it, then shows the closed process;
prints how to submit more. Everything stays up until Ctrl-C (or SIGTERM,
SIGHUP), then it is all taken down: every process, the node's mounts and its
cgroups. ``--once`` takes it down as soon as the first process has closed (the
same path; tests/integration/realnode/test_demo.py runs it so). Exit status:
0 when that process closed SUCCESS.

State lives in .testenv/demo/ (server logs, ``env.sh`` with what the CLI needs).
Needs root (the real node) and ``make setup``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from testenv._proc import PREFIX, ROOT, Service, TestEnvError, free_port, http_ok, wait_until
from testenv.colonies import SUCCESS, ColoniesServer, colonies_binary
from testenv.executor import executor_env
from testenv.kube import KubeCluster
from testenv.node import BUSYBOX_IMAGE, RealNode

WORKDIR = PREFIX / "demo"
SPEC = ROOT / "examples" / "hello-world.json"
STATES = {0: "WAITING", 1: "RUNNING", 2: "SUCCESS", 3: "FAILED"}


class Demo:
    """The environment of one demo; ``down()`` takes down whatever ``up()`` started."""

    def __init__(self, workdir: Path, spec: Path, say: Callable[..., None]) -> None:
        self.workdir = workdir
        self.spec = spec
        self.doc: dict[str, Any] = json.loads(spec.read_text())
        if not isinstance(self.doc, dict):
            raise TestEnvError(f"{spec}: the demo submits one function spec (a JSON object)")
        self.say = say
        self._down = contextlib.ExitStack()
        self.kube: KubeCluster | None = None
        self.node: RealNode | None = None
        self.colonies: ColoniesServer | None = None
        self.namespace = ""

    def _step(self, what: str, start: Callable[[], object]) -> None:
        t0 = time.monotonic()
        self.say(f"  {what} ...", end=" ")
        start()
        self.say(f"{time.monotonic() - t0:.1f} s")

    def up(self) -> None:
        self.kube = KubeCluster(self.workdir / "kube")
        self._down.callback(self.kube.stop)
        self._step("control plane (etcd, kube-apiserver, controllers, scheduler)", self.kube.start)
        self.node = RealNode(self.kube, self.workdir / "node")
        self._down.callback(self.node.stop)
        self._step(f"real node {self.node.name} (containerd + kubelet)", self.node.start)
        self._tag_example_image(self.node)
        self.colonies = ColoniesServer(
            self.workdir / "colonies",
            colony_name="demo",
            executor_name="demo-cli",  # the CLI's identity: it submits, it never runs anything
            executor_type="demo-cli",
        )
        self._down.callback(self.colonies.shutdown)
        self._step("Colonies server v1.9.7 on PostgreSQL", self.colonies.start)
        self._step("kubejobs executor", self._start_executor)
        self.say(f"  its Jobs go to namespace {self.namespace}, their pods to {self.node.name}")

    def _tag_example_image(self, node: RealNode) -> None:
        """The examples name the image a user would run (busybox from Docker Hub); this
        machine has no registry and no network, so the node's own busybox (imported by
        RealNode) gets that name too, and the kubelet finds it without a pull. The spec
        stays as a user would write it."""
        image = str(self.doc.get("kwargs", {}).get("docker-image", ""))
        if image and image not in node.images():
            node.ctr("images", "tag", BUSYBOX_IMAGE, image)

    def _start_executor(self) -> None:
        assert self.kube and self.node and self.colonies
        executor_type = str(self.doc.get("conditions", {}).get("executortype", "kubejobs"))
        name, prvkey = self.colonies.add_executor("kubejobs-demo", executor_type)
        self.namespace = self.kube.create_namespace("demo")
        self.node.prepare_namespace(self.namespace, prvkey)
        port = free_port()
        env = executor_env(
            self.colonies, self.kube, self.namespace, name, executor_type, prvkey,
            health_port=port, log_level="INFO", **self.node.executor_settings(),
        )  # fmt: skip
        service = Service(
            "kubejobs-executor",
            [sys.executable, "-m", "kubejobs.executor"],
            self.workdir / "logs",
            env=env,
            cwd=ROOT,
        )
        self._down.callback(service.stop)
        service.start()
        url = f"http://127.0.0.1:{port}/readyz"
        wait_until(lambda: http_ok(url), 60, "kubejobs executor /readyz", service=service)

    @property
    def cli_env(self) -> dict[str, str]:
        """What the ``colonies`` CLI needs: the server, plain HTTP, the colony and a key."""
        assert self.colonies
        return {
            "COLONIES_SERVER_HOST": self.colonies.host,
            "COLONIES_SERVER_PORT": str(self.colonies.port),
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": self.colonies.colony_name,
            "COLONIES_PRVKEY": self.colonies.executor_prvkey,
        }

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """The real ``colonies`` CLI, its output (stdout and stderr) on one pipe."""
        return subprocess.Popen(
            [colonies_binary(), *args],
            env={**os.environ, **self.cli_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def submit(self) -> dict[str, Any]:
        """Submit the spec with ``colonies function submit --follow``, echo what it prints (the
        process log as it arrives), then show the closed process; returns it."""
        assert self.colonies
        spec = _shown(self.spec)
        self.say(f"\n$ colonies function submit --spec {spec} --follow")
        t0 = time.monotonic()
        follow = self.cli("function", "submit", "--spec", str(self.spec), "--follow")
        assert follow.stdout is not None
        process_id = ""
        for line in follow.stdout:
            self.say(line.rstrip("\n"))
            for word in line.split():
                if word.startswith("ProcessId="):
                    process_id = process_id or word.removeprefix("ProcessId=")
        follow.wait()
        if not process_id:
            raise TestEnvError(f"colonies function submit exited {follow.returncode}, no process")
        process = self.colonies.wait_state(process_id, timeout=30)
        state = STATES.get(process["state"], str(process["state"]))
        self.say(f"\nprocess {process_id}: {state} {time.monotonic() - t0:.1f} s after the submit")
        output = json.dumps(process.get("out") or [])
        self.say(f"  output: {output}" + ("  (the program wrote none)" if output == "[]" else ""))
        for error in process.get("errors") or []:
            self.say(f"  error: {error}")
        return process

    def write_env(self) -> Path:
        """``env.sh``: the CLI's environment, kubectl's and PATH, for another terminal."""
        assert self.kube
        env = {**self.cli_env, "KUBECONFIG": str(self.kube.kubeconfig)}
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        lines.append(f'export PATH={shlex.quote(str(PREFIX / "bin"))}:"$PATH"')
        path = self.workdir / "env.sh"
        path.write_text("\n".join(lines) + "\n")
        return path

    def how_to_use(self, env_file: Path) -> str:
        spec = _shown(self.spec)
        exports = "\n".join(f"  export {k}={shlex.quote(v)}" for k, v in self.cli_env.items())
        return f"""
The environment stays up. To submit more, in another terminal (in {ROOT}):
{exports}
  {_shown(PREFIX / "bin" / "colonies")} function submit --spec {spec} --follow
`source {_shown(env_file)}` sets the same, KUBECONFIG and PATH; then for instance
  colonies process pss                         # the processes closed SUCCESS
  colonies log get -p PROCESS_ID --first       # a process's log from its start
  kubectl get jobs,pods -n {self.namespace} -o wide   # while one runs
Logs: {_shown(self.workdir)}/*/logs/ (servers), {_shown(self.workdir / "logs")}/ (executor)
Press Ctrl-C here to take it all down (every process, mount and cgroup; about 10 s)."""

    def down(self) -> None:
        self._down.close()
        (self.workdir / "env.sh").unlink(missing_ok=True)  # its servers are gone


def _shown(path: Path) -> str:
    """A path as a user in the checkout types it."""
    with contextlib.suppress(ValueError):
        return str(path.absolute().relative_to(ROOT))
    return str(path)


def _running(workdir: Path) -> int | None:
    """The pid of a demo still running in ``workdir``, if any."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((workdir / "pid").read_text())
        os.kill(pid, 0)
        return pid
    return None


def _clear(workdir: Path) -> threading.Thread | None:
    """Move what the previous demo left in ``workdir`` (its logs and data: containerd's
    images, etcd's: hundreds of MB) aside and remove it while this one starts."""
    if not workdir.exists():
        return None
    old = workdir.with_name(f"{workdir.name}.old-{os.getpid()}")
    workdir.rename(old)
    # never into a mount a killed demo left behind
    argv = ["rm", "-rf", "--one-file-system", str(old)]
    thread = threading.Thread(target=subprocess.run, args=(argv,), kwargs={"check": False})
    thread.start()
    return thread


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _uninterrupted(say: Callable[..., None]) -> Iterator[None]:
    """No signal stops the teardown half-way (it would leave mounts and cgroups behind)."""

    def note(signum: int, frame: FrameType | None) -> None:
        say("still taking it down; a moment")

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run(spec: Path, once: bool, workdir: Path = WORKDIR) -> int:
    def say(text: str, end: str = "\n") -> None:
        print(text, end=end, flush=True)

    if os.geteuid() != 0:
        say("make demo needs root: the real node runs containerd and a kubelet")
        return 2
    # The executor's settings are the demo's alone: a KUBEJOBS_CONFIG or
    # KUBEJOBS_NAMESPACE from the user's shell would change them.
    for key in [k for k in os.environ if k.startswith("KUBEJOBS_")]:
        if key != "KUBEJOBS_TESTENV_DIR":
            del os.environ[key]
    # SIGINT too: a shell starts background jobs with it ignored, and Python then keeps that
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    demo = Demo(workdir, spec, say)
    running = _running(workdir)
    if running:
        say(f"a demo is running already (pid {running}): Ctrl-C in its terminal first")
        return 2
    clearing = _clear(workdir)
    workdir.mkdir(parents=True)
    (workdir / "pid").write_text(str(os.getpid()))
    t0 = time.monotonic()
    code = 1
    try:
        say("kubejobs demo: bringing up the local environment (about a minute)")
        demo.up()
        say(f"environment up in {time.monotonic() - t0:.1f} s")
        process = demo.submit()
        code = 0 if process["state"] == SUCCESS else 1
        env_file = demo.write_env()
        if once:
            return code
        say(demo.how_to_use(env_file))
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return code
    finally:
        with _uninterrupted(say):
            say("\ntaking it all down ...")
            t1 = time.monotonic()
            demo.down()
            say(
                f"down in {time.monotonic() - t1:.1f} s; logs and data stay in {_shown(workdir)} "
                "until the next demo"
            )
            if clearing is not None:
                clearing.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testenv.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=SPEC, help="function spec to submit")
    ap.add_argument(
        "--once", action="store_true", help="take everything down once the process has closed"
    )
    ap.add_argument("--workdir", type=Path, default=WORKDIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        return run(args.spec.resolve(), args.once, args.workdir.resolve())
    except TestEnvError as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
