"""Assign workers: take a process when there is room, turn it into an applied Job.

Each worker long-polls `assign`; while no work comes only the first worker
polls (an idle executor makes one request per assign_timeout, not a busy
loop). Workers back off while the server is down, then validate, render and
apply. A process whose spec cannot run is failed at
once with every problem; one the API server refuses is failed with the API's
message. While the API server is unreachable the worker keeps retrying: the
process stays RUNNING and, if the executor stops meanwhile, the next one
applies it (recover_unapplied, at start).

Lost assignments: the server assigns in its database before it answers, so an
assign that fails after that (a panic resolving a workflow that is still being
submitted answers HTTP 500; a reply lost with its connection) leaves the process
RUNNING on this executor with nobody running it, forever without maxexectime.
After any failed assign, once the server answers again, the worker looks for
such processes (recover_unapplied) and applies them. A process an assign worker
has just been given is not known to the reconciler yet either: each start first
claims its (process, attempt), and a recovery never starts a claimed one. The
listing can also show a process whose assign reply is still on its way to
another worker of this executor (v1.9.7 marks it RUNNING, then resolves the
workflow and sets its input, then replies): a recovery waits for every assign
in flight when its listing came back to end and claim what it brought, so such
a process is started once, by the worker, with its input.

Attempts (attempts.py): each has its own Job, so a process the server took back
and assigned again starts at once; the reconciler retires the earlier attempt's
Job. Nothing is applied for an attempt that is no longer current: after any
wait (backoff while the API server is away, a Job of the same name being
deleted) and for a process found by listing rather than just assigned, the
server must still have the process RUNNING on this executor in this attempt.
Before the Job is applied the process log gets the attempt's notes (the
previous attempt's take-back, this one's start), while the process is RUNNING
here and Colonies still accepts them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kubejobs.adapters.colonies import (
    RUNNING,
    ColoniesClient,
    ColoniesError,
    ColoniesUnavailable,
    assignment_deadline,
)
from kubejobs.adapters.kube import KubeClient, KubeError, KubeUnavailable
from kubejobs.errors import InvalidInput, TemplateError
from kubejobs.executor.admission import Admission
from kubejobs.executor.apply import apply, prepare, rejection
from kubejobs.executor.attempts import notes
from kubejobs.executor.backoff import Backoff
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.reconcile import Reconciler
from kubejobs.executor.report import add_notes, still_ours
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.executor.takeback import LIST_LIMIT
from kubejobs.render import Renderer
from kubejobs.render.identity import attempt_of_process

log = logging.getLogger(__name__)

SETTLE_MARGIN = 5.0
"""Seconds past an assign's own bound (long poll + request timeout) a recovery waits for it."""
CLAIMS_PRUNE_AT = 1000
"""Claims kept before the ones no longer needed are dropped."""
CLAIM_SECONDS = 300.0
"""How long a claim is needed at most: from the assign's reply to the reconciler knowing the
process takes a render, the attempt notes (bounded by the Colonies timeout) and a post."""


class Claims:
    """The (process, attempt) pairs this executor has begun to start; each is started once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._claimed: dict[tuple[str, int], float] = {}
        self._clock = clock

    def claim(self, pid: str, attempt: int, known: Callable[[str], bool]) -> bool:
        """True for the first claim of (pid, attempt); `known`: the reconciler's knowledge
        (it protects a process it knows, so that claim is no longer needed)."""
        now = self._clock()
        with self._lock:
            if len(self._claimed) >= CLAIMS_PRUNE_AT:
                self._claimed = {
                    c: at
                    for c, at in self._claimed.items()
                    if now - at < CLAIM_SECONDS and not known(c[0])
                }
            if (pid, attempt) in self._claimed:
                return False
            self._claimed[(pid, attempt)] = now
            return True


class InFlight:
    """The assign requests under way, each from before it is sent until what it brought
    is claimed (recover_unapplied waits for them)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._open: set[int] = set()

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._cond:
            self._count += 1
            ticket = self._count
            self._open.add(ticket)
        try:
            yield
        finally:
            with self._cond:
                self._open.discard(ticket)
                self._cond.notify_all()

    def settle(self, timeout: float, stop: threading.Event) -> bool:
        """Wait until every request under way now has ended; False on timeout or stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            waiting = set(self._open)
            while waiting & self._open:
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    return False
                self._cond.wait(min(left, 0.5))
        return True


@dataclass
class Context:
    """What the workers share."""

    settings: ExecutorSettings
    namespace: str
    colonies: ColoniesClient
    kube: KubeClient
    renderer: Renderer
    admission: Admission
    reconciler: Reconciler
    metrics: Metrics
    stop_assign: threading.Event
    stop_all: threading.Event
    executor_id: str = ""
    claims: Claims = field(default_factory=Claims)
    assigns: InFlight = field(default_factory=InFlight)


class Busy:
    """Whether work is flowing: while idle only the first worker long-polls, not all of them."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.event.set()

    def wait(self, index: int, stop: threading.Event) -> bool:
        """False when `stop` was set while waiting."""
        while index and not self.event.wait(0.5):
            if stop.is_set():
                return False
        return not stop.is_set()


