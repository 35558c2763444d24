"""Noticing processes the server took back, so their Jobs are deleted within seconds.

The server does not tell an executor when maxexectime puts a process back to
WAITING (or fails it), nor when an executor is removed; the only sign is that
the process is no longer RUNNING on this executor. Every in-flight process is
looked up once per takeback_check_seconds.
"""

from __future__ import annotations

import logging
import threading

from kubejobs.adapters.colonies import ColoniesClient
from kubejobs.executor.reconcile import Reconciler
from kubejobs.executor.report import still_ours

log = logging.getLogger(__name__)


class TakebackChecker(threading.Thread):
    def __init__(
        self,
        colonies: ColoniesClient,
        executor_id: str,
        reconciler: Reconciler,
        interval: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="takeback", daemon=True)
        self.colonies = colonies
        self.executor_id = executor_id
        self.reconciler = reconciler
        self.interval = interval
        self.stop = stop

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        for pid in self.reconciler.running_ids():
            if self.stop.is_set():
                return
            if still_ours(self.colonies, pid, self.executor_id) is False:
                self.reconciler.post(
                    "takenback", pid, "the server no longer has it RUNNING on this executor"
                )
