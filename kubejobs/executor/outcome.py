"""How a Job's and its pods' status become a Colonies result: close with output, or fail with a reason.

Pure functions over the API objects as dicts, so every mapping is unit-tested
without a cluster. A reason names what a person must look at: the pod, the
container, the exit code and Kubernetes' reason (Error, OOMKilled), the walltime
for DeadlineExceeded, or the waiting reason and message for pods that cannot
start (image pulls, config errors, unschedulable for too long, not started within
start_timeout). A pod of a multi-node Job is named with its node rank: the ranks
that did come up wait for it, so the one that did not is the one to look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kubejobs.process_io import OUTPUT_LOST, OUTPUT_SET

INJECTED_PREFIX = "kubejobs-"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
MESSAGE_LIMIT = 2000

# Waiting reasons after which a container will not start without a change to the spec.
CANNOT_START = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PreStartHookError",
    }
)
# Terminated reasons of a container the runtime could not start (command not found, bad
# entrypoint): containerd says StartError, dockershim said ContainerCannotRun.
START_ERRORS = frozenset({"StartError", "ContainerCannotRun"})
# Restarts after which a native sidecar that the runtime could not start is given up on.
SIDECAR_START_TRIES = 2
# How long a failure that is known while pods still run (walltime, a container that could
# not start) waits for the log shipper to deliver what the program printed: Colonies
# refuses log lines once the process is failed.
SETTLE_SECONDS = 2.0
LOG_SHIPPER = "kubejobs-log-shipper"
# In a walltime failure: the deadline came before the program ran, so it has no log at all.
NEVER_STARTED = "the program had not started by then"
# How long a Complete Job waits for its succeeded pods to be seen (the pods' watch behind the
# Jobs'); pods deleted by someone else meanwhile are never seen, and the close goes on without.
CATCH_UP_SECONDS = 30.0
# How often a running Job that no event changed is looked at again: its clock-decided
# outcomes (start, unschedulable, no pods) wait minutes, so seconds late is nothing. Looking
# at every Job every second took 97 ms a tick with 5,000 running (a tenth of a core per
# replica); 28 ms a second now. Jobs in a short settling state (settling()) are still looked
# at every tick.
RECHECK_SECONDS = 5.0
_INJECTED_ROLES = {"kubejobs-data-stager": "data stager", LOG_SHIPPER: "log shipper"}


@dataclass(frozen=True)
class Outcome:
    """What to tell the Colonies server about one process."""

    success: bool
    kind: str
    """Metric label: succeeded, failed, deadline, cannot_start, cannot_create, unschedulable,
    no_pods, not_started."""
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pods_done: bool = True
    """False when pods may still run (start failures): the Job must be deleted to free them."""
    notes: list[str] = field(default_factory=list)
    """Lines for the process log, added before the report: what the log itself may lack."""
    attempt: int = 0
    """When set, the attempt this result is of: reported only if the server's process is
    still in it (report.py); 0: the attempt cannot have ended, report it."""


@dataclass(frozen=True)
class Timeouts:
    unschedulable: int = 300
    start: int = 300


def timestamp(text: str | None) -> float | None:
    """An RFC 3339 API timestamp as epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def finishing(job: dict[str, Any]) -> bool:
    """Whether the Job controller has found the Job finished, or decided it will be
    (SuccessCriteriaMet and FailureTarget come before Complete and Failed)."""
    return any(
        condition(job, kind)
        for kind in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
    )


def settling(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """Whether the Job is in a state whose outcome the clock decides within seconds
    (SETTLE_SECONDS, CATCH_UP_SECONDS): finished or about to be, a pod ended, or a container
    that could not start."""
    if finishing(job):
        return True
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending", "Running"):
            return True
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key) or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if term.get("reason") in START_ERRORS:
                    return True
    return False


