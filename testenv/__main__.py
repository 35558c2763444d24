"""By-hand use of the test environment.

    python -m testenv up [--only kube,colonies,s3,node,kueue]   start in the background, print env
    python -m testenv env                            print the export lines again
    python -m testenv status                         which servers are alive
    python -m testenv down                           stop everything

State lives in .testenv/run/ (env file, pids, server logs and data). ``node``
is the real node (containerd + kubelet + kube-proxy + CoreDNS, ``real-node-0``, on
its own pod network; needs root and ``testenv/install.sh``): pods that tolerate
``kubejobs.io/real-node`` run real containers there and reach the servers started
here on ``testenv.podnet.HOST_IP``. ``kueue`` is a real Kueue
(testenv/kueue.py) on the kube cluster; it is started only when asked for
(``--only kube,kueue``), not by default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from testenv._proc import PREFIX

RUN = PREFIX / "run"
STATE = RUN / "state.json"
ENV_FILE = RUN / "env.sh"
COMPONENTS = ("kube", "colonies", "s3", "node")
#: started only when named in --only: Kueue's webhooks change how labelled Jobs behave
OPTIONAL = ("kueue",)


def _serve(only: list[str]) -> int:
    """Run in the background process: start servers, write state, wait for SIGTERM."""
    import testenv
    from testenv.colonies import ColoniesServer
    from testenv.kube import KubeCluster
    from testenv.kueue import KueueServer
    from testenv.node import RealNode
    from testenv.s3 import S3Server

    started: list[object] = []
    env: dict[str, str] = {}
    info: dict[str, object] = {"pid": os.getpid()}
    try:
        if "kube" in only:
            kube = KubeCluster(RUN / "kube").start()
            started.append(kube)
            env.update(kube.env)
            info["kubeconfig"] = str(kube.kubeconfig)
            info["logs"] = {n: str(s.log_path) for n, s in kube.services.items()}
            if "node" in only:
                node = RealNode(kube, RUN / "node").start()
                started.append(node)
                info["node_logs"] = {n: str(s.log_path) for n, s in node.services.items()}
                # where pods reach the servers started here (Colonies, S3, the API server)
                env["KUBEJOBS_TESTENV_HOST_IP"] = node.host_ip
            if "kueue" in only:
                kueue = KueueServer(kube, RUN / "kueue").start()
                started.append(kueue)
                info["kueue_log"] = str(kueue.service.log_path)
        if "s3" in only:
            s3 = S3Server(RUN / "s3").start()
            started.append(s3)
            env.update(s3.config.env)
        if "colonies" in only:
            col = ColoniesServer(RUN / "colonies").start()
            started.append(col)
            env.update(col.env)
            env["COLONIES_SERVER_PRVKEY"] = col.server_prvkey
        with contextlib.suppress(Exception):
            env["KUBECONFORM_SCHEMA_LOCATION"] = testenv.kubeconform_schema_location()
        env["PATH"] = f"{testenv.BIN}:{os.environ.get('PATH', '')}"
        ENV_FILE.write_text("".join(f"export {k}={_quote(v)}\n" for k, v in sorted(env.items())))
        info["env"] = env
        info["ready"] = True
        STATE.write_text(json.dumps(info, indent=2))
        stop = False

        def on_term(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        while not stop:
            time.sleep(0.5)
    except Exception as err:
        info["error"] = repr(err)
        STATE.write_text(json.dumps(info, indent=2))
        raise
    finally:
        for item in reversed(started):
            with contextlib.suppress(Exception):
                # the Colonies server also removes its PostgreSQL cluster
                getattr(item, "shutdown", getattr(item, "stop", None))()  # type: ignore[misc]
    return 0


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _state() -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(STATE.read_text())
        return data
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def cmd_up(args: argparse.Namespace) -> int:
    st = _state()
    if st and _alive(int(st.get("pid", 0))):  # type: ignore[call-overload]
        print(f"already up (pid {st['pid']}); `python -m testenv down` first", file=sys.stderr)
        return 1
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    only = [c for c in args.only.split(",") if c]
    unknown = sorted(set(only) - set(COMPONENTS) - set(OPTIONAL))
    if unknown:
        print(f"unknown component(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    with open(RUN / "testenv.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "testenv", "_serve", ",".join(only)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        st = _state()
        if st and st.get("ready"):
            break
        if (st and st.get("error")) or proc.poll() is not None:
            print((RUN / "testenv.log").read_text(errors="replace")[-5000:], file=sys.stderr)
            print("testenv failed to start", file=sys.stderr)
            return 1
        time.sleep(0.5)
    else:
        print("timed out; see " + str(RUN / "testenv.log"), file=sys.stderr)
        return 1
    if "kubeconfig" in st:
        print(f"# kubeconfig: {st['kubeconfig']}")
    print(
        f'# environment up (pid {proc.pid}); eval "$(python -m testenv env)" or source {ENV_FILE}'
    )
    print(ENV_FILE.read_text(), end="")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    if not ENV_FILE.exists():
        print("not up", file=sys.stderr)
        return 1
    print(ENV_FILE.read_text(), end="")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    st = _state()
    if not st or not _alive(int(st.get("pid", 0))):  # type: ignore[call-overload]
        print("down")
        return 1
    print(f"up (pid {st['pid']})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    st = _state()
    if not st or not _alive(int(st.get("pid", 0))):  # type: ignore[call-overload]
        print("not running")
        return 0
    pid = int(st["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        STATE.unlink()
    print("down")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_serve"]:
        return _serve(argv[1].split(",") if len(argv) > 1 else list(COMPONENTS))
    ap = argparse.ArgumentParser(prog="python -m testenv", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the environment in the background")
    up.add_argument(
        "--only",
        default=",".join(COMPONENTS),
        help="comma list of kube,colonies,s3,node,kueue (node and kueue need kube; "
        "kueue only when listed)",
    )
    up.add_argument("--timeout", type=float, default=300)
    up.set_defaults(func=cmd_up)
    sub.add_parser("env", help="print export lines").set_defaults(func=cmd_env)
    sub.add_parser("status").set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop the environment").set_defaults(func=cmd_down)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
