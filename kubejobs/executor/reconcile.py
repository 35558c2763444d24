"""The reconciler: one thread that owns what the executor knows about its Jobs.

Watch events, worker results and timer ticks arrive on one queue and are handled
in order, so the state needs no locks. Each process in flight moves through

    APPLYING -> RUNNING -> REPORTING -> FINISHED -> DELETING -> (gone)
                      \\-> DELETING (taken back by the server)

A Job that Kueue holds suspended is waiting, not failing: no start timeout runs
and the process log says once why it waits and when it is admitted. A Job that
Kueue suspends again (preemption) runs again when re-admitted; the log marks
the attempt. A Workload Kueue will never admit fails the process with Kueue's
words.

A Job carrying this executor's annotation that the reconciler does not know is
adopted (that is how a restarted executor finds its Jobs again): it is counted
against capacity unless it has finished, and its outcome is reported like any
other. A Job being deleted is never adopted, and a process's record is kept
until its Job has gone, so late watch events cannot resurrect it.

Side effects (Colonies calls, deletes) run on a worker pool and report back
through the queue; the reconciler itself never blocks on a server.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubejobs.executor import kueue
from kubejobs.executor.admission import Admission, Request
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome, Timeouts, condition, job_outcome
from kubejobs.render.identity import (
    EXECUTOR_ANNOTATION,
    JOB_NAME_PREFIX,
    PROCESS_ANNOTATION,
    PROCESS_LABEL,
)

log = logging.getLogger(__name__)

APPLYING, RUNNING, REPORTING, FINISHED, DELETING = (
    "applying",
    "running",
    "reporting",
    "finished",
    "deleting",
)
RETRY_SECONDS = 2.0
MAX_CREATE_FAILURES = 10_000


@dataclass
class Flight:
    """One process this executor is responsible for."""

    process_id: str
    job_name: str
    phase: str
    indexed: bool = False
    outcome: Outcome | None = None
    taken_back: bool = False
    delete_at: float = 0.0
    retry_at: float = 0.0
    busy: bool = False  # a side effect for it is running on the pool
    started: float = 0.0
    # Kueue: whether the current attempt was admitted, whether its wait was told, since when
    # it waits, and the log notes on their way (the report waits for them: Colonies refuses
    # log lines once the process is closed).
    admitted: bool = False
    told_waiting: bool = False
    attempt: int = 1
    waiting_since: float = 0.0
    noting: int = 0


class Actions:
    """The side effects the reconciler asks for; each returns a queue message or None."""

    def report(self, process_id: str, outcome: Outcome) -> tuple[Any, ...]:
        raise NotImplementedError

    def delete(self, process_id: str, job_name: str, indexed: bool) -> tuple[Any, ...]:
        raise NotImplementedError

    def note(self, process_id: str, line: str) -> tuple[Any, ...]:
        """Add `line` to the process log (best effort); ('noted', pid)."""
        raise NotImplementedError


class Reconciler:
    def __init__(
        self,
        executor_name: str,
        admission: Admission,
        actions: Actions,
        metrics: Metrics,
        timeouts: Timeouts,
        keep_failed_seconds: int,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.executor_name = executor_name
        self.admission = admission
        self.actions = actions
        self.metrics = metrics
        self.timeouts = timeouts
        self.keep_failed_seconds = keep_failed_seconds
        self.clock = clock
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}  # job name -> pod name -> pod
        self.workloads: dict[str, dict[str, Any]] = {}  # job name -> its Kueue Workload
        self.flights: dict[str, Flight] = {}
        # the Job controller's last FailedCreate message per Job uid (quota, admission,
        # a missing service account): such a Job would wait for its pods forever
        self.create_failures: dict[str, str] = {}
        self.synced: set[str] = set()
        self.heartbeat = clock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="effects")
        # one thread: a process's notes reach its log in the order they were decided
        self._notes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notes")
        self._lock = threading.Lock()
        self._running_ids: list[str] = []
        self._known_ids: frozenset[str] = frozenset()
        self.ready = threading.Event()  # both watches have listed once

    # Interface for other threads ------------------------------------------

    def post(self, *message: Any) -> None:
        self.inbox.put(message)

    def watch_sink(self, kind: str, event: str, obj: Any) -> None:
        self.inbox.put(("watch", kind, event, obj))

    def running_ids(self) -> list[str]:
        """Processes whose Jobs are running (for the take-back check)."""
        with self._lock:
            return list(self._running_ids)

    def known(self, process_id: str) -> bool:
        with self._lock:
            return process_id in self._known_ids

    # The loop ----------------------------------------------------------------

    def run(self, stop: threading.Event, tick: float = 1.0) -> None:
        next_tick = 0.0
        while not stop.is_set():
            try:
                message = self.inbox.get(timeout=tick)
            except queue.Empty:
                message = None
            if message is not None:
                try:
                    self.handle(message)
                except Exception:  # one bad object must not stop the executor
                    log.exception("reconciler failed on %s", message[0])
            if self.clock() >= next_tick:
                self.tick()
                next_tick = self.clock() + tick
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._notes.shutdown(wait=True, cancel_futures=False)

    def drain(self) -> None:
        """Handle every queued message (tests)."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.handle(message)

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "watch":
            self._on_watch(message[1], message[2], message[3])
        elif kind == "applying":
            pid, name, indexed, started = message[1], message[2], message[3], message[4]
            flight = self.flights.get(pid)
            if flight is None or flight.phase in (FINISHED, DELETING):
                self.flights[pid] = Flight(pid, name, APPLYING, indexed, started=started)
        elif kind == "applied":
            self._on_applied(message[1])
        elif kind == "rejected":
            self._forget(message[1])
        elif kind == "takenback":
            self._on_taken_back(message[1], message[2])
        elif kind == "reported":
            self._on_reported(message[1], message[2])
        elif kind == "deleted":
            self._on_deleted(message[1])
        elif kind == "noted":
            flight = self.flights.get(message[1])
            if flight:
                flight.noting -= 1
                if flight.phase == REPORTING:
                    self._submit_report(flight)
        elif kind == "retry":
            flight = self.flights.get(message[1])
            if flight:
                flight.busy = False
                flight.retry_at = self.clock() + RETRY_SECONDS

    def tick(self) -> None:
        self.heartbeat = self.clock()
        now = self.clock()
        for flight in list(self.flights.values()):
            if flight.busy or flight.retry_at > now:
                continue
            if flight.phase == RUNNING:
                self._evaluate(flight)
            elif flight.phase == REPORTING and flight.outcome:
                self._submit_report(flight)
            elif flight.phase == FINISHED and flight.delete_at <= now:
                self._submit_delete(flight)
            elif flight.phase == DELETING:
                job = self.jobs.get(flight.job_name)
                if job is None:
                    self._forget(flight.process_id)
                elif not (job.get("metadata") or {}).get("deletionTimestamp"):
                    self._submit_delete(flight)
        self.metrics.jobs_in_flight.set(self.admission.in_flight)
        self.metrics.jobs_queued.set(self.admission.queued)
        self._publish()

    # Watch events --------------------------------------------------------------

    def _on_watch(self, kind: str, event: str, obj: Any) -> None:
        if event == "SYNC":
            self._on_sync(kind, obj)
            return
        if kind == "Job":
            self._on_job(event, obj)
        elif kind == "Pod":
            self._on_pod(event, obj)
        elif kind == "Event" and event != "DELETED":
            self._on_failed_create(obj)
        elif kind == kueue.WORKLOAD_KIND:
            self._on_workload(event, obj)

    def _on_sync(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == "Event":
            for item in items:
                self._on_failed_create(item)
            return
        if kind == kueue.WORKLOAD_KIND:
            self.workloads = {}
            for item in items:
                self._on_workload("MODIFIED", item)
            return
        if kind == "Job":
            fresh = {j["metadata"]["name"]: j for j in items if self._ours(j)}
            for name in set(self.jobs) - set(fresh):
                self._on_job("DELETED", self.jobs[name])
            for job in fresh.values():
                self._on_job("MODIFIED", job)
        else:
            self.pods = {}
            for pod in items:
                self._on_pod("MODIFIED", pod)
        self.synced.add(kind)
        if {"Job", "Pod"} <= self.synced and not self.ready.is_set():
            self.ready.set()
            self._publish()
            for flight in list(self.flights.values()):
                self._evaluate(flight)

    def _ours(self, obj: dict[str, Any]) -> bool:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return bool(
            annotations.get(EXECUTOR_ANNOTATION) == self.executor_name
            and annotations.get(PROCESS_ANNOTATION)
        )

    def _on_job(self, event: str, job: dict[str, Any]) -> None:
        if not self._ours(job):
            return
        meta = job["metadata"]
        name = meta["name"]
        pid = meta["annotations"][PROCESS_ANNOTATION]
        flight = self.flights.get(pid)
        if event == "DELETED":
            self.jobs.pop(name, None)
            self.pods.pop(name, None)
            self.create_failures.pop(str(meta.get("uid", "")), None)
            if flight is None:
                return
            if flight.phase in (FINISHED, DELETING):
                self._forget(pid)
            elif flight.phase == RUNNING:
                flight.outcome = Outcome(
                    False,
                    "deleted",
                    errors=[
                        f"Job {name} was deleted before it finished (by someone other than "
                        "this executor)"
                    ],
                )
                flight.phase = REPORTING
                self.admission.release(pid)
                self._submit_report(flight)
            return
        self.jobs[name] = job
        if flight is None:
            if meta.get("deletionTimestamp"):
                return
            flight = self._adopt(pid, job)
        if flight.phase == APPLYING:
            return  # the worker's "applied" message moves it on
        self._evaluate(flight)

    def _on_workload(self, event: str, workload: dict[str, Any]) -> None:
        job_name = kueue.owner_job(workload)
        if not job_name.startswith(JOB_NAME_PREFIX):
            return
        if event == "DELETED":
            self.workloads.pop(job_name, None)
            return
        self.workloads[job_name] = workload
        job = self.jobs.get(job_name)
        if job is not None:
            flight = self.flights.get(job["metadata"]["annotations"][PROCESS_ANNOTATION])
            if flight is not None:
                self._evaluate(flight)

    def _on_failed_create(self, event: dict[str, Any]) -> None:
        involved = event.get("involvedObject") or {}
        name, uid = str(involved.get("name", "")), str(involved.get("uid", ""))
        if involved.get("kind") != "Job" or not name.startswith(JOB_NAME_PREFIX) or not uid:
            return
        if len(self.create_failures) >= MAX_CREATE_FAILURES:
            self.create_failures.pop(next(iter(self.create_failures)))
        self.create_failures[uid] = str(event.get("message") or "no message")
        job = self.jobs.get(name)
        if job is not None:
            flight = self.flights.get(job["metadata"]["annotations"][PROCESS_ANNOTATION])
            if flight is not None:
                self._evaluate(flight)

    def _adopt(self, pid: str, job: dict[str, Any]) -> Flight:
        name = job["metadata"]["name"]
        indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
        flight = Flight(pid, name, RUNNING, indexed, started=self.clock())
        self.flights[pid] = flight
        if not (condition(job, "Complete") or condition(job, "Failed")):
            self.admission.adopt(pid, Request.of_job(job))
        log.info("found Job %s of process %s", name, pid)
        return flight

    def _on_pod(self, event: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        label = (meta.get("labels") or {}).get(PROCESS_LABEL)
        if not label:
            return
        job_name = JOB_NAME_PREFIX + label
        if event == "DELETED":
            self.pods.get(job_name, {}).pop(meta.get("name", ""), None)
        else:
            self.pods.setdefault(job_name, {})[meta.get("name", "")] = pod
        job = self.jobs.get(job_name)
        if job is not None:
            flight = self.flights.get(job["metadata"]["annotations"][PROCESS_ANNOTATION])
            if flight is not None:
                self._evaluate(flight)

    # Worker results ------------------------------------------------------------

    def _on_applied(self, pid: str) -> None:
        flight = self.flights.get(pid)
        if flight is None or flight.phase != APPLYING:
            return
        flight.phase = RUNNING
        self.metrics.assign_to_apply.observe(max(0.0, self.clock() - flight.started))
        if flight.taken_back:
            self._take_back(flight, "taken back while its Job was being applied")
        else:
            self._evaluate(flight)

    def _on_taken_back(self, pid: str, reason: str) -> None:
        flight = self.flights.get(pid)
        if flight is None:
            return
        if flight.phase == APPLYING:
            flight.taken_back = True
        elif flight.phase == RUNNING:
            self._take_back(flight, reason)

    def _take_back(self, flight: Flight, reason: str) -> None:
        log.info("process %s: %s; deleting Job %s", flight.process_id, reason, flight.job_name)
        self.metrics.processes.labels(outcome="taken_back").inc()
        self.admission.release(flight.process_id)
        flight.phase = DELETING
        self._submit_delete(flight)

    def _on_reported(self, pid: str, accepted: bool) -> None:
        flight = self.flights.get(pid)
        if flight is None or flight.outcome is None:
            return
        flight.busy = False
        outcome = flight.outcome
        self.metrics.processes.labels(outcome=outcome.kind if accepted else "taken_back").inc()
        self.admission.release(pid)
        flight.phase = FINISHED
        keep = not outcome.success and accepted and outcome.pods_done
        flight.delete_at = self.clock() + (self.keep_failed_seconds if keep else 0)
        if flight.delete_at <= self.clock():
            self._submit_delete(flight)

    def _on_deleted(self, pid: str) -> None:
        flight = self.flights.get(pid)
        if flight is None:
            return
        flight.busy = False
        flight.phase = DELETING
        if flight.job_name not in self.jobs:
            self._forget(pid)

    def _forget(self, pid: str) -> None:
        self.flights.pop(pid, None)
        self.admission.release(pid)

    # Decisions -------------------------------------------------------------------

    def _evaluate(self, flight: Flight) -> None:
        if flight.phase != RUNNING or not self.ready.is_set():
            return
        job = self.jobs.get(flight.job_name)
        if job is None:
            return
        outcome = self._queue_outcome(flight, job)
        if outcome is None and kueue.waiting(job):
            return  # waiting for Kueue (or the Job controller's resume): no start timeout
        if outcome is None:
            pods = list(self.pods.get(flight.job_name, {}).values())
            failure = self.create_failures.get(str(job["metadata"].get("uid", "")))
            outcome = job_outcome(job, pods, self.clock(), self.timeouts, failure)
        if outcome is None:
            return
        flight.outcome = outcome
        flight.phase = REPORTING
        if outcome.pods_done:
            self.admission.release(flight.process_id)
        self._submit_report(flight)

    def _queue_outcome(self, flight: Flight, job: dict[str, Any]) -> Outcome | None:
        """Follow Kueue's decisions on the Job: log them; an Outcome only for a refusal."""
        workload = self.workloads.get(flight.job_name)
        pid = flight.process_id
        if not kueue.is_suspended(job):
            self.admission.set_queued(pid, False)
            if not flight.admitted and kueue.QUEUE_LABEL in _labels(job):
                flight.admitted = True
                queue = kueue.verdict(workload).cluster_queue
                waited = self.clock() - (flight.waiting_since or flight.started or self.clock())
                self._note(
                    flight,
                    "kubejobs: admitted by Kueue"
                    + (f" to ClusterQueue {queue}" if queue else "")
                    + (f" (attempt {flight.attempt})" if flight.attempt > 1 else "")
                    + f" after {max(waited, 0.0):.1f} s",
                )
            return None
        self.admission.set_queued(pid, True)
        if flight.admitted:  # admitted before, suspended now: preempted or evicted
            flight.admitted = False
            flight.told_waiting = False
            flight.waiting_since = self.clock()
            self._note(
                flight,
                f"kubejobs: attempt {flight.attempt} was stopped by Kueue "
                f"({kueue.eviction(workload)}); the process runs again from the start when "
                "Kueue admits it again",
            )
            flight.attempt += 1
        elif not flight.waiting_since:
            flight.waiting_since = flight.started or self.clock()
        found = kueue.verdict(workload)
        local_queue = _labels(job).get(kueue.QUEUE_LABEL, "")
        if found.kind == "refused":
            return Outcome(
                False,
                "kueue_refused",
                pods_done=False,
                errors=[f"Job {flight.job_name} in LocalQueue {local_queue}: {found.message}"],
            )
        if found.kind == "waiting" and workload is not None and found.message:
            self._tell_waiting(flight, f"queued in Kueue LocalQueue {local_queue}: {found.message}")
        return None

    def _tell_waiting(self, flight: Flight, why: str) -> None:
        if not flight.told_waiting:
            flight.told_waiting = True
            self._note(flight, f"kubejobs: {why}")

    def _note(self, flight: Flight, line: str) -> None:
        flight.noting += 1
        self._notes.submit(self._note_effect, flight.process_id, line)

    def _note_effect(self, pid: str, line: str) -> None:
        try:
            self.actions.note(pid, line)
        except Exception:  # a note is best effort; the report must not wait for it forever
            log.exception("could not add a note to the log of process %s", pid)
        finally:
            self.inbox.put(("noted", pid))

    def _submit_report(self, flight: Flight) -> None:
        if flight.busy or flight.outcome is None or flight.noting:
            return
        flight.busy = True
        self._pool.submit(self._effect, self.actions.report, flight.process_id, flight.outcome)

    def _submit_delete(self, flight: Flight) -> None:
        if flight.busy:
            return
        flight.busy = True
        flight.phase = DELETING
        self._pool.submit(
            self._effect, self.actions.delete, flight.process_id, flight.job_name, flight.indexed
        )

    def _effect(self, action: Callable[..., tuple[Any, ...]], pid: str, *args: Any) -> None:
        try:
            self.inbox.put(action(pid, *args))
        except Exception:
            log.exception("side effect for process %s failed", pid)
            self.inbox.put(("retry", pid))

    def _publish(self) -> None:
        running = [f.process_id for f in self.flights.values() if f.phase == RUNNING]
        with self._lock:
            self._running_ids = running
            self._known_ids = frozenset(self.flights)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})
