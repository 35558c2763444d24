"""Retries as the seed defines them, with real containers on real-node-0 and the real server.

`maxexectime` is how long an attempt may run before the server takes the
process back and hands it out again; `maxretries` bounds how many times. The
programs here outlive maxexectime (busybox `sh` as PID 1 ignores SIGTERM unless
it traps it) and print a line after their attempt is over. Each test records
what happened first (every Job and pod event of the namespace, with its arrival
time, from `kubectl get --watch`; the process and its log from the server) and
checks the invariants over that record afterwards:

- every attempt's program ran, and its line sits in the log under that
  attempt's note; each take-back is in the log;
- nothing a taken-back attempt printed afterwards is in the log;
- one Job per attempt, none applied or started after the process ended;
- no Job left within takeback_check_seconds (plus a little) of the failure.

The figures printed (seconds from a take-back to the next attempt's program) are
read with `-s`; nothing asserts on them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.polling import until
from tests.integration.realnode.conftest import job_spec
from tests.integration.realnode.test_executor_realnode import Gate, gate
from tests.integration.test_executor_e2e import FAILED, SUCCESS, ExecutorRun

pytestmark = pytest.mark.integration
__all__ = ["gate"]  # the fixture

WAIT = 180.0
# maxexectime, s: long enough for an attempt's pod to start and its program to print on a
# busy machine (the suite runs on several workers); the programs outlive it (sleep 2x).
EXEC = 10
CHECK = 2  # takeback_check_seconds
SLACK = 3.0  # the server's 1 s timeout loop, a lookup and a delete on a loaded machine
WAITING = 0
NOTE = re.compile(r"^kubejobs: attempt (\d+)(?: of \d+)? starts")
TAKEN_BACK = "kubejobs: attempt {} was taken back by the server after maxexectime {} s"


# --- the record --------------------------------------------------------------------


@dataclass
class Thing:
    """One Job or pod as the watch saw it."""

    kind: str
    name: str
    attempt: int
    executor: str
    added: float  # arrival of its first event (wall clock)
    deleted: float | None = None
    running: float | None = None  # pods: first seen Running


@dataclass
class History:
    """Every Job and pod event of one namespace, from two `kubectl get --watch` streams."""

    kubeconfig: Path
    namespace: str
    things: dict[str, Thing] = field(default_factory=dict)  # by uid
    changed: threading.Condition = field(default_factory=threading.Condition)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> History:
        for kind in ("jobs", "pods"):
            proc = subprocess.Popen(
                ["kubectl", f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, "get", kind,
                 "--watch", "--output-watch-events", "-o", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self.procs.append(proc)
            reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
            reader.start()
            self.readers.append(reader)
        return self

    def stop(self) -> None:
        for proc, reader in zip(self.procs, self.readers, strict=True):
            proc.kill()
            proc.wait(10)
            reader.join(10)
            assert proc.stdout is not None
            proc.stdout.close()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            self._record(event["type"], event["object"], time.time())

    def _record(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        with self.changed:
            thing = self.things.get(meta["uid"])
            if thing is None:
                labels = meta.get("labels") or {}
                thing = self.things[meta["uid"]] = Thing(
                    obj["kind"],
                    meta["name"],
                    int(labels.get("kubejobs.io/attempt", "1")),
                    (meta.get("annotations") or {}).get("kubejobs.io/executor", ""),
                    now,
                )
            if kind == "DELETED":
                thing.deleted = now
            elif thing.running is None and (obj.get("status") or {}).get("phase") == "Running":
                thing.running = now
            self.changed.notify_all()

    def wait(self, check: Callable[[History], Any], what: str, timeout: float = WAIT) -> Any:
        """The first truthy `check(self)`, re-evaluated at each watch event."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (found := check(self)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"gave up waiting for {what}: {self.things}")
                self.changed.wait(min(left, 1.0))
            return found

    def of(self, kind: str) -> list[Thing]:
        return sorted((t for t in self.things.values() if t.kind == kind), key=lambda t: t.added)


def pod_running(attempt: int) -> Callable[[History], bool]:
    return lambda h: any(p.attempt == attempt and p.running for p in h.of("Pod"))


def nothing_left(h: History) -> bool:
    return bool(h.things) and all(t.deleted for t in h.things.values())


@pytest.fixture
def history(kube: Any, kube_namespace: Any) -> Iterator[History]:
    recorded = History(kube.kubeconfig, kube_namespace.name).start()
    yield recorded
    recorded.stop()


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def log_entries(colonies: Any, pid: str) -> list[tuple[float, str]]:
    """(server time, line) of every line of the process log, in order."""
    out = []
    for entry in colonies.get_logs(pid, 500):
        for line in entry["message"].splitlines():
            out.append((entry["timestamp"] / 1e9, line))
    return out


