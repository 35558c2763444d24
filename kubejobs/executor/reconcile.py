"""The reconciler: one thread that owns what the executor knows about its Jobs.

Watch events, worker results and timer ticks arrive on one queue and are handled
in order, so the state needs no locks. Each process in flight moves through

    APPLYING -> RUNNING -> REPORTING -> FINISHED -> DELETING -> (gone)
                      \\-> DELETING (taken back by the server)

Each attempt of a process (render/identity.py) has its own Job. `flights` holds
the current attempt of each process; an earlier attempt's flight is retired
(`retired`, by Job name) the moment the server gives the process to this
executor again or takes it back: its outcome is never reported and its Job is
deleted in the background, so the Job goes at once and its pods get their grace
period on their own (their log shipper ships nothing more for an attempt that is
over: inpod/attempt.py). Capacity is reserved per Job name, so the new attempt's
reservation is never released by the end of the old one.

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
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from kubejobs.executor import kueue
from kubejobs.executor.admission import Admission, Request
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import (
    RECHECK_SECONDS,
    Outcome,
    Timeouts,
    condition,
    finishing,
    job_outcome,
    settling,
)
from kubejobs.executor.slim import slim_job, slim_pod
from kubejobs.render.identity import (
    EXECUTOR_ANNOTATION,
    JOB_NAME_PREFIX,
    PROCESS_ANNOTATION,
    PROCESS_LABEL,
    attempt_of,
    job_name,
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
SLIM = {"Job": slim_job, "Pod": slim_pod}  # what is kept of each watched object
DELETE_RECHECK_SECONDS = 30.0  # a Job deleted and still seen without deletionTimestamp
MAX_CREATE_FAILURES = 10_000
VERIFY_MARGIN = 30.0
"""Seconds before an attempt's maxexectime from which its result is reported only after the
server confirms the attempt (the server's clock may run ahead)."""


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
    recheck_at: float = 0.0  # when the tick looks at it again, RUNNING (events look at once)
    busy: bool = False  # a side effect for it is running on the pool
    started: float = 0.0
    attempt: int = 1
    """The Colonies attempt (server retries + 1) this Job runs."""
    deadline: float = 0.0
    """When the server may take this attempt back (inf: never; 0: unknown, a found Job)."""
    # Kueue: whether the current run was admitted, whether its wait was told, since when it
    # waits, which run of this attempt it is (a preempted Job runs again), and the log notes
    # on their way (the report waits for them: Colonies refuses log lines once the process
    # is closed).
    admitted: bool = False
    admitted_after: float = 0.0
    told_admitted: bool = False
    told_waiting: bool = False
    stopped: str = ""  # the run Kueue stopped, while its note waits for the Workload's reason
    run: int = 1
    found: bool = False  # adopted after a restart: its earlier runs are read from the Workload
    waiting_since: float = 0.0
    noting: int = 0
    retire: bool = False  # its attempt is over: the Job goes without waiting for its pods


class Actions:
    """The side effects the reconciler asks for; each returns a queue message or None."""

    def report(self, process_id: str, outcome: Outcome) -> tuple[Any, ...]:
        raise NotImplementedError

    def delete(self, process_id: str, job_name: str, indexed: bool) -> tuple[Any, ...]:
        raise NotImplementedError

    def retire(self, process_id: str, job_name: str, indexed: bool) -> tuple[Any, ...]:
        """Delete the Job of an attempt that is over without waiting for its pods
        (background propagation); ('deleted', pid) or ('retry', pid)."""
        return self.delete(process_id, job_name, indexed)

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
        self.flights: dict[str, Flight] = {}  # process id -> its current attempt
        self.retired: dict[str, Flight] = {}  # Job name -> an earlier attempt, being deleted
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
        self._running_attempts: dict[str, int] = {}
        self._running_deadlines: dict[str, float] = {}
        self._known_attempts: dict[str, int] = {}
        self.ready = threading.Event()  # both watches have listed once

    # Interface for other threads ------------------------------------------

    def post(self, *message: Any) -> None:
        self.inbox.put(message)

    def watch_sink(self, kind: str, event: str, obj: Any) -> None:
        # slimmed here, in the watch's thread: the inbox may hold many events when it lags
        slim = SLIM.get(kind)
        if slim is not None:
            obj = [slim(o) for o in obj] if event == "SYNC" else slim(obj)
        self.inbox.put(("watch", kind, event, obj))

    def running_ids(self) -> list[str]:
        """Processes whose Jobs are running (for the take-back check)."""
        with self._lock:
            return list(self._running_ids)

    def running_attempts(self) -> dict[str, int]:
        """The attempt of each process whose Job is running (for the take-back check)."""
        with self._lock:
            return dict(self._running_attempts)

    def running_deadlines(self) -> dict[str, float]:
        """When the server may take back each running process, as its assignment said (inf:
        no maxexectime); a Job found after a restart has none here."""
        with self._lock:
            return dict(self._running_deadlines)

    def known(self, process_id: str, attempt: int | None = None) -> bool:
        """Whether a flight of the process (of that attempt, when given) is under way here."""
        with self._lock:
            found = self._known_attempts.get(process_id)
        return found is not None and (attempt is None or found == attempt)

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
            # ("applying", pid, job name, indexed, assigned at[, attempt, deadline])
            self._on_applying(*message[1:])
        elif kind == "applied":
            self._on_applied(message[1], _name(message))
        elif kind == "rejected":
            flight = self._flight(message[1], _name(message))
            if flight is not None:
                self._forget(flight)
        elif kind == "takenback":
            self._on_taken_back(message[1], message[2], message[3] if len(message) > 3 else None)
        elif kind == "reported":
            self._on_reported(message[1], message[2])
        elif kind == "deleted":
            self._on_deleted(message[1], _name(message))
        elif kind == "noted":
            flight = self.flights.get(message[1])
            if flight:
                flight.noting = max(0, flight.noting - 1)
                if flight.phase == REPORTING:
                    self._submit_report(flight)
        elif kind == "retry":
            flight = self._flight(message[1], _name(message))
            if flight:
                flight.busy = False
                flight.retry_at = self.clock() + RETRY_SECONDS

    def tick(self) -> None:
        self.heartbeat = self.clock()
        now = self.clock()
        for flight in [*self.flights.values(), *self.retired.values()]:
            if flight.busy or flight.retry_at > now:
                continue
            if flight.phase == RUNNING:
                if flight.recheck_at <= now:
                    self._evaluate(flight)
            elif flight.phase == REPORTING and flight.outcome:
                self._submit_report(flight)
            elif flight.phase == FINISHED and flight.delete_at <= now:
                self._submit_delete(flight)
            elif flight.phase == DELETING:
                job = self.jobs.get(flight.job_name)
                if job is None:
                    self._forget(flight)
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
        flight = self.retired.get(name)
        if flight is None:
            flight = self.flights.get(pid)
            if flight is not None and flight.job_name != name:
                flight = self._other_attempt(flight, event, job)
        if event == "DELETED":
            self.jobs.pop(name, None)
            self.pods.pop(name, None)
            self.create_failures.pop(str(meta.get("uid", "")), None)
            if flight is None:
                return
            if flight.phase in (FINISHED, DELETING):
                self._forget(flight)
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
                self.admission.release(name)
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

    def _other_attempt(self, current: Flight, event: str, job: dict[str, Any]) -> Flight | None:
        """A Job of another attempt of a process that has a flight: the earlier one is retired
        (after a restart both may be found); None when the Job is not to be followed."""
        meta = job["metadata"]
        attempt = attempt_of(meta.get("labels"))
        if event == "DELETED":
            return None
        if attempt < current.attempt:
            earlier = Flight(
                current.process_id,
                meta["name"],
                DELETING,
                _indexed(job),
                attempt=attempt,
                retire=True,
            )
            self.retired[earlier.job_name] = earlier
            self.jobs[earlier.job_name] = job
            if not meta.get("deletionTimestamp"):
                log.info(
                    "process %s: Job %s is of attempt %d, the process is in attempt %d: "
                    "deleting it",
                    current.process_id,
                    earlier.job_name,
                    attempt,
                    current.attempt,
                )
                self._submit_delete(earlier)
            return earlier
        self._retire(current, f"a Job of its attempt {attempt} was found")
        return None

    def _on_workload(self, event: str, workload: dict[str, Any]) -> None:
        job_name = kueue.owner_job(workload)
        if not job_name.startswith(JOB_NAME_PREFIX):
            return
        if event == "DELETED":
            self.workloads.pop(job_name, None)
            return
        self.workloads[job_name] = workload
        flight = self._current(job_name)
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
        flight = self._current(name)
        if flight is not None:
            self._evaluate(flight)

    def _adopt(self, pid: str, job: dict[str, Any]) -> Flight:
        name = job["metadata"]["name"]
        attempt = attempt_of(job["metadata"].get("labels"))
        # deadline unknown (0): its result is reported only once the server confirms the attempt
        flight = Flight(pid, name, RUNNING, _indexed(job), started=self.clock(), attempt=attempt)
        if kueue.QUEUE_LABEL in _labels(job):
            flight.found = True
            if not kueue.is_suspended(job):
                # admitted before this executor (re)started: the admission was told then,
                # and its wait is unknown here
                flight.admitted = flight.told_admitted = True
        self.flights[pid] = flight
        if not (condition(job, "Complete") or condition(job, "Failed")):
            self.admission.adopt(name, Request.of_job(job))
        log.info("found Job %s of process %s (attempt %d)", name, pid, attempt)
        return flight

    def _on_pod(self, event: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        label = labels.get(PROCESS_LABEL)
        if not label:
            return
        owner = (meta.get("annotations") or {}).get(EXECUTOR_ANNOTATION)
        if owner is not None and owner != self.executor_name:
            # another executor's (a replica beside this one). When they were kept, every
            # replica held every pod of the namespace (829 MiB each with 10,000 processes
            # over two replicas). Pods whose template has no such annotation are kept.
            return
        name = job_name(label, attempt_of(labels))
        if event == "DELETED":
            self.pods.get(name, {}).pop(meta.get("name", ""), None)
        else:
            self.pods.setdefault(name, {})[meta.get("name", "")] = pod
        flight = self._current(name)
        if flight is not None:
            self._evaluate(flight)

    # Worker results ------------------------------------------------------------

    def _on_applying(
        self,
        pid: str,
        name: str,
        indexed: bool,
        started: float,
        attempt: int = 1,
        deadline: float = math.inf,
    ) -> None:
        flight = self.flights.get(pid)
        if flight is not None and flight.job_name != name and attempt < flight.attempt:
            # a worker late with an earlier attempt: its Job goes as soon as it is applied
            self.retired[name] = Flight(pid, name, APPLYING, indexed, attempt=attempt, retire=True)
            return
        if flight is not None and flight.job_name != name:
            self._retire(flight, f"the server assigned attempt {attempt}")
            flight = None
        if flight is None or flight.phase in (FINISHED, DELETING):
            self.flights[pid] = Flight(
                pid, name, APPLYING, indexed, started=started, attempt=attempt, deadline=deadline
            )

    def _on_applied(self, pid: str, name: str | None) -> None:
        flight = self._flight(pid, name)
        if flight is None or flight.phase != APPLYING:
            return
        if self.retired.get(flight.job_name) is flight:
            self._submit_delete(flight)  # retired while its worker was applying it
            return
        flight.phase = RUNNING
        self.metrics.assign_to_apply.observe(max(0.0, self.clock() - flight.started))
        if flight.taken_back:
            self._take_back(flight, "taken back while its Job was being applied")
        else:
            self._evaluate(flight)

    def _on_taken_back(self, pid: str, reason: str, attempt: int | None) -> None:
        flight = self.flights.get(pid)
        if flight is None or (attempt is not None and attempt != flight.attempt):
            return  # a newer attempt has replaced the one that ended
        if flight.phase == APPLYING:
            flight.taken_back = True
        elif flight.phase == RUNNING:
            self._take_back(flight, reason)

    def _take_back(self, flight: Flight, reason: str) -> None:
        log.info("process %s: %s; deleting Job %s", flight.process_id, reason, flight.job_name)
        self.metrics.processes.labels(outcome="taken_back").inc()
        self.admission.release(flight.job_name)
        flight.phase = DELETING
        flight.retire = True
        self._submit_delete(flight)

    def _retire(self, flight: Flight, why: str) -> None:
        """The flight's attempt is over (the server moved on): forget its outcome, delete its Job.

        Its process's capacity reservation is the new attempt's now (reservations are per
        Job name), so only this Job's is released.
        """
        if self.flights.get(flight.process_id) is flight:
            del self.flights[flight.process_id]
        self.admission.release(flight.job_name)
        self.retired[flight.job_name] = flight
        flight.outcome = None
        flight.retire = True
        if flight.phase == APPLYING:
            return  # deleted once its worker says it is applied
        if flight.phase == RUNNING:
            self.metrics.processes.labels(outcome="taken_back").inc()
        log.info(
            "process %s: attempt %d is over (%s); deleting Job %s",
            flight.process_id,
            flight.attempt,
            why,
            flight.job_name,
        )
        flight.busy = False  # a report or delete in flight is no longer waited for
        self._submit_delete(flight)

    def _on_reported(self, pid: str, accepted: bool) -> None:
        flight = self.flights.get(pid)
        if flight is None or flight.outcome is None:
            return
        flight.busy = False
        outcome = flight.outcome
        self.metrics.processes.labels(outcome=outcome.kind if accepted else "taken_back").inc()
        self.admission.release(flight.job_name)
        flight.phase = FINISHED
        keep = not outcome.success and accepted and outcome.pods_done
        flight.delete_at = self.clock() + (self.keep_failed_seconds if keep else 0)
        if flight.delete_at <= self.clock():
            self._submit_delete(flight)

    def _on_deleted(self, pid: str, name: str | None) -> None:
        flight = self._flight(pid, name)
        if flight is None:
            return
        flight.busy = False
        flight.phase = DELETING
        if flight.job_name not in self.jobs:
            self._forget(flight)
        else:
            # the Jobs' watch shows the deletion soon; sending it again every tick until then
            # made 6.4 writes a process instead of 2 when the watch lagged (1,000 at once)
            flight.retry_at = self.clock() + DELETE_RECHECK_SECONDS

    def _forget(self, flight: Flight) -> None:
        if self.retired.get(flight.job_name) is flight:
            del self.retired[flight.job_name]
        elif self.flights.get(flight.process_id) is flight:
            del self.flights[flight.process_id]
        self.admission.release(flight.job_name)

    def _flight(self, pid: str, name: str | None) -> Flight | None:
        """The flight a worker's or side effect's message is about (by Job name when given)."""
        if name is not None and name in self.retired:
            return self.retired[name]
        flight = self.flights.get(pid)
        return flight if flight and (name is None or flight.job_name == name) else None

    def _current(self, name: str) -> Flight | None:
        """The current attempt's flight whose Job is `name`, if any."""
        job = self.jobs.get(name)
        if job is None:
            return None
        flight = self.flights.get(job["metadata"]["annotations"][PROCESS_ANNOTATION])
        return flight if flight is not None and flight.job_name == name else None

    # Decisions -------------------------------------------------------------------

    def _evaluate(self, flight: Flight) -> None:
        if flight.phase != RUNNING or not self.ready.is_set():
            return
        job = self.jobs.get(flight.job_name)
        if job is None:
            return
        flight.recheck_at = self.clock() + RECHECK_SECONDS
        # A Job the Job controller has found finished is not waiting, whatever Kueue did: Kueue
        # may suspend it in the same second (a preemption racing the last pod's exit), and the
        # Job stays Complete and suspended for good (found by the 30-minute soak: the process
        # stayed RUNNING with "Kueue stopped run 4" in its log and all 30 lines shipped).
        ending = finishing(job)
        outcome = None if ending else self._queue_outcome(flight, job)
        if outcome is None and not ending and kueue.waiting(job):
            return  # waiting for Kueue (or the Job controller's resume): no start timeout
        if outcome is None:
            pods = list(self.pods.get(flight.job_name, {}).values())
            if settling(job, pods):
                flight.recheck_at = 0.0
            failure = self.create_failures.get(str(job["metadata"].get("uid", "")))
            outcome = job_outcome(job, pods, self.clock(), self.timeouts, failure)
        if outcome is None:
            return
        workload = self.workloads.get(flight.job_name)
        if flight.stopped:
            self._tell_stopped(flight, workload, final=True)
        if flight.admitted and not flight.told_admitted:
            self._tell_admitted(flight, workload, final=True)
        flight.outcome = outcome
        flight.phase = REPORTING
        if outcome.pods_done:
            self.admission.release(flight.job_name)
        self._submit_report(flight)

    def _queue_outcome(self, flight: Flight, job: dict[str, Any]) -> Outcome | None:
        """Follow Kueue's decisions on the Job: log them; an Outcome only for a refusal."""
        workload = self.workloads.get(flight.job_name)
        if flight.found and workload is not None:
            flight.found = False
            self._count_earlier_runs(flight, job, workload)
        if not kueue.is_suspended(job):
            self.admission.set_queued(flight.job_name, False)
            if not flight.admitted and kueue.QUEUE_LABEL in _labels(job):
                flight.admitted = True
                since = flight.waiting_since or flight.started or self.clock()
                flight.admitted_after = max(self.clock() - since, 0.0)
            if flight.stopped:
                self._tell_stopped(flight, workload, final=True)
            if flight.admitted and not flight.told_admitted:
                self._tell_admitted(flight, workload, final=False)
            return None
        self.admission.set_queued(flight.job_name, True)
        if flight.admitted:  # admitted before, suspended now: preempted or evicted
            if not flight.told_admitted:
                self._tell_admitted(flight, workload, final=True)
            flight.admitted = False
            flight.told_admitted = False
            flight.told_waiting = False
            flight.waiting_since = self.clock()
            flight.stopped = _run(flight)
            flight.run += 1
        elif not flight.waiting_since:
            flight.waiting_since = flight.started or self.clock()
        found = kueue.verdict(workload)
        local_queue = _labels(job).get(kueue.QUEUE_LABEL, "")
        # a refusal ends the run: _evaluate tells the stop then, whatever the Workload says
        stopped = flight.stopped and found.kind != "refused"
        if stopped and not self._tell_stopped(flight, workload, final=False):
            return None  # the Workload's event gives the reason (and evaluates again)
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

    def _count_earlier_runs(
        self, flight: Flight, job: dict[str, Any], workload: dict[str, Any]
    ) -> None:
        """A Job found after a restart may be past its first run: number its runs on from
        Kueue's count of evictions, and say so once, since Kueue may have stopped a run
        while no executor was there to tell it."""
        stopped = kueue.evictions(workload)
        if stopped and kueue.is_evicted(workload) and not kueue.is_suspended(job):
            stopped -= 1  # the run now ending: its suspension, still to come, counts it
        if stopped:
            flight.run = stopped + 1
            self._note(
                flight,
                f"kubejobs: executor {self.executor_name} found the Job in {_run(flight)} after "
                f"a restart; Kueue stopped {stopped} earlier run(s)",
            )

    def _tell_admitted(self, flight: Flight, workload: dict[str, Any] | None, final: bool) -> None:
        """Say which ClusterQueue admitted the run. The Job and its Workload come on separate
        watches, so the unsuspended Job may be seen first: wait for the Workload's event
        (it evaluates the flight again) unless the run is over (final)."""
        queue = kueue.verdict(workload).cluster_queue
        if not queue and not final:
            return
        flight.told_admitted = True
        self._note(
            flight,
            "kubejobs: admitted by Kueue"
            + (f" to ClusterQueue {queue}" if queue else "")
            + (f" ({_run(flight)})" if flight.run > 1 else "")
            + f" after {flight.admitted_after:.1f} s",
        )

    def _tell_stopped(self, flight: Flight, workload: dict[str, Any] | None, final: bool) -> bool:
        """Say that Kueue stopped a run, and why. As with the admission, the suspended Job may
        be seen before the Workload's Evicted condition: the note waits for it unless the
        flight moved on (final). Returns whether the note was written."""
        if not kueue.is_evicted(workload) and not final:
            return False
        self._note(
            flight,
            f"kubejobs: Kueue stopped {flight.stopped} ({kueue.eviction(workload)}); "
            "the process runs again from the start when Kueue admits it again",
        )
        flight.stopped = ""
        return True

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
        outcome = flight.outcome
        if self.clock() >= flight.deadline - VERIFY_MARGIN:
            outcome = replace(outcome, attempt=flight.attempt)  # the server may have moved on
        self._pool.submit(self._effect, self.actions.report, flight.process_id, outcome)

    def _submit_delete(self, flight: Flight) -> None:
        if flight.busy:
            return
        flight.busy = True
        flight.phase = DELETING
        self._pool.submit(self._delete_effect, flight)

    def _delete_effect(self, flight: Flight) -> None:
        """A delete's result names the Job: the process may have another attempt's by then."""
        action = self.actions.retire if flight.retire else self.actions.delete
        try:
            result = action(flight.process_id, flight.job_name, flight.indexed)
        except Exception:
            log.exception("deleting Job %s failed", flight.job_name)
            result = ("retry", flight.process_id)
        self.inbox.put((result[0], flight.process_id, flight.job_name))

    def _effect(self, action: Callable[..., tuple[Any, ...]], pid: str, *args: Any) -> None:
        try:
            self.inbox.put(action(pid, *args))
        except Exception:
            log.exception("side effect for process %s failed", pid)
            self.inbox.put(("retry", pid))

    def _publish(self) -> None:
        running = {f.process_id: f.attempt for f in self.flights.values() if f.phase == RUNNING}
        with self._lock:
            self._running_ids = list(running)
            self._running_attempts = running
            self._running_deadlines = {
                f.process_id: f.deadline
                for f in self.flights.values()
                if f.phase == RUNNING and f.deadline
            }
            self._known_attempts = {pid: f.attempt for pid, f in self.flights.items()}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _indexed(job: dict[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def _name(message: tuple[Any, ...]) -> str | None:
    """The Job name a worker's or side effect's message carries (older forms carry none)."""
    return str(message[2]) if len(message) > 2 and isinstance(message[2], str) else None


def _run(flight: Flight) -> str:
    """A Kueue run, told apart from the Colonies attempt it belongs to."""
    return f"run {flight.run}" + (f" of attempt {flight.attempt}" if flight.attempt > 1 else "")
