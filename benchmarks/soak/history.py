"""The record of one soak run: what was submitted, what each process ended as, the faults.

The harness only records; checks.py judges the record afterwards. A history is
plain JSON (``save`` / ``load``), so a run can be checked again, or with a
corrected checker, without running it again. Times are epoch seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProcessRecord:
    pid: str
    kind: str
    marker: str
    via: str
    """How it was submitted: "cli", "python" (the raw-RPC client) or "cli-workflow"."""
    submitted: float
    expect: dict[str, Any]
    """mix.Expect as a dict."""
    workflow: str = ""
    node: str = ""
    # -- what it ended as (filled in at the end) --
    state: int = -1
    out: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    submission_time: float = 0.0
    """The server's submissiontime, end_time its endtime (0 while not ended)."""
    end_time: float = 0.0
    log: list[str] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    """"LABEL/NAME" -> the content found in CFS (None: no such file)."""
    reports: int = 0
    """How many times an executor says it closed or failed it (accepted reports)."""
    unanswered_reports: int = 0
    """Reports an executor could not get an answer to (the server or its front end away)."""
    input: list[Any] = field(default_factory=list)

    @property
    def submit_to_close(self) -> float:
        return self.end_time - self.submission_time if self.end_time else 0.0


@dataclass
class FaultRecord:
    kind: str
    target: str
    start: float
    end: float
    detail: str = ""


@dataclass
class History:
    seed: int
    duration: float
    started: float = 0.0
    ended: float = 0.0
    namespace: str = ""
    replicas: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    rss: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)
    """replica -> (time, its process id, VmRSS in KiB) samples."""
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    """kind (Job, Pod, Service, Secret, Workload) -> names still there at the end."""
    open_processes: list[str] = field(default_factory=list)
    """Processes of the executor type the server still has WAITING or RUNNING at the end."""
    submit_errors: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, marker, error) of submissions that had to be sent again."""
    events: list[tuple[float, str]] = field(default_factory=list)
    """Harness notes with their time (e.g. what a wait gave up on)."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @staticmethod
    def load(path: Path) -> History:
        raw = json.loads(path.read_text())
        history = History(**{k: v for k, v in raw.items() if k not in ("processes", "faults")})
        history.processes = [ProcessRecord(**p) for p in raw["processes"]]
        history.faults = [FaultRecord(**f) for f in raw["faults"]]
        return history

    def faults_around(self, start: float, end: float) -> list[FaultRecord]:
        """The faults that overlapped [start, end]."""
        return [f for f in self.faults if f.start <= end and f.end >= start]