def by_attempt(lines: list[str]) -> dict[int, list[str]]:
    """The log cut at each "attempt N starts" note (0: before the first)."""
    found: dict[int, list[str]] = {}
    current = 0
    for line in lines:
        if m := NOTE.match(line):
            current = int(m.group(1))
        found.setdefault(current, []).append(line)
    return found


def check_story(lines: list[str], attempts: int, program: list[str]) -> None:
    """Each attempt marked, its program's lines under it, each take-back before the next."""
    parts = by_attempt(lines)
    assert sorted(parts) == list(range(1, attempts + 1)), lines
    for n in range(1, attempts + 1):
        assert [line for line in parts[n] if not line.startswith("kubejobs:")] == program, (
            n,
            lines,
        )
        if n < attempts:
            assert parts[n][-1] == TAKEN_BACK.format(n, EXEC), lines
    assert "the last one" in parts[attempts][0] or attempts == 1, lines


def check_jobs(h: History, pid: str, attempts: int, ended: float) -> None:
    """One Job and one pod per attempt, all created before the process ended."""
    names = [f"kj-{pid[:40]}" + (f"-{n}" if n > 1 else "") for n in range(1, attempts + 1)]
    assert [j.name for j in h.of("Job")] == names, h.things
    assert sorted(p.attempt for p in h.of("Pod")) == list(range(1, attempts + 1)), h.things
    late = [t for t in h.things.values() if t.added > ended]
    assert not late, f"created after the process ended at {ended}: {late}"


def figures(entries: list[tuple[float, str]], what: str) -> None:
    """Seconds from each assignment of a new attempt (its note) to its program's first line."""
    for i, (at, line) in enumerate(entries):
        if (m := NOTE.match(line)) and int(m.group(1)) > 1:
            first = next(t for t, text in entries[i + 1 :] if not text.startswith("kubejobs:"))
            print(
                f"{what}: attempt {m.group(1)} assigned -> program's first line: {first - at:.2f} s"
            )


def spec_file(tmp_path: Path, doc: dict[str, Any], colony: str) -> Path:
    doc["conditions"]["colonyname"] = colony
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    return path


def submit_and_wait(colonies: Any, path: Path) -> tuple[str, int]:
    """`colonies function submit --spec F --wait` as a user runs it: returns at SUCCESS or
    FAILED (the server's subscription; FAILED exits non-zero); the process id it logged."""
    done = colonies.cli(
        "function", "submit", "--spec", str(path), "--wait", timeout=WAIT, check=False
    )
    found = [w for w in done.stderr.split() if w.startswith("ProcessId=")]
    assert found, done.stderr
    return str(found[0].removeprefix("ProcessId=")), done.returncode


# --- the tests ---------------------------------------------------------------------

IGNORES_TERM = f"echo attempt-starts; sleep {2 * EXEC}; echo never"


@pytest.mark.parametrize(
    ("script", "late"),
    [
        (IGNORES_TERM, ["never"]),
        (f"trap 'echo got-term; exit 143' TERM; echo attempt-starts; sleep {2 * EXEC} & wait; echo never",
         ["got-term", "never"]),
    ],
    ids=["ignores-sigterm", "handles-sigterm"],
)  # fmt: skip
def test_every_attempt_runs_marked_and_nothing_runs_after_the_process_failed(
    real_executor: Callable[..., ExecutorRun],
    colonies: Any,
    history: History,
    tmp_path: Path,
    script: str,
    late: list[str],
) -> None:
    run = real_executor(takeback_check_seconds=CHECK)
    doc = job_spec(run.type, "sh", ["-c", script], maxexectime=EXEC, maxretries=2)
    pid, code = submit_and_wait(colonies, spec_file(tmp_path, doc, colonies.colony_name))
    process = colonies.wait_state(pid, (FAILED,), 10)  # --wait returned: ended; its errors
    ended = epoch(process["endtime"])
    history.wait(nothing_left, "every Job and pod gone")  # so every late line had its chance

    assert code != 0  # the CLI says the process failed
    assert process["retries"] == 2 and process["errors"] == [
        "Maximum execution time limit exceeded"
    ], process
    entries = log_entries(colonies, pid)
    lines = [line for _, line in entries]
    check_story(lines, 3, ["attempt-starts"])
    assert not [line for line in lines if line in late], lines
    check_jobs(history, pid, 3, ended)
    last_job = max(j.deleted or 0.0 for j in history.of("Job"))
    assert last_job <= ended + CHECK + SLACK, (
        f"the last Job went {last_job - ended:.1f} s after the process failed"
    )
    if "trap" in script:  # a program that stops on SIGTERM is not kept for the grace period
        for job in history.of("Job")[:2]:
            pod = next(p for p in history.of("Pod") if p.attempt == job.attempt)
            assert pod.deleted is not None and job.deleted is not None
            assert pod.deleted - job.deleted < 10, (job, pod)
    figures(entries, script.split(";")[0])
    print(f"last Job gone {last_job - ended:.2f} s after FAILED")