class AssignWorker(threading.Thread):
    def __init__(self, ctx: Context, index: int, busy: Busy) -> None:
        super().__init__(name=f"assign-{index}", daemon=True)
        self.ctx = ctx
        self.index = index
        self.busy = busy

    def run(self) -> None:
        ctx = self.ctx
        backoff = Backoff()
        lost_possible = False  # an assign failed: it may have assigned before failing
        while self.busy.wait(self.index, ctx.stop_assign):
            # The first worker also wakes up while the executor is full, to keep it alive.
            keepalive = None if self.index else ctx.settings.keepalive_seconds
            room = ctx.admission.acquire(ctx.stop_assign, timeout=keepalive)
            if room is None:
                if ctx.stop_assign.is_set():
                    return
                keep_alive(ctx)
                continue
            try:
                with ctx.assigns.request():
                    process = ctx.colonies.assign(
                        ctx.settings.colony_name, ctx.settings.assign_timeout, room.cpu, room.mem
                    )
                    if process is not None:
                        claim(ctx, process)
            except ColoniesError as err:
                ctx.admission.cancel()
                ctx.metrics.api_errors.labels(api="colonies").inc()
                log.warning("assign failed: %s", err)
                lost_possible = True
                if backoff.wait(ctx.stop_assign):
                    return
                continue
            backoff.reset()
            if lost_possible:  # the server answers again: anything it assigned and lost?
                lost_possible = not recover_unapplied(ctx)
            if process is None:
                ctx.admission.cancel()
                self.busy.event.clear()
                continue
            self.busy.event.set()
            ctx.metrics.assigned.inc()
            pid = str(process["processid"])
            if ctx.reconciler.known(pid):
                # The server took it back (maxexectime) and gave it to this executor again,
                # maybe before the take-back check noticed: the reconciler retires the earlier
                # attempt's Job when this one's is applying; the new one does not wait for it.
                log.info("process %s is assigned again (a new attempt): %s", pid, _attempt(process))
            start_process(ctx, process, reserved=True)


def claim(ctx: Context, process: dict[str, Any]) -> bool:
    pid = str(process.get("processid", ""))
    return ctx.claims.claim(pid, attempt_of_process(process), ctx.reconciler.known)


def recover_unapplied(ctx: Context) -> bool:
    """Apply processes RUNNING on this executor that it is not running: assigned just
    before a crash, or by an assign whose reply was lost. False when it could not look."""
    try:
        # Only this executor type; the server lists the oldest 100 at most.
        processes = ctx.colonies.get_processes(
            ctx.settings.colony_name, RUNNING, LIST_LIMIT, ctx.settings.executor_type
        )
    except ColoniesError as err:
        log.warning("cannot look for unapplied processes: %s", err)
        return False
    # An assign under way may have brought one of these: its worker claims it first.
    settle = ctx.settings.assign_timeout + ctx.settings.colonies_timeout + SETTLE_MARGIN
    if not ctx.assigns.settle(settle, ctx.stop_assign):
        log.warning("cannot look for unapplied processes: assigns still under way")
        return False
    if len(processes) >= LIST_LIMIT:
        log.warning(
            "the server lists only the oldest %d RUNNING processes of type %s; "
            "an unapplied process beyond them is found when its maxexectime passes",
            LIST_LIMIT,
            ctx.settings.executor_type,
        )
    for process in processes:
        pid = str(process.get("processid", ""))
        if process.get("assignedexecutorid") != ctx.executor_id:
            continue
        if ctx.reconciler.known(pid, attempt_of_process(process)):
            continue  # running here in this attempt (an earlier one's flight does not count)
        if not claim(ctx, process):
            continue  # an assign worker is starting it
        log.info("process %s is RUNNING on this executor without a Job; applying it", pid)
        start_process(ctx, process, reserved=False)
    return True


def _attempt(process: dict[str, Any]) -> str:
    return f"attempt {int(process.get('retries') or 0) + 1}"


# No process asks for less than nothing, so this assign takes nothing; it only
# counts as a sign of life (timeout -1: one attempt, no long poll that could
# swallow the wake-up a submit gives to one waiting executor).
NOTHING_CPU, NOTHING_MEM = "-1m", "-1Ki"


