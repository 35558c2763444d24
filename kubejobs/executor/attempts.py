"""Attempts of a process: which one the server is in, and what its log says about them.

The server (v1.9.7) counts `retries` each time maxexectime takes a RUNNING
process back (its timeout loop puts it back to WAITING, or fails it with
"Maximum execution time limit exceeded" once retries reached maxretries), and
every assignment sets `starttime` (and `execdeadline`). Attempt N is the
process with retries N-1 (render/identity.py). An executor removal requeues
without counting a retry, so the next assignment is the same attempt number.

Colonies refuses log lines for a process that is not RUNNING on the caller, so
a take-back cannot be written when it happens: the executor of the next attempt
writes it at assignment, before its Job is applied, followed by the start of
the new attempt. The final failure is the server's own (the process's errors);
the log's last note announced the last attempt. Pure functions, unit-tested.
"""

from __future__ import annotations

from typing import Any

from kubejobs.adapters.colonies import RUNNING
from kubejobs.render.identity import attempt_of_process


def limits(process: dict[str, Any]) -> tuple[int, int]:
    """(maxexectime, maxretries) of the process's spec; -1 where not set."""
    spec = process.get("spec") or {}
    exec_time, retries = spec.get("maxexectime", -1), spec.get("maxretries", -1)
    return (
        exec_time if isinstance(exec_time, int) else -1,
        retries if isinstance(retries, int) else -1,
    )


def is_current(process: dict[str, Any], executor_id: str, attempt: int | None = None) -> bool:
    """The process is RUNNING on `executor_id` (and, when given, in `attempt`)."""
    if process.get("state") != RUNNING or process.get("assignedexecutorid") != executor_id:
        return False
    return attempt is None or attempt_of_process(process) == attempt


def retried(process: dict[str, Any]) -> bool:
    """Whether the process can have more than one attempt, or already has."""
    exec_time, max_retries = limits(process)
    return attempt_of_process(process) > 1 or (exec_time > 0 and max_retries != 0)


def notes(process: dict[str, Any], executor_name: str) -> list[str]:
    """The lines for the process log when an attempt is assigned (none for a one-shot spec)."""
    if not retried(process):
        return []
    attempt = attempt_of_process(process)
    exec_time, max_retries = limits(process)
    lines = []
    if attempt > 1:
        lines.append(
            f"kubejobs: attempt {attempt - 1} was taken back by the server after "
            f"maxexectime {exec_time} s"
            if exec_time > 0
            else f"kubejobs: attempt {attempt - 1} was taken back by the server"
        )
    total = "" if max_retries < 0 else f" of {max_retries + 1}"
    line = f"kubejobs: attempt {attempt}{total} starts"
    if executor_name:
        line += f" on executor {executor_name}"
    if max_retries >= 0 and attempt > max_retries and exec_time > 0:
        line += (
            f"; the last one: the server fails the process if it runs longer than "
            f"maxexectime {exec_time} s"
        )
    elif exec_time > 0:
        line += f"; the server takes it back if it runs longer than maxexectime {exec_time} s"
    lines.append(line)
    return lines
