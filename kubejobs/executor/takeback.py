"""Noticing processes the server took back, so their Jobs are deleted within seconds.

The server does not tell an executor when maxexectime puts a process back to
WAITING (or fails it), nor when an executor is removed; the only sign is that
the process is no longer RUNNING on this executor. Once per
takeback_check_seconds, one list of the colony's RUNNING processes of this
executor type confirms most in-flight processes at once; only those the list
does not show as ours (taken back, or beyond the server's 100-item list limit)
are looked up one by one, so a quiet check costs one request, not one per Job.
"""

from __future__ import annotations

import logging
import threading

from kubejobs.adapters.colonies import RUNNING, ColoniesClient, ColoniesError
from kubejobs.executor.reconcile import Reconciler
from kubejobs.executor.report import still_ours

log = logging.getLogger(__name__)

LIST_LIMIT = 100
"""The most processes the Colonies server returns per list (it refuses larger counts)."""


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

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        # In-flight ids first: each was RUNNING on the server before the list is asked for.
        pids = self.reconciler.running_ids()
        if not pids:
            return
        confirmed = running_here(self.colonies, self.colony, self.executor_type, self.executor_id)
        for pid in pids:
            if self.stop.is_set():
                return
            if pid in confirmed:
                continue
            if still_ours(self.colonies, pid, self.executor_id) is False:
                self.reconciler.post(
                    "takenback", pid, "the server no longer has it RUNNING on this executor"
                )