def keep_alive(ctx: Context) -> None:
    """Tell the server a full executor is alive, so it is not unregistered as stale."""
    try:
        with ctx.assigns.request():
            process = ctx.colonies.assign(ctx.settings.colony_name, -1, NOTHING_CPU, NOTHING_MEM)
            if process is not None:
                claim(ctx, process)
    except ColoniesError as err:
        log.debug("keep-alive assign failed: %s", err)
        return
    if process is not None:  # cannot happen with these limits; never drop one if it does
        log.warning("keep-alive assign brought process %s; running it", process.get("processid"))
        start_process(ctx, process, reserved=False)


def start_process(ctx: Context, process: dict[str, Any], reserved: bool) -> None:
    """Apply the Job of an assigned process; `reserved`: a pending admission slot is held
    (the process was just assigned; otherwise it was found by listing and is checked first)."""
    started = time.time()
    pid = str(process["processid"])
    try:
        prepared = prepare(process, ctx.renderer)
    except (InvalidInput, TemplateError) as err:
        if reserved:
            ctx.admission.cancel()
        log.info("process %s cannot run: %s", pid, err)
        ctx.metrics.processes.labels(outcome="rejected").inc()
        fail_process(ctx, pid, rejection(err))
        return
    name = prepared.job_name
    if reserved:
        ctx.admission.commit(name, prepared.request)
    else:
        ctx.admission.adopt(name, prepared.request)
    executor_id = str(process.get("assignedexecutorid") or "")

    def current() -> bool:
        """Still RUNNING here in this attempt; an unreachable server counts as yes (the
        take-back check deletes the Job later if it was not)."""
        found = still_ours(ctx.colonies, pid, executor_id, attempt=prepared.attempt)
        if found is False:
            log.info("process %s: %s is over; its Job is not applied", pid, _attempt(process))
        return found is not False

    if not reserved and not current():
        ctx.admission.release(name)
        return
    _note_attempt(ctx, process)
    indexed = any(m.get("kind") == "Service" for m in prepared.manifests)
    ctx.reconciler.post(
        "applying", pid, name, indexed, started, prepared.attempt, assignment_deadline(process)
    )
    backoff = Backoff()
    waited = False
    while True:
        try:
            if (waited and not current()) or not apply(
                ctx.kube, prepared, ctx.namespace, ctx.stop_all, current=current
            ):
                if not ctx.stop_all.is_set():
                    _remove_partial(ctx, name, indexed)
                ctx.admission.release(name)
                ctx.reconciler.post("rejected", pid, name)
                return
            break
        except KubeUnavailable as err:
            ctx.metrics.api_errors.labels(api="kube").inc()
            log.warning("process %s: cannot apply Job yet: %s", pid, err)
            waited = True
            if backoff.wait(ctx.stop_all):
                return
        except KubeError as err:
            ctx.metrics.api_errors.labels(api="kube").inc()
            ctx.metrics.processes.labels(outcome="rejected").inc()
            log.info("process %s: Kubernetes refused its Job: %s", pid, err)
            fail_process(ctx, pid, [f"Kubernetes refused the Job {name}: {err}"])
            _remove_partial(ctx, name, indexed)
            ctx.reconciler.post("rejected", pid, name)
            return
    ctx.reconciler.post("applied", pid, name)


def _note_attempt(ctx: Context, process: dict[str, Any]) -> None:
    """The attempt's lines in the process log (best effort: an outage does not hold the Job)."""
    lines = notes(process, ctx.settings.executor_name)
    if not lines:
        return
    try:
        add_notes(ctx.colonies, str(process["processid"]), lines)
    except ColoniesError as err:
        log.warning("process %s: could not add the attempt notes: %s", process["processid"], err)


def fail_process(ctx: Context, pid: str, errors: list[str]) -> None:
    backoff = Backoff()
    while True:
        try:
            ctx.colonies.fail(pid, errors)
            return
        except ColoniesUnavailable as err:
            ctx.metrics.api_errors.labels(api="colonies").inc()
            log.warning("process %s: cannot fail it yet: %s", pid, err)
            if backoff.wait(ctx.stop_all):
                return
        except ColoniesError as err:
            log.warning("process %s: fail refused: %s", pid, err)
            return


def _remove_partial(ctx: Context, job_name: str, indexed: bool) -> None:
    try:
        if indexed:
            ctx.kube.delete("Service", ctx.namespace, job_name, propagation="Background")
        ctx.kube.delete("Job", ctx.namespace, job_name)
    except KubeError as err:
        log.warning("cannot remove partly applied %s: %s", job_name, err)
