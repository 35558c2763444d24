"""Noticing processes the server took back, so their Jobs are deleted within seconds.

The server does not tell an executor when maxexectime puts a process back to
WAITING (or fails it), nor when an executor is removed; the only sign is that
the process is no longer RUNNING on this executor. Once per
takeback_check_seconds, one list of the colony's RUNNING processes of this
executor type confirms most in-flight processes at once; only those the list
does not show as ours (taken back, or beyond the server's 100-item list limit)
are looked up one by one, so a quiet check costs one request, not one per Job.

Attempts count: a process the server lists as RUNNING here but in a later
attempt (taken back and assigned to this executor again) is not confirmed, so
the Job of the earlier attempt goes even if the new assignment came first. A
take-back names the attempt it saw end, so it never touches a newer one.

Beyond the list limit the lookups are bounded, so the cost of a check does not
grow with the Jobs in flight: a process is looked up every check while
its maxexectime is due (the server's take-back is then likely, and a prompt
one matters) or unknown (a Job found after a restart: the assignment gave the
others' deadlines); the others, whose deadline is far off or absent, take
turns, ROUTINE_LOOKUPS per check, least recently looked up first (removals and
other rare take-backs are noticed within a few rounds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from kubejobs.adapters.colonies import RUNNING, ColoniesClient, ColoniesError, assignment_deadline
from kubejobs.executor.reconcile import Reconciler
from kubejobs.executor.report import still_ours
from kubejobs.render.identity import attempt_of_process

log = logging.getLogger(__name__)

LIST_LIMIT = 100
"""The most processes the Colonies server returns per list (it refuses larger counts)."""
ROUTINE_LOOKUPS = 50
"""Lookups per check of processes beyond the list whose maxexectime is not due."""
CLOCK_MARGIN = 30.0
"""Seconds a maxexectime deadline counts as due early (the server's clock may run ahead)."""


def running_here(
    colonies: ColoniesClient, colony: str, executor_type: str, executor_id: str
) -> dict[str, int]:
    """Processes the server lists as RUNNING on this executor (the oldest LIST_LIMIT), with
    the attempt each is in."""
    try:
        listed = colonies.get_processes(colony, RUNNING, LIST_LIMIT, executor_type)
    except ColoniesError as err:
        log.debug("cannot list RUNNING processes, checking one by one: %s", err)
        return {}
    return {
        str(p.get("processid")): attempt_of_process(p)
        for p in listed
        if p.get("assignedexecutorid") == executor_id and p.get("state") == RUNNING
    }


class TakebackChecker(threading.Thread):
    def __init__(
        self,
        colonies: ColoniesClient,
        colony: str,
        executor_type: str,
        executor_id: str,
        reconciler: Reconciler,
        interval: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="takeback", daemon=True)
        self.colonies = colonies
        self.colony = colony
        self.executor_type = executor_type
        self.executor_id = executor_id
        self.reconciler = reconciler
        self.interval = interval
        self.stop = stop
        self.clock = time.time
        self._deadline: dict[str, float] = {}  # pid -> when the server may take it back
        self._looked_up: dict[str, float] = {}  # pid -> when it was last looked up

    def run(self) -> None:
        # At once first: Jobs found after a restart may be of processes that ended meanwhile.
        self.check_once()
        while not self.stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        # In-flight ids first: each was RUNNING on the server before the list is asked for.
        attempts = self.reconciler.running_attempts()
        for gone in set(self._looked_up) - set(attempts):
            self._looked_up.pop(gone, None)
            self._deadline.pop(gone, None)
        if not attempts:
            return
        # The assignment gave each new process's deadline: no lookup just to learn it (at
        # 1,000 in flight that was 1.8 lookups a process, a fifth of the executor's CPU)
        for pid, deadline in self.reconciler.running_deadlines().items():
            self._deadline.setdefault(pid, deadline)
        confirmed = running_here(self.colonies, self.colony, self.executor_type, self.executor_id)
        unconfirmed = [p for p, attempt in attempts.items() if confirmed.get(p) != attempt]
        for pid in self._to_look_up(unconfirmed):
            if self.stop.is_set():
                return
            attempt = attempts[pid]
            if self._still_ours(pid, attempt) is False:
                self.reconciler.post(
                    "takenback",
                    pid,
                    f"the server no longer has attempt {attempt} RUNNING on this executor",
                    attempt,
                )

    def _to_look_up(self, unconfirmed: list[str]) -> list[str]:
        """Every new or due process, then the rest in turns of ROUTINE_LOOKUPS."""
        soon = self.clock() + self.interval + CLOCK_MARGIN
        due = [p for p in unconfirmed if self._deadline.get(p, -math.inf) <= soon]
        rest = [p for p in unconfirmed if self._deadline.get(p, -math.inf) > soon]
        rest.sort(key=lambda p: self._looked_up.get(p, 0.0))
        return due + rest[:ROUTINE_LOOKUPS]

    def _still_ours(self, pid: str, attempt: int) -> bool | None:
        self._looked_up[pid] = self.clock()

        def seen(process: dict[str, Any]) -> None:
            self._deadline[pid] = assignment_deadline(process)

        return still_ours(self.colonies, pid, self.executor_id, seen, attempt)