def test_an_executor_killed_between_take_back_and_reassignment_runs_the_next_attempt(
    real_executor: Callable[..., ExecutorRun], colonies: Any, history: History, gate: Gate
) -> None:
    run = real_executor(takeback_check_seconds=CHECK)
    # Every attempt waits for the gate, which opens only once attempt 2 runs: attempt 1's
    # program then finishes too, after its attempt is over, and must leave no trace.
    url = gate.url
    script = f"echo attempt-starts; until wget -q -O /dev/null {url} 2>/dev/null; do sleep 0.2; done; echo finished"
    pid = run.submit(job_spec(run.type, "sh", ["-c", script], maxexectime=12, maxretries=1))
    history.wait(pod_running(1), "attempt 1's pod running")
    until(lambda: "attempt-starts" in colonies.log_text(pid), "attempt 1's program", WAIT)
    run.stop(signal.SIGKILL)
    until(
        lambda: colonies.get_process(pid)["state"] == WAITING,
        "the server to take attempt 1 back",
        30,
    )
    run.start()
    history.wait(pod_running(2), "attempt 2's pod running")
    gate.open()
    process = run.wait_done(pid, WAIT)
    history.wait(nothing_left, "every Job and pod gone")

    assert process["state"] == SUCCESS and process["retries"] == 1, process
    lines = [line for _, line in log_entries(colonies, pid)]
    parts = by_attempt(lines)
    assert sorted(parts) == [1, 2], lines
    assert [x for x in parts[1] if not x.startswith("kubejobs:")] == ["attempt-starts"], lines
    assert parts[1][-1] == TAKEN_BACK.format(1, 12), lines
    assert [x for x in parts[2] if not x.startswith("kubejobs:")] == [
        "attempt-starts",
        "finished",
    ], lines
    check_jobs(history, pid, 2, epoch(process["endtime"]))
    assert 'kubejobs_processes_total{outcome="succeeded"} 1.0' in run.metrics()


def test_two_executors_of_the_type_share_the_attempts(
    real_executor: Callable[..., ExecutorRun],
    colonies: Any,
    history: History,
    kube_namespace: Any,
    tmp_path: Path,
) -> None:
    # One Job at a time each: the executor whose attempt was taken back is still full until
    # its take-back check notices, so the server hands the next attempt to the other one.
    run = real_executor(takeback_check_seconds=CHECK, max_jobs=1)
    other_name, other_key = colonies.add_executor(run.name + "-b", run.type)
    kube_namespace.kubectl(
        "create", "secret", "generic", "kubejobs-executor-key-b", f"--from-literal=prvkey={other_key}"
    )  # fmt: skip
    other = ExecutorRun(
        colonies,
        kube_namespace,
        other_name,
        run.type,
        other_key,
        tmp_path / "executor-b.log",
        {
            **run.env,
            "KUBEJOBS_EXECUTOR_NAME": other_name,
            "KUBEJOBS_EXECUTOR_PRVKEY": other_key,
            "KUBEJOBS_EXECUTOR_KEY_SECRET": "kubejobs-executor-key-b",
        },
    )
    try:
        other.start()
        doc = job_spec(run.type, "sh", ["-c", IGNORES_TERM], maxexectime=EXEC, maxretries=2)
        pid = run.submit(doc)
        process = run.wait_done(pid, WAIT)
        history.wait(nothing_left, "every Job and pod gone")
    finally:
        other.stop(signal.SIGKILL)

    assert process["state"] == FAILED and process["retries"] == 2, process
    lines = [line for _, line in log_entries(colonies, pid)]
    check_story(lines, 3, ["attempt-starts"])
    assert "never" not in lines, lines
    check_jobs(history, pid, 3, epoch(process["endtime"]))
    ran = {j.executor for j in history.of("Job")}
    assert ran == {run.name, other_name}, history.of("Job")
    for job in history.of("Job"):  # each attempt's note names the executor that ran it
        assert any(
            line.startswith(
                f"kubejobs: attempt {job.attempt} of 3 starts on executor {job.executor}"
            )
            for line in lines
        ), (job, lines)