def job_outcome(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    now: float,
    timeouts: Timeouts = Timeouts(),
    create_failure: str | None = None,
) -> Outcome | None:
    """The result of a Job, or None while it is still running normally.

    ``create_failure`` is the Job controller's FailedCreate message for this Job, if
    any: the API server refused its pods (quota, admission, Pod Security, a missing
    service account), so they would never appear and the Job would wait forever.
    """
    pods = sorted(pods, key=_pod_order)
    complete = condition(job, "Complete")
    if complete:
        behind = _pods_behind(job, pods)
        since = timestamp(complete.get("lastTransitionTime"))
        if behind and since is not None and now - since < CATCH_UP_SECONDS:
            return None
        lost = [m for pod in pods if OUTPUT_LOST in (m := _shipper_message(pod))]
        if lost:
            # closing would hand the children an output that is not the program's
            text = lost[0].split(OUTPUT_LOST, 1)[1]
            error = f"the program succeeded but its output was not delivered: {_clip(text)}"
            return Outcome(False, "output_lost", errors=[error], notes=shipper_notes(pods))
        output = _outputs(pods)
        notes = shipper_notes(pods) + (cut_messages(pods) if output else [])
        if behind:
            name = (job.get("metadata") or {}).get("name", "")
            notes.append(
                f"kubejobs: Job {name} completed but its succeeded pods were gone before "
                "their results were read: the process closes without their termination "
                "messages as its output"
            )
        return Outcome(True, "succeeded", output=output, notes=notes)
    failed = condition(job, "Failed")
    if failed:
        return replace(_failure(job, failed, pods), notes=shipper_notes(pods))
    target = condition(job, "FailureTarget")
    if target and target.get("reason") == "DeadlineExceeded":
        # The Job controller has decided at the deadline; `Failed` follows only once the pods
        # are gone, a whole grace period later for a program that ignores SIGTERM.
        since = timestamp(target.get("lastTransitionTime")) or now
        if now - since >= SETTLE_SECONDS or _shippers_done(pods):
            return replace(_failure(job, target, pods), pods_done=False)
        return None
    if create_failure is not None and refused(create_failure):
        name = (job.get("metadata") or {}).get("name", "")
        return Outcome(
            False,
            "cannot_create",
            pods_done=False,
            errors=[f"Job {name} cannot create its pods (FailedCreate): {_clip(create_failure)}"],
        )
    return _start_problem(job, pods, now, timeouts)


# The Job controller's FailedCreate message is "Error creating: " and its create call's
# error. A transport error (client-go's `Post "URL": ...`: the API server restarting or
# unreachable) or a 5xx answer refuses nothing: the controller tries again, the pods may come.
NOT_REFUSED = re.compile(
    r'^(Error creating: )?(\w+ "https?://[^"]*": |Internal error occurred|the server is '
    r"currently unable|the server was unable to return|Timeout: |etcdserver: )"
)


def refused(create_failure: str) -> bool:
    """Whether a FailedCreate message is the API server refusing the pods (quota, admission,
    Pod Security, a missing service account, an invalid pod), which no retry changes."""
    return NOT_REFUSED.match(create_failure) is None


