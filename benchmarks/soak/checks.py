"""The soak's invariants: pure functions over a History, each violation naming its process.

Every check returns ``Violation``s; ``violations(history)`` runs them all. A
violation names the invariant, the process id (or the object) and the faults
that overlapped the process's life, so it can be matched with the harness's and
the servers' logs. ``coverage(history)`` says whether the run exercised what it
must (a fault of each kind, a preemption); that is about the run, not the product.

Logs are judged per run of the program (mix.py: every line carries its run's id).
A process may legitimately run more than once: Kueue preempts it (the executor
notes "Kueue stopped run N") or the server takes it back at maxexectime (the
next attempt's note says "attempt N was taken back"). So, per stream: every run
prints its texts in order and each exactly once, cut short at most (a prefix);
the last run prints them all when the program ends by itself; and there are no
more runs than those notes explain.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.soak.history import FaultRecord, History, ProcessRecord
from kubejobs.executor.outcome import NEVER_STARTED

NOTE = "kubejobs: "
ADMITTED = "kubejobs: admitted by Kueue"
FOUND = re.compile(r"^kubejobs: executor \S+ found the Job in run \d+.*; Kueue stopped (\d+) ")
STOPPED = re.compile(r"^kubejobs: Kueue stopped (run \d+(?: of attempt \d+)?) ")
LINE = re.compile(r"^(\[\d+/[\w-]+\] )?([0-9a-f]{8}) (\S+) (.*)$")
RERUN_NOTES = (re.compile(r"^kubejobs: Kueue stopped run \d+"), re.compile(r" was taken back "))
# RSS: samples of one executor process in its first WARMUP s are its start (imports, the
# first lists and watches, thread pools); after that its RSS must not keep growing.
RSS_WARMUP = 30.0
RSS_MIN_SPAN = 60.0
RSS_GROWTH = 1.25
RSS_SLACK_KIB = 16 * 1024
FAULT_KINDS = ("replica", "colonies", "apiserver", "kubelet", "kueue", "shipper", "tls")


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    """The process id, or the object (Job/NAME, replica NAME)."""
    message: str
    faults: tuple[str, ...] = ()

    def __str__(self) -> str:
        around = f" [faults around: {', '.join(self.faults)}]" if self.faults else ""
        return f"{self.invariant}: {self.subject}: {self.message}{around}"


def _around(history: History, p: ProcessRecord) -> tuple[str, ...]:
    end = p.end_time or history.ended
    return tuple(_fault_name(history, f) for f in history.faults_around(p.submitted, end))


def _fault_name(history: History, f: FaultRecord) -> str:
    return f"{f.kind}({f.target}) at +{f.start - history.started:.0f}s for {f.end - f.start:.0f}s"


def _violation(history: History, p: ProcessRecord, invariant: str, message: str) -> Violation:
    return Violation(invariant, f"{p.kind} {p.pid}", message, _around(history, p))


# --- each process -----------------------------------------------------------------------


def check_final_state(history: History, p: ProcessRecord) -> list[Violation]:
    """Its kind's state, output and errors; no retry beyond the spec's. A workflow step's
    output holds its input (its parents' outputs): a wrong one is its data flow."""
    want = p.expect
    found = []
    if p.state != want["state"]:
        found.append(
            ("final state", f"state {p.state}, expected {want['state']} (errors {p.errors!r})")
        )
    elif not _same_output(p.out, want["out"], want["unordered_in"]):
        invariant = "data flow" if p.workflow else "final state"
        found.append((invariant, f"output {p.out!r}, expected {want['out']!r}"))
    patterns = want["errors"]
    if p.state == want["state"] and (
        len(p.errors) != len(patterns)
        or not all(re.fullmatch(r, e, re.DOTALL) for r, e in zip(patterns, p.errors, strict=False))
    ):
        found.append(("final state", f"errors {p.errors!r}, expected to match {patterns!r}"))
    if p.retries != want["retries"]:
        found.append(("retries", f"{p.retries} retries, the spec makes {want['retries']}"))
    return [_violation(history, p, invariant, message) for invariant, message in found]


def _same_output(got: list[Any], want: list[Any], unordered_in: bool) -> bool:
    if not unordered_in:
        return got == want
    return [_sorted_in(x) for x in got] == [_sorted_in(x) for x in want]


def _sorted_in(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("in"), list):
        return {**value, "in": sorted(value["in"], key=lambda v: json.dumps(v, sort_keys=True))}
    return value


def check_reported_once(history: History, p: ProcessRecord) -> list[Violation]:
    """Closed or failed exactly once by an executor (never by the server for an executor's kind)."""
    if p.expect["closed_by_server"]:
        if p.reports:
            return [_violation(history, p, "reported once", f"{p.reports} executor reports")]
        return []
    if p.reports == 1 or (p.reports == 0 and p.unanswered_reports and p.state >= 2):
        return []  # 0: the server took a report whose answer was lost; the retry was refused
    return [_violation(history, p, "reported once", f"{p.reports} accepted executor reports")]


def check_log(history: History, p: ProcessRecord) -> list[Violation]:
    """Every line of every run once and in order; the last run whole; no unexplained run."""
    want = p.expect
    streams: dict[str, dict[str, list[str]]] = {tag: {} for tag in want["streams"]}
    extra = dict.fromkeys(want["extra"], 0)
    reruns = admitted = earlier = 0
    stopped: list[str] = []
    problems = []
    for line in p.log:
        if line.startswith(NOTE):
            reruns += any(n.search(line) for n in RERUN_NOTES)
            admitted += line.startswith(ADMITTED)
            if m := STOPPED.match(line):
                stopped.append(m.group(1))
            if m := FOUND.match(line):  # a restarted executor: Kueue's count of earlier runs
                earlier = max(earlier, int(m.group(1)))
            continue
        m = LINE.match(line)
        if m is None or m.group(3) != p.marker:
            pattern = next((r for r in extra if re.fullmatch(r, line)), None)
            if pattern is None and any(re.fullmatch(r, line) for r in want["tolerated"]):
                continue
            if pattern is None:
                problems.append(f"a line that is not its program's: {line[:200]!r}")
            else:
                extra[pattern] += 1
            continue
        tag = m.group(1) or ""
        if tag not in streams:
            problems.append(f"a line of stream {tag!r}, which it does not have: {line[:200]!r}")
            continue
        streams[tag].setdefault(m.group(2), []).append(m.group(4))
    reruns += max(0, earlier - len(stopped))  # stops the notes of a found Job count
    for tag, runs in streams.items():
        texts = want["streams"][tag]
        name = f"stream {tag!r}: " if tag else ""
        if len(runs) > 1 + reruns:
            problems.append(f"{name}{len(runs)} runs, {reruns} explained by the executor's notes")
        for i, (run, got) in enumerate(runs.items()):
            if got != texts[: len(got)]:
                problems.append(f"{name}run {run}: {_difference(got, texts)}")
            elif i == len(runs) - 1 and want["complete"] and len(got) < len(texts):
                problems.append(f"{name}last run {run}: {len(got)} of {len(texts)} lines")
        # a walltime that came before the program ran: the error says so, and no line is right
        never_ran = any(NEVER_STARTED in e for e in p.errors)
        if not runs and want["complete"] and texts and p.state == want["state"] and not never_ran:
            problems.append(f"{name}none of its {len(texts)} lines")
    # the notes tell each run once (one admission a run; each stop of a run once)
    if admitted > 1 + reruns:
        problems.append(f"{admitted} notes of Kueue's admission for {1 + reruns} runs at most")
    if len(set(stopped)) < len(stopped):
        problems.append(f"a stop noted twice: {stopped}")
    if p.state == want["state"]:
        problems += [
            f"{n} lines matching {r!r}, expected 1 a run ({1 + reruns} at most)"
            for r, n in extra.items()
            if not 1 <= n <= 1 + reruns
        ]
    return [_violation(history, p, "log", problem) for problem in problems]


def _difference(got: list[str], want: list[str]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(want))
    return (
        f"{len(got)} lines, first difference at line {first + 1}: got {got[first : first + 3]!r}, "
        f"expected {want[first : first + 3]!r}"
    )


def check_files(history: History, p: ProcessRecord) -> list[Violation]:
    """What it synced back is in CFS with the exact content."""
    return [
        _violation(history, p, "sync back", f"{path}: {p.files.get(path)!r}, expected {body!r}")
        for path, body in p.expect["files"].items()
        if p.files.get(path) != body
    ]


PER_PROCESS: tuple[Callable[[History, ProcessRecord], list[Violation]], ...] = (
    check_final_state,
    check_reported_once,
    check_log,
    check_files,
)


# --- the whole run ----------------------------------------------------------------------


def check_nothing_left(history: History) -> list[Violation]:
    found = [
        Violation("nothing left", f"{kind}/{name}", "still there at the end")
        for kind, names in sorted(history.leftovers.items())
        for name in names
    ]
    found += [
        Violation("nothing left", pid, "the server still has it WAITING or RUNNING")
        for pid in history.open_processes
    ]
    return found


def check_rss_flat(history: History) -> list[Violation]:
    """Per executor process (a restart starts another): past its warm-up, the median RSS of
    the last quarter of its samples is within RSS_GROWTH (and RSS_SLACK_KIB) of the first
    quarter's. A slow leak shows as a trend, a busy moment only as a sample."""
    found = []
    for replica, samples in history.rss.items():
        lives: dict[int, list[tuple[float, int]]] = {}
        for t, os_pid, kib in samples:
            lives.setdefault(os_pid, []).append((t, kib))
        for os_pid, life in lives.items():
            settled = [(t, kib) for t, kib in life if t - life[0][0] >= RSS_WARMUP]
            if len(settled) < 8 or settled[-1][0] - settled[0][0] < RSS_MIN_SPAN:
                continue
            quarter = len(settled) // 4
            first = statistics.median(k for _, k in settled[:quarter])
            last = statistics.median(k for _, k in settled[-quarter:])
            if last > first * RSS_GROWTH + RSS_SLACK_KIB:
                found.append(
                    Violation(
                        "RSS flat",
                        f"replica {replica} (pid {os_pid})",
                        f"RSS grew from {first / 1024:.0f} MiB to {last / 1024:.0f} MiB "
                        f"over {settled[-1][0] - settled[0][0]:.0f} s",
                    )
                )
    return found


def violations(history: History) -> list[Violation]:
    """Every invariant broken, less the deviations a fault explains (``explained``)."""
    return [v for v in _all(history) if _explanation(history, v) is None]


def explained(history: History) -> list[tuple[Violation, str]]:
    """The deviations a fault explains, each with why it is not counted."""
    return [(v, why) for v in _all(history) if (why := _explanation(history, v)) is not None]


def _all(history: History) -> list[Violation]:
    found: list[Violation] = []
    for p in history.processes:
        for check in PER_PROCESS:
            found += check(history, p)
    return found + check_nothing_left(history) + check_rss_flat(history)


@dataclass(frozen=True)
class Explanation:
    invariant: str
    kind: str
    """The process kind it applies to ("" any)."""
    message: str
    """A regular expression searched in the violation's message."""
    fault: str
    """The fault kind that must have overlapped the process's life."""
    why: str


EXPLANATIONS = (
    Explanation(
        "final state",
        "",
        r"container main could not start \(StartError\): .*context canceled",
        "kubelet",
        "the kubelet was stopped while it started the container: the runtime gave up on it and "
        "the pod failed (restartPolicy Never); kubejobs fails the process with the kubelet's "
        "words, as it must without a new run of the attempt (not done, see the README)",
    ),
)


def _explanation(history: History, v: Violation) -> str | None:
    kind = v.subject.rpartition(" ")[0]
    for e in EXPLANATIONS:
        if (
            v.invariant == e.invariant
            and (not e.kind or e.kind == kind)
            and re.search(e.message, v.message)
            and any(f.startswith(f"{e.fault}(") for f in v.faults)
        ):
            return e.why
    return None


def coverage(
    history: History, min_faults: int = 1, kinds: tuple[str, ...] = FAULT_KINDS
) -> list[str]:
    """What the run failed to exercise (empty: a fault of each kind, a preemption)."""
    missing = [
        f"no {kind} fault"
        for kind in kinds
        if sum(f.kind == kind and not f.detail.startswith("skipped") for f in history.faults)
        < min_faults
    ]
    if not any(RERUN_NOTES[0].search(line) for p in history.processes for line in p.log):
        missing.append("no Kueue preemption")
    if not history.processes:
        missing.append("no process")
    return missing
