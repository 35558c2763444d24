"""Noticing processes the server took back, so their Jobs are deleted within seconds.

The server does not tell an executor when maxexectime puts a process back to
WAITING (or fails it), nor when an executor is removed; the only sign is that
the process is no longer RUNNING on this executor. Once per
takeback_check_seconds, one list of the colony's RUNNING processes of this
executor type confirms most in-flight processes at once; only those the list
does not show as ours (taken back, or beyond the server's 100-item list limit)
are looked up one by one, so a quiet check costs one request, not one per Job.

Beyond the list limit the lookups are bounded, so the cost of a check does not
grow with the Jobs in flight: a process is looked up every check while it is
new or its maxexectime is due (the server's take-back is then likely, and a
prompt one matters); the others, whose deadline is far off or absent, take
turns, ROUTINE_LOOKUPS per check, least recently looked up first (removals and
other rare take-backs are noticed within a few rounds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from kubejobs.adapters.colonies import RUNNING, ColoniesClient, ColoniesError
from kubejobs.executor.outcome import timestamp
from kubejobs.executor.reconcile import Reconciler
from kubejobs.executor.report import still_ours

log = logging.getLogger(__name__)

LIST_LIMIT = 100
"""The most processes the Colonies server returns per list (it refuses larger counts)."""
ROUTINE_LOOKUPS = 50
"""Lookups per check of processes beyond the list whose maxexectime is not due."""
CLOCK_MARGIN = 30.0
"""Seconds a maxexectime deadline counts as due early (the server's clock may run ahead)."""


def running_here(
    colonies: ColoniesClient, colony: str, executor_type: str, executor_id: str
) -> set[str]:
    """Ids of processes the server lists as RUNNING on this executor (the oldest LIST_LIMIT)."""
    try:
        listed = colonies.get_processes(colony, RUNNING, LIST_LIMIT, executor_type)
    except ColoniesError as err:
        log.debug("cannot list RUNNING processes, checking one by one: %s", err)
        return set()
    return {
        str(p.get("processid"))
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
        while not self.stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        # In-flight ids first: each was RUNNING on the server before the list is asked for.
        pids = self.reconciler.running_ids()
        for gone in set(self._looked_up) - set(pids):
            self._looked_up.pop(gone, None)
            self._deadline.pop(gone, None)
        if not pids:
            return
        confirmed = running_here(self.colonies, self.colony, self.executor_type, self.executor_id)
        for pid in self._to_look_up([p for p in pids if p not in confirmed]):
            if self.stop.is_set():
                return
            if self._still_ours(pid) is False:
                self.reconciler.post(
                    "takenback", pid, "the server no longer has it RUNNING on this executor"
                )

    def _to_look_up(self, unconfirmed: list[str]) -> list[str]:
        """Every new or due process, then the rest in turns of ROUTINE_LOOKUPS."""
        soon = self.clock() + self.interval + CLOCK_MARGIN
        due = [p for p in unconfirmed if self._deadline.get(p, -math.inf) <= soon]
        rest = [p for p in unconfirmed if self._deadline.get(p, -math.inf) > soon]
        rest.sort(key=lambda p: self._looked_up.get(p, 0.0))
        return due + rest[:ROUTINE_LOOKUPS]

    def _still_ours(self, pid: str) -> bool | None:
        self._looked_up[pid] = self.clock()

        def seen(process: dict[str, Any]) -> None:
            self._deadline[pid] = _deadline(process)

        return still_ours(self.colonies, pid, self.executor_id, seen)


def _deadline(process: dict[str, Any]) -> float:
    """When the server's timeout loop may take the process back: start + maxexectime."""
    limit = (process.get("spec") or {}).get("maxexectime", -1)
    started = timestamp(process.get("starttime"))
    if not isinstance(limit, int) or limit < 0 or started is None:
        return math.inf
    return started + limit
