"""The executor's lifecycle: start the threads in a safe order, stop them cleanly.

Order at start: identity and registration (retried while the key Secret is another
executor's or the Colonies server refuses a step; /readyz says why meanwhile); the
Job, pod and FailedCreate-event watches, and the reconciler until Jobs and pods
have listed once (so capacity counts every Job already running, and Jobs of a
predecessor are adopted); the preflight (the log shipper's service account, the
key Secret and that it holds this executor's key, the templates),
re-checked until everything is in place; processes RUNNING on this executor that
have no Job yet are applied; only then do assign workers take new work, and
/readyz answers 200. On stop (SIGTERM) workers stop taking work, finish what they hold, and
the executor returns; running Jobs are left to be found again.

With colonies_tls, the server's certificate is checked first (GET /health with
colonies_ca_file): while it fails verification the executor is not ready, takes
nothing, and says so in /readyz and its log; later certificate failures of its
client make it not ready again until a request succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from kubejobs.adapters.colonies import (
    ColoniesCertificateError,
    ColoniesClient,
    ColoniesError,
    ColoniesUnavailable,
)
from kubejobs.adapters.kube import KubeClient, KubeError, default_namespace
from kubejobs.executor import cleanup, preflight, report
from kubejobs.executor.admission import Admission
from kubejobs.executor.assign import AssignWorker, Busy, Context, recover_unapplied
from kubejobs.executor.backoff import Backoff
from kubejobs.executor.health import HealthServer
from kubejobs.executor.identity import Identity, Stopped, establish
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome, Timeouts
from kubejobs.executor.reconcile import Actions, Reconciler
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.executor.takeback import TakebackChecker
from kubejobs.executor.watch import Watcher
from kubejobs.render import Renderer, job_name
from kubejobs.render.identity import MANAGED_BY, MANAGER

log = logging.getLogger(__name__)
SELECTOR = f"{MANAGED_BY}={MANAGER}"
FAILED_CREATE = "involvedObject.kind=Job,reason=FailedCreate"
STALL_SECONDS = 60.0
PREFLIGHT_SECONDS = 5.0


NOTE_PATIENCE = 60.0
"""Seconds a note is tried again while the Colonies server is away, counted from the first
note that met the outage: one of a few seconds (a restart) loses no note, and in a long one
each note waiting behind it is tried once."""


class ServerActions(Actions):
    def __init__(
        self,
        colonies: ColoniesClient,
        kube: KubeClient,
        namespace: str,
        executor_id: str,
        metrics: Metrics,
        stop: threading.Event | None = None,
        note_patience: float = NOTE_PATIENCE,
    ) -> None:
        self.colonies = colonies
        self.kube = kube
        self.namespace = namespace
        self.executor_id = executor_id
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self.note_patience = note_patience
        self._away_since: float | None = None
        """When a note first met the current outage (notes are added by one thread)."""

    def report(self, process_id: str, outcome: Outcome) -> tuple[object, ...]:
        if outcome.kind == "no_pods":
            outcome = replace(outcome, errors=[*outcome.errors, *self._why_no_pods(process_id)])
        return report.report(self.colonies, self.executor_id, self.metrics, process_id, outcome)

    def _why_no_pods(self, process_id: str) -> list[str]:
        """The Job controller's FailedCreate events (quota, admission, missing service account)."""
        try:
            events, _ = self.kube.list(
                "Event",
                self.namespace,
                field_selector=(
                    f"involvedObject.kind=Job,involvedObject.name={job_name(process_id)}"
                ),
            )
        except KubeError:
            return []
        found = [
            f"{e.get('reason')}: {e.get('message')}" for e in events if e.get("type") == "Warning"
        ]
        return list(dict.fromkeys(found))[-3:]

    def delete(self, process_id: str, job_name: str, indexed: bool) -> tuple[object, ...]:
        return cleanup.delete_job(
            self.kube, self.namespace, self.metrics, process_id, job_name, indexed
        )

    def retire(self, process_id: str, job_name: str, indexed: bool) -> tuple[object, ...]:
        return cleanup.delete_job(
            self.kube,
            self.namespace,
            self.metrics,
            process_id,
            job_name,
            indexed,
            propagation="Background",
        )

    def note(self, process_id: str, line: str) -> tuple[object, ...]:
        """Add a line to the process log; tried again while the server is away (bounded):
        the notes tell why a program ran again (Kueue's stops), and its report waits for
        them anyway."""
        backoff = Backoff()
        announce = True
        while True:
            try:
                report.add_notes(self.colonies, process_id, [line], announce=announce)
            except ColoniesUnavailable:
                self.metrics.api_errors.labels(api="colonies").inc()
                now = time.monotonic()
                if self._away_since is None:
                    self._away_since = now
                if now - self._away_since >= self.note_patience or backoff.wait(self.stop):
                    raise
                announce = False
                continue
            self._away_since = None
            return ("noted", process_id)