def _pods_behind(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """Whether fewer pods are seen Succeeded than the Job counts: the output is read from
    them, and the pods' watch is a stream of its own that can lag the Jobs' (a re-list after
    an API-server restart closed a process with output [] in the 30-minute soak)."""
    counted = (job.get("status") or {}).get("succeeded") or 0
    seen = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
    return isinstance(counted, int) and seen < counted


def _pod_order(pod: dict[str, Any]) -> tuple[int, str]:
    meta = pod.get("metadata") or {}
    index = (meta.get("annotations") or {}).get(COMPLETION_INDEX, "")
    return (int(index) if str(index).isdigit() else 0, str(meta.get("name", "")))


def is_injected(container_name: str) -> bool:
    return container_name.startswith(INJECTED_PREFIX)


def _outputs(pods: list[dict[str, Any]]) -> list[str]:
    """Termination messages of the main containers, in completion-index order; none when the
    log shipper has set the output from the output files (a non-empty close would replace it)."""
    # `in`, not a prefix: a shipper that set the output and then failed (the sync) says so
    # after "error: "
    if any(OUTPUT_SET in _shipper_message(pod) for pod in pods):
        return []
    out: list[str] = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if is_injected(status.get("name", "")):
                continue
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message and message.strip():
                out.append(message.strip())  # whole: the kubelet already bounds it (4 KiB)
    return out


def _failure(job: dict[str, Any], failed: dict[str, Any], pods: list[dict[str, Any]]) -> Outcome:
    reason = failed.get("reason", "")
    name = (job.get("metadata") or {}).get("name", "")
    if reason == "DeadlineExceeded":
        walltime = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return Outcome(
            False,
            "deadline",
            errors=[
                f"walltime exceeded: Job {name} ran longer than conditions.walltime={walltime}s "
                f"and was stopped (Kubernetes reason DeadlineExceeded)" + _never_started(pods)
            ],
        )
    errors = [e for pod in pods for e in _pod_errors(pod)]
    if not errors:
        message = failed.get("message") or "the Job failed"
        errors = [f"Job {name} failed: {reason or 'Failed'}: {message}"]
    return Outcome(False, "failed", errors=errors)


def _never_started(pods: list[dict[str, Any]]) -> str:
    """What to add to a walltime failure whose program never ran: the walltime counts from
    the Job's start, so a pod still starting (a busy node, a slow image pull, a stager still
    downloading) uses it up, and the process has no log of its own. '' when a main container
    started, or when no pod is left to tell."""
    waits = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if is_injected(cs.get("name", "")):
                continue
            state = cs.get("state") or {}
            if "running" in state or "terminated" in state or cs.get("lastState"):
                return ""
            reason = (state.get("waiting") or {}).get("reason") or "not started"
            waits.append(f"{pod_ref(pod)} container {cs.get('name')}: {reason}")
    if not waits and not any((p.get("status") or {}).get("phase") for p in pods):
        return ""
    return f"; {NEVER_STARTED} (the walltime counts from the Job's start): " + (
        "; ".join(waits) if waits else "its pod was still starting"
    )


def _shipper_state(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The log shipper's container state in this pod (native sidecar or regular container)."""
    status = pod.get("status") or {}
    for cs in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if cs.get("name") == LOG_SHIPPER:
            return dict(cs.get("state") or {})
    return None


def _shipper_message(pod: dict[str, Any]) -> str:
    return str(((_shipper_state(pod) or {}).get("terminated") or {}).get("message") or "")


def message_limit(pod: dict[str, Any]) -> int:
    """The bytes of a termination message the kubelet keeps for each container of this pod."""
    spec = pod.get("spec") or {}
    count = sum(len(spec.get(k) or []) for k in ("containers", "initContainers"))
    return min(4096, 12 * 1024 // max(count, 1))


def cut_messages(pods: list[dict[str, Any]]) -> list[str]:
    """A line for each main container whose termination message reached the kubelet's limit."""
    notes = []
    for pod in pods:
        limit = message_limit(pod)
        name = (pod.get("metadata") or {}).get("name", "")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message") or ""
            if not is_injected(cs.get("name", "")) and len(message.encode()) >= limit:
                notes.append(
                    f"kubejobs: the termination message of container {cs.get('name')} in pod "
                    f"{name} reached the kubelet's limit ({limit} bytes for each container of "
                    "this pod) and was probably cut: write larger output as JSON to "
                    "$KUBEJOBS_OUTPUT_FILE"
                )
    return notes


def shipper_notes(pods: list[dict[str, Any]]) -> list[str]:
    """A line for each log shipper that ended before it had shipped everything.

    A shipper that finished exits 0; 1 is one that gave up (its own log says why), 137 one
    the kubelet killed at the end of the grace period, say while it was still starting on
    a starved node. The pod's status still succeeds, so without this the process log
    would just end early, silently.
    """
    notes = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        term = (_shipper_state(pod) or {}).get("terminated") or {}
        if term.get("exitCode") not in (0, None):
            # what it ended on (a certificate it could not verify, say): it cannot tell the
            # server itself
            said = str(term.get("message") or "").strip()
            notes.append(
                f"kubejobs: the log shipper of pod {name} ended with exit code "
                f"{term.get('exitCode')} ({term.get('reason') or 'Error'}) before it had "
                "shipped every line: this log may be incomplete"
                + (f". It said: {_clip(said)}" if said else "")
            )
    return notes


def _shippers_done(pods: list[dict[str, Any]]) -> bool:
    """Every pod's log shipper has ended (or the pod has none left running)."""
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        state = _shipper_state(pod)
        if state is not None and "terminated" not in state:
            return False
    return True


def _pod_errors(pod: dict[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    name = pod_ref(pod)
    if status.get("phase") != "Failed":
        return []
    errors: list[str] = []
    shipper: list[str] = []  # the sidecar is stopped with the pod; its exit only matters alone
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            code = term.get("exitCode")
            if not term or (code in (0, None) and term.get("reason") != "OOMKilled"):
                continue
            found = _container_error(name, cs["name"], term)
            (shipper if cs["name"] == LOG_SHIPPER else errors).append(found)
    errors = errors or shipper
    if not errors:
        why = status.get("reason") or "Failed"
        errors.append(f"{name} failed: {why}: {status.get('message') or 'no message'}")
    return errors


def pod_ref(pod: dict[str, Any]) -> str:
    """`pod <name>`, with its node rank when it is one of several (an Indexed Job's pod)."""
    meta = pod.get("metadata") or {}
    index = (meta.get("annotations") or {}).get(COMPLETION_INDEX)
    rank = f" (node rank {index})" if index is not None else ""
    return f"pod {meta.get('name', '')}{rank}"


def _container_error(pod: str, container: str, term: dict[str, Any]) -> str:
    code = term.get("exitCode")
    reason = term.get("reason") or "Error"
    role = _INJECTED_ROLES.get(container)
    who = f"container {container}" + (f" (injected {role})" if role else "")
    if reason in START_ERRORS:
        text = f"{pod} {who} could not start ({reason})"
    else:
        text = f"{pod} {who} exited with code {code} ({reason})"
    if reason == "OOMKilled":
        text += ": it used more memory than its limit (raise conditions.mem)"
    message = (term.get("message") or "").strip()
    if message:
        text += f": {_clip(message)}"
    return text


def _start_problem(
    job: dict[str, Any], pods: list[dict[str, Any]], now: float, timeouts: Timeouts
) -> Outcome | None:
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending", "Running"):
            continue
        name = pod_ref(pod)
        spec = pod.get("spec") or {}
        restarts = spec.get("restartPolicy", "Never") != "Never"
        # native sidecars (the log shipper) are restarted whatever the pod's restartPolicy:
        # a start that failed once (the kubelet stopped mid-start) is tried again
        sidecars = {
            c.get("name")
            for c in spec.get("initContainers") or []
            if c.get("restartPolicy") == "Always"
        }
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key) or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                retried = restarts or (
                    cs.get("name") in sidecars and cs.get("restartCount", 0) < SIDECAR_START_TRIES
                )
                if term.get("reason") in START_ERRORS and not retried:
                    # restartPolicy Never: it will not be tried again. The pod fails once its
                    # shipper is done; do not depend on that, say so within seconds.
                    since = timestamp(term.get("finishedAt")) or now
                    if now - since >= SETTLE_SECONDS or _shippers_done([pod]):
                        return Outcome(
                            False,
                            "cannot_start",
                            pods_done=False,
                            errors=[_container_error(name, cs.get("name", ""), term)],
                        )
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in CANNOT_START:
                    detail = waiting.get("message") or "no message"
                    return Outcome(
                        False,
                        "cannot_start",
                        pods_done=False,
                        errors=[
                            f"{name} container {cs.get('name')} cannot start: "
                            f"{waiting['reason']}: {_clip(detail)}"
                        ],
                    )
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                since = timestamp(cond.get("lastTransitionTime")) or now
                if now - since >= timeouts.unschedulable:
                    return Outcome(
                        False,
                        "unschedulable",
                        pods_done=False,
                        errors=[
                            f"{name} could not be scheduled for {timeouts.unschedulable}s: "
                            f"{cond.get('message') or 'Unschedulable'}"
                        ],
                    )
        stuck = _not_started(pod, now, timeouts.start)
        if stuck is not None:
            return Outcome(False, "not_started", pods_done=False, errors=[stuck])
    if not pods and timeouts.start:
        # From the Job's startTime, which the Job controller sets in the sync that creates
        # its pods (and Kueue's admission after a wait or a preemption resets). Without it
        # the controller has not come to the Job yet: its backlog, not a failure (10,000
        # Jobs at once kept it busy for over 300 s here, and every late Job was failed).
        created = timestamp((job.get("status") or {}).get("startTime"))
        if created is not None and now - created >= timeouts.start:
            name = (job.get("metadata") or {}).get("name", "")
            return Outcome(
                False,
                "no_pods",
                pods_done=False,
                errors=[f"Job {name} created no pod within {timeouts.start}s"],
            )
    return None


def _not_started(pod: dict[str, Any], now: float, start: int) -> str | None:
    """Why a pod has not started its program `start` seconds after it could have, or None.

    A pod stuck Pending on a node (a volume that cannot be mounted, a sandbox or network
    that cannot be set up, an image pull that does not end) reports no error reason, only
    ContainerCreating or PodInitializing; the other ranks of its Job wait for it. The time
    counts from when the node's kubelet took the pod up (status.startTime) or from the end
    of its last init container (the data stager may take long; while it runs the pod is
    making progress). A pod scheduled that no kubelet has taken up yet is the node's
    backlog (10,000 pods at once on kwok: 4,131 processes failed after 300 s), or a node
    gone, whose pods Kubernetes evicts and the Job controller replaces: not a failure. A pod
    no scheduler has come to counts from its creation (a schedulerName nothing serves).
    """
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    if not start or status.get("phase") not in (None, "Pending") or meta.get("deletionTimestamp"):
        return None
    scheduled = False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            if cond.get("status") != "True" and cond.get("reason") == "Unschedulable":
                return None
            scheduled = scheduled or cond.get("status") == "True"
    taken_up = timestamp(status.get("startTime"))
    if scheduled and taken_up is None:
        return None
    since = taken_up or timestamp(meta.get("creationTimestamp")) or now
    waiting: list[str] = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            state = cs.get("state") or {}
            if "running" in state and cs.get("name") != LOG_SHIPPER:
                return None  # an init container (the data stager) is at work
            ended = timestamp((state.get("terminated") or {}).get("finishedAt"))
            since = max(since, ended or 0.0)
            if "waiting" in state:
                why = state["waiting"].get("reason") or "waiting"
                detail = state["waiting"].get("message")
                waiting.append(f"{cs.get('name')}: {why}" + (f" ({detail})" if detail else ""))
    if now - since < start:
        return None
    if not waiting:
        waiting = [
            f"{c.get('type')} {c.get('reason') or c.get('status')}"
            + (f" ({c['message']})" if c.get("message") else "")
            for c in status.get("conditions") or []
            if c.get("status") != "True"
        ] or ["no container status yet"]
    return _clip(
        f"{pod_ref(pod)} did not start within start_timeout {start}s: {'; '.join(waiting)}. "
        f"`kubectl describe pod {meta.get('name', '')}` shows why in its events (a volume "
        "that cannot be mounted, an image that takes longer to pull than start_timeout)"
    )


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "... (truncated)"
