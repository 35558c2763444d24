"""Admission: take work only while there is room.

Room is counted from the processes in flight (Jobs applied or being applied, and
Jobs found again after a restart) — never from finished pods: a process's
reservation ends when its pods are done, even if its Job is kept a while. The
whole request counts: nodes x processespernode x the per-container cpu and mem.
Reservations are keyed by Job name, one per attempt of a process: when the
server takes a process back and assigns it here again, the end of the earlier
attempt releases only its own reservation, never the new attempt's. The pods
of an attempt that is over are not counted while they stop.

An assign holds a pending slot while it long-polls, so concurrent workers never
take more than max_jobs. With a cpu or mem budget the server is told what is
left (availablecpu / availablemem); only one assign is then pending at a time,
so two workers cannot both be offered the same remaining room.

With Kueue (max_queued set), a process whose Job Kueue has not admitted is also
counted as queued, and no more is taken while max_queued are: a busy cluster's
backlog then stays on the Colonies server, where other executors can take it,
instead of in this executor's suspended Jobs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubejobs.spec.model import FunctionSpec
from kubejobs.spec.quantity import parse_quantity

ZERO = Decimal(0)


@dataclass(frozen=True)
class Request:
    """What one process asks of the cluster in total."""

    cpu: Decimal = ZERO
    mem: Decimal = ZERO

    @staticmethod
    def of_spec(spec: FunctionSpec) -> Request:
        containers = spec.nodes * spec.processes_per_node
        cpu = parse_quantity(spec.cpu) if spec.cpu else ZERO
        mem = parse_quantity(spec.mem) if spec.mem else ZERO
        return Request(cpu * containers, mem * containers)

    @staticmethod
    def of_job(job: dict[str, Any]) -> Request:
        """The request of a Job found on the cluster (main containers x parallelism)."""
        spec = job.get("spec") or {}
        pods = int(spec.get("parallelism") or spec.get("completions") or 1)
        cpu = mem = ZERO
        for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
            requests = (container.get("resources") or {}).get("requests") or {}
            try:
                cpu += parse_quantity(str(requests.get("cpu", "0")))
                mem += parse_quantity(str(requests.get("memory", "0")))
            except ValueError:
                continue
        return Request(cpu * pods, mem * pods)


@dataclass(frozen=True)
class Room:
    """What an assign may ask for: '' means no limit."""

    cpu: str = ""
    mem: str = ""


class Admission:
    """Thread-safe bookkeeping of reservations; workers block in acquire() while full."""

    def __init__(
        self,
        max_jobs: int,
        cpu: Decimal | None = None,
        mem: Decimal | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.max_jobs = max_jobs
        self.cpu = cpu
        self.mem = mem
        self.max_queued = max_queued
        self._reserved: dict[str, Request] = {}
        # their sum, kept as they come and go: summing 5,000 on every assign made the
        # assignment of N processes cost N squared
        self._total = Request()
        self._queued: set[str] = set()
        self._pending = 0
        self._cond = threading.Condition()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._reserved)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queued)

    def used(self) -> Request:
        with self._cond:
            return self._used()

    def _used(self) -> Request:
        return self._total

    def _reserve(self, process_id: str, request: Request) -> None:
        self._unreserve(process_id)
        self._reserved[process_id] = request
        self._total = Request(self._total.cpu + request.cpu, self._total.mem + request.mem)

    def _unreserve(self, process_id: str) -> bool:
        request = self._reserved.pop(process_id, None)
        if request is None:
            return False
        self._total = Request(self._total.cpu - request.cpu, self._total.mem - request.mem)
        if not self._reserved:
            self._total = Request()  # no rounding carried on, whatever quantities came and went
        return True

    def _has_room(self) -> bool:
        if len(self._reserved) + self._pending >= self.max_jobs:
            return False
        if self.max_queued is not None and len(self._queued) + self._pending >= self.max_queued:
            return False
        if self.cpu is None and self.mem is None:
            return True
        if self._pending:
            return False
        used = self._used()
        return (self.cpu is None or used.cpu < self.cpu) and (
            self.mem is None or used.mem < self.mem
        )

    def acquire(
        self, stop: threading.Event, wait: float = 1.0, timeout: float | None = None
    ) -> Room | None:
        """A pending slot and the room left; None when `stop` was set or `timeout` s passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._has_room():
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    return None
                self._cond.wait(wait)
            if stop.is_set():
                return None
            self._pending += 1
            used = self._used()
            room = Room()
            if self.cpu is not None:
                room = Room(cpu=f"{int((self.cpu - used.cpu) * 1000)}m", mem=room.mem)
            if self.mem is not None:
                room = Room(cpu=room.cpu, mem=f"{int((self.mem - used.mem) // 1024)}Ki")
            return room

    def cancel(self) -> None:
        """The assign brought nothing: give the pending slot back."""
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def commit(self, process_id: str, request: Request) -> None:
        """The pending slot becomes the reservation of `process_id`."""
        with self._cond:
            self._pending -= 1
            self._reserve(process_id, request)
            if self.max_queued is not None:
                self._queued.add(process_id)  # until its Job is seen admitted
            self._cond.notify_all()

    def adopt(self, process_id: str, request: Request) -> None:
        """Count a Job found on the cluster (after a restart), even past the limits."""
        with self._cond:
            self._reserve(process_id, request)
            self._cond.notify_all()

    def set_queued(self, process_id: str, queued: bool) -> None:
        """Kueue has admitted (False) or suspended (True) the process's Job."""
        with self._cond:
            if queued and process_id in self._reserved and self.max_queued is not None:
                self._queued.add(process_id)
            elif not queued and process_id in self._queued:
                self._queued.discard(process_id)
                self._cond.notify_all()

    def release(self, process_id: str) -> None:
        with self._cond:
            self._queued.discard(process_id)
            if self._unreserve(process_id):
                self._cond.notify_all()

    def holds(self, process_id: str) -> bool:
        with self._cond:
            return process_id in self._reserved
