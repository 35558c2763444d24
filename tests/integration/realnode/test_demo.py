"""`make demo` from what `make setup` leaves: the whole path, then nothing left behind.

Runs ``python -m testenv.demo --once`` (what `make demo` runs, ending once the process
has closed instead of at Ctrl-C) in a work dir of its own. It brings up its own control
plane, real node, Colonies server and executor rather than the session's: its bring-up
and teardown are what is under test, and a second ``real-node-0`` could not join the
session's cluster. The test process is the demo's child subreaper, so anything the demo
started and left running (a server, a containerd shim, a container) would be found here.
About 65 s (67 s and 81 s on 2026-12-06, the 2-core machine loaded by other suites).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
_PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Orphans of this process's descendants become its children (not init's) meanwhile."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def children() -> dict[int, str]:
    """This process's children: pid -> state letter (Z: exited, not yet reaped)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            after_name = stat.read_text().rsplit(")", 1)[1].split()
            if int(after_name[1]) == os.getpid():
                found[int(stat.parent.name)] = after_name[0]
    return found


def left_running(before: set[int]) -> dict[int, str]:
    """The children the demo left that still run, after reaping the ones that exited (the
    shims the node's stop killed were reparented here: they are ours to reap). A process
    gets 2 s to finish dying (a SIGKILL the demo sent just before it exited)."""
    deadline = time.monotonic() + 2
    while True:
        new = {pid: state for pid, state in children().items() if pid not in before}
        for pid, state in new.items():
            if state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        alive = [pid for pid, state in new.items() if state != "Z"]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    described = {}
    for pid in alive:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            described[pid] = cmd.decode(errors="replace")
    return described


def test_demo_runs_hello_world_and_leaves_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    # a short path: the kubelet's sockets under it must fit a unix socket address (108 bytes)
    workdir = tmp_path_factory.mktemp("demo")
    before = set(children())
    with subreaper():
        demo = subprocess.Popen(
            [sys.executable, "-m", "testenv.demo", "--once", "--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        before.add(demo.pid)
        out, _ = demo.communicate(timeout=600)
        leftovers = left_running(before)
    for leftover in leftovers:  # reported below, and not left to outlive the session
        with contextlib.suppress(OSError):
            os.kill(leftover, signal.SIGKILL)
    assert demo.returncode == 0, out
    submitted = re.search(r"ProcessId=([0-9a-f]{64})", out)
    assert submitted, out
    pid = submitted.group(1)
    assert f"\nhello from {pid}\n" in out, out  # the program's line, followed from the log
    assert f"\nprocess {pid}: SUCCESS" in out, out
    assert not leftovers, leftovers
    mounts = Path("/proc/self/mounts").read_text()
    assert str(workdir) not in mounts, mounts
    cgroups = list(Path("/sys/fs/cgroup").glob(f"*/kubejobs-{demo.pid}-*"))
    assert not cgroups, cgroups  # the node's cgroup root (testenv/node.py) is named so