class Executor:
    def __init__(
        self,
        settings: ExecutorSettings,
        kube: KubeClient | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        settings.required()
        self.settings = settings
        self.namespace = settings.namespace or default_namespace()
        self.kube = kube or KubeClient(settings.kubeconfig)
        self.metrics = metrics or Metrics()
        self.stop_assign = threading.Event()
        self.stop_all = threading.Event()
        self.identity: Identity | None = None
        self.reconciler: Reconciler | None = None
        self.health: HealthServer | None = None
        self.colonies: ColoniesClient | None = None
        self.prerequisites_ok = threading.Event()
        self.problems: list[str] = []

    def _client(self, prvkey: str) -> ColoniesClient:
        s = self.settings
        return ColoniesClient(
            s.colonies_host,
            s.colonies_port,
            prvkey,
            s.colonies_tls,
            timeout=float(s.colonies_timeout),
            ca_file=s.colonies_ca_file,
        )

    def stop(self) -> None:
        """Stop taking work (safe from a signal handler); run() then returns."""
        self.stop_assign.set()

    def alive(self) -> bool:
        r = self.reconciler
        return r is None or time.time() - r.heartbeat < STALL_SECONDS

    def ready(self) -> bool:
        r = self.reconciler
        return bool(
            r
            and r.ready.is_set()
            and self.prerequisites_ok.is_set()
            and not self.stop_assign.is_set()
            and not (self.colonies and self.colonies.tls_problem)
        )

    def not_ready_reasons(self) -> list[str]:
        tls = self.colonies.tls_problem if self.colonies else ""
        return [*self.problems, *([tls] if tls else [])]

    def _set_problems(self, problems: list[str]) -> None:
        self.problems = problems

    def _wait_for_trusted_server(self) -> bool:
        """With TLS: wait while the server's certificate fails verification; False if stopped.

        Only a certificate failure waits here: an unreachable server is an outage, which
        the rest of the executor already rides out.
        """
        probe = self._client("")  # GET /health is not signed
        last = ""
        while not self.stop_assign.is_set():
            try:
                probe.health()
            except ColoniesCertificateError as err:
                self.problems = [str(err)]
                if str(err) != last:
                    log.error("not ready: %s", err)
                    last = str(err)
                self.stop_assign.wait(PREFLIGHT_SECONDS)
                continue
            except ColoniesError as err:
                log.warning("cannot check the Colonies server's certificate yet: %s", err)
            self.problems = []
            probe.close_session()
            return True
        return False

    def _wait_for_prerequisites(self, renderer: Renderer, executor_id: str) -> bool:
        """Take no work until what every Job needs is in place (preflight); False if stopped."""
        last: list[str] = []
        while not self.stop_assign.is_set():
            try:
                found = preflight.problems(self.kube, self.namespace, renderer, executor_id)
            except KubeError as err:
                found = [f"cannot check namespace {self.namespace}: {err}"]
            self.problems = found
            if not found:
                self.prerequisites_ok.set()
                return True
            if found != last:
                for problem in found:
                    log.error("not ready: %s", problem)
                last = found
            self.stop_assign.wait(PREFLIGHT_SECONDS)
        return False

    def _scrape(self) -> None:
        for verb, count in list(self.kube.requests.items()):
            self.metrics.kube_requests.labels(verb=verb).set(count)
        if self.colonies is not None:
            for msgtype, count in list(self.colonies.requests.items()):
                self.metrics.colonies_requests.labels(msgtype=msgtype).set(count)

    def run(self) -> None:
        """Serve until stop(); returns after the workers have finished what they hold."""
        s = self.settings
        if s.health_port:
            self.health = HealthServer(
                s.health_host,
                s.health_port,
                self.metrics,
                self.alive,
                self.ready,
                self._scrape,
                self.not_ready_reasons,
            )
            self.health.start()
        try:
            self._run()
        except Stopped:
            log.info("stopped during startup")
        finally:
            self.stop_all.set()
            if self.health:
                self.health.stop()

    def _run(self) -> None:
        s = self.settings
        if s.colonies_tls and not self._wait_for_trusted_server():
            return
        self.identity = establish(
            s, self.kube, self.namespace, self._client, self.stop_assign, self._set_problems
        )
        colonies = self.colonies = self._client(self.identity.prvkey)
        log.info(
            "executor %s (%s) in colony %s, namespace %s",
            s.executor_name,
            self.identity.executor_id,
            s.colony_name,
            self.namespace,
        )
        admission = Admission(
            s.max_jobs, s.cpu_limit, s.mem_limit, s.max_queued if s.queue_name else None
        )
        actions = ServerActions(
            colonies,
            self.kube,
            self.namespace,
            self.identity.executor_id,
            self.metrics,
            self.stop_all,
        )
        reconciler = Reconciler(
            s.executor_name,
            admission,
            actions,
            self.metrics,
            Timeouts(s.unschedulable_timeout, s.start_timeout),
            s.keep_failed_seconds,
            workers=max(4, s.concurrency),
        )
        self.reconciler = reconciler
        render_settings = s if s.namespace else _with_namespace(s, self.namespace)
        ctx = Context(
            render_settings,
            self.namespace,
            colonies,
            self.kube,
            Renderer(render_settings),
            admission,
            reconciler,
            self.metrics,
            self.stop_assign,
            self.stop_all,
            self.identity.executor_id,
        )
        loop = threading.Thread(
            target=reconciler.run, args=(self.stop_all,), name="reconcile", daemon=True
        )
        loop.start()
        on_error = self.metrics.api_errors.labels
        watches = [
            ("Pod", SELECTOR, ""),
            ("Job", SELECTOR, ""),
            # filtered by the API server: only the Job controller's refusals reach us
            ("Event", "", FAILED_CREATE),
        ]
        if s.queue_name:  # Kueue's Workloads carry none of our labels: matched by owner Job
            watches.append(("Workload", "", ""))
        for kind, labels, fields in watches:
            Watcher(
                self.kube,
                kind,
                self.namespace,
                labels,
                reconciler.watch_sink,
                self.stop_all,
                s.watch_timeout,
                on_error=lambda api: on_error(api=api).inc(),
                field_selector=fields,
            ).start()
        while not reconciler.ready.wait(0.5):
            if self.stop_assign.is_set():
                return
        if not self._wait_for_prerequisites(ctx.renderer, self.identity.executor_id):
            return
        recover_unapplied(ctx)
        busy = Busy()
        workers = [AssignWorker(ctx, i, busy) for i in range(s.concurrency)]
        for worker in workers:
            worker.start()
        TakebackChecker(
            colonies,
            s.colony_name,
            s.executor_type,
            self.identity.executor_id,
            reconciler,
            s.takeback_check_seconds,
            self.stop_all,
        ).start()
        self.stop_assign.wait()
        log.info("stopping: no new work; Jobs in flight are left running")
        deadline = time.time() + s.assign_timeout + s.colonies_timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.time()))
        self.stop_all.set()
        loop.join(10)


def _with_namespace(settings: ExecutorSettings, namespace: str) -> ExecutorSettings:
    return replace(settings, namespace=namespace)
