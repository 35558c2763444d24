"""Process helpers: free ports, background servers with log files, waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = Path(os.environ.get("KUBEJOBS_TESTENV_DIR", ROOT / ".testenv"))
BIN = PREFIX / "bin"

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Kill the server when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


class TestEnvError(RuntimeError):
    """A server of the test environment could not be started or is missing."""


# Ports handed out below the kernel's ephemeral range (32768-60999 by default),
# one block per pytest-xdist worker (block 0 for any other process): workers
# started together never pick the same port, and no outgoing connection can take
# a port between the check here and the server's own bind. A block is walked in
# order from a place set by the pid, so a port comes back only after 1500 others
# (its server long gone).
_PORT_BASE = 19000
_PORT_BLOCK = 1500
_MAX_WORKERS = 8
_port_next: list[int] = []


def _port_block() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    if not worker[2:].isdigit():
        return 0
    if int(worker[2:]) >= _MAX_WORKERS:
        raise TestEnvError(
            f"at most {_MAX_WORKERS} pytest-xdist workers share this machine's ports"
        )
    return int(worker[2:]) + 1


def free_port() -> int:
    """A free TCP port (on every address: servers listen on testenv.podnet.HOST_IP too),
    not handed out in this process's last 1500."""
    start = _PORT_BASE + _port_block() * _PORT_BLOCK
    if not _port_next:
        # processes in one block start far apart: pids started together are close, and
        # walks from nearby places met (a soak run and a pytest session, both in block 0)
        _port_next.append(start + os.getpid() * 7919 % _PORT_BLOCK)
    for _ in range(_PORT_BLOCK):
        port = _port_next[0]
        _port_next[0] = start + (port + 1 - start) % _PORT_BLOCK
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise TestEnvError(f"no free port in {start}-{start + _PORT_BLOCK - 1}")


def binary(name: str) -> str:
    """Path of a binary built by testenv/install.sh."""
    path = BIN / name
    if not os.access(path, os.X_OK):
        raise TestEnvError(f"{path} is missing: run testenv/install.sh first")
    return str(path)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    service: Service | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    last_err: BaseException | None = None
    while time.monotonic() < deadline:
        if service is not None and not service.running():
            raise TestEnvError(f"{service.name} exited while waiting for {what}:\n{service.tail()}")
        try:
            if check():
                return
        except Exception as err:
            last_err = err
        time.sleep(interval)
    tail = f"\n{service.tail()}" if service is not None else ""
    raise TestEnvError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_err!r}){tail}"
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Service:
    """One server process: started in its own process group, output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Service:
        if self.running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                # the server itself drops to the user (no runuser in between), so the
                # parent-death signal below, set after the switch, reaches it
                user=self.user,
                group=_primary_group(self.user) if self.user else None,
                extra_groups=[] if self.user else None,
                start_new_session=True,
                # PDEATHSIG follows the starting *thread*: only from the main thread
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        self.stop(timeout=5, sig=signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def read_log_from(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def http_ok(url: str) -> bool:
    """Whether `url` answers 200 now (a health endpoint); any failure is a no."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as err:
        err.close()
    except (OSError, urllib.error.URLError):
        pass
    return False
