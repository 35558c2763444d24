"""Job and pod status dicts -> close or fail, with reasons a person can act on."""

from __future__ import annotations

from typing import Any

import pytest

from kubejobs.executor.outcome import Timeouts, job_outcome

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
NOW_TEXT = "2027-01-15T08:00:00Z"


def job(
    *conditions: dict[str, Any], deadline: int | None = None, created: str = NOW_TEXT
) -> dict[str, Any]:
    spec: dict[str, Any] = {"completions": 1}
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return {
        "metadata": {"name": "kj-abc", "creationTimestamp": created},
        "spec": spec,
        "status": {"conditions": list(conditions)},
    }


def cond(
    kind: str, reason: str = "", message: str = "", status: str = "True", when: str = NOW_TEXT
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
    }


def pod(
    name: str,
    phase: str,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    index: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": {}}
    if index is not None:
        meta["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "containerStatuses": containers or [],
            "initContainerStatuses": init or [],
            "conditions": conditions or [],
        },
    }


def terminated(name: str, code: int, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}},
    }


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def test_running_job_has_no_outcome() -> None:
    assert job_outcome(job(), [pod("p", "Running")], NOW) is None


def test_complete_closes_with_main_termination_messages_in_index_order() -> None:
    pods = [
        pod("kj-abc-1-x", "Succeeded", [terminated("main", 0, "Completed", "rank1\n")], index=1),
        pod(
            "kj-abc-0-y",
            "Succeeded",
            [
                terminated("main", 0, "Completed", "rank0"),
                terminated("kubejobs-log-shipper", 0, "", "shipper"),
            ],
            index=0,
        ),
    ]
    result = job_outcome(job(cond("Complete")), pods, NOW)
    assert result is not None and result.success
    assert result.output == ["rank0", "rank1"]


def test_complete_without_messages_closes_with_empty_output() -> None:
    result = job_outcome(
        job(cond("Complete")), [pod("p", "Succeeded", [terminated("main", 0)])], NOW
    )
    assert result is not None and result.success and result.output == []


def test_exit_code_names_pod_container_code_and_reason() -> None:
    pods = [
        pod(
            "kj-abc-x",
            "Failed",
            [terminated("main", 3, "Error", "boom")],
            init=[terminated("kubejobs-log-shipper", 143, "Error")],
        )
    ]
    result = job_outcome(job(cond("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert result is not None and not result.success and result.kind == "failed"
    assert result.errors == ["pod kj-abc-x container main exited with code 3 (Error): boom"]


def test_oom_killed_says_to_raise_mem() -> None:
    pods = [pod("p", "Failed", [terminated("main-1", 137, "OOMKilled")])]
    result = job_outcome(job(cond("Failed", "PodFailurePolicy")), pods, NOW)
    assert result is not None
    assert "container main-1 exited with code 137 (OOMKilled)" in result.errors[0]
    assert "conditions.mem" in result.errors[0]


def test_stager_failure_is_named_as_injected() -> None:
    pods = [
        pod("p", "Failed", init=[terminated("kubejobs-data-stager", 1, "Error", "no such label")])
    ]
    result = job_outcome(job(cond("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert result is not None
    assert (
        "container kubejobs-data-stager (injected data stager) exited with code 1"
        in result.errors[0]
    )


def test_deadline_exceeded_reports_walltime() -> None:
    result = job_outcome(
        job(cond("Failed", "DeadlineExceeded", "Job was active longer"), deadline=30), [], NOW
    )
    assert result is not None and result.kind == "deadline"
    assert "walltime=30s" in result.errors[0] and "DeadlineExceeded" in result.errors[0]


def test_failed_without_pod_details_uses_job_condition() -> None:
    result = job_outcome(
        job(cond("Failed", "BackoffLimitExceeded", "Job has reached the limit")), [], NOW
    )
    assert result is not None
    assert result.errors == ["Job kj-abc failed: BackoffLimitExceeded: Job has reached the limit"]


def test_evicted_pod_without_container_status() -> None:
    failed = pod("p", "Failed")
    failed["status"].update(reason="Evicted", message="node low on memory")
    result = job_outcome(job(cond("Failed", "BackoffLimitExceeded")), [failed], NOW)
    assert result is not None and result.errors == ["pod p failed: Evicted: node low on memory"]


def test_image_pull_fails_promptly_with_kubernetes_message() -> None:
    pods = [
        pod("p", "Pending", [waiting("main", "ImagePullBackOff", 'Back-off pulling image "nope"')])
    ]
    result = job_outcome(job(), pods, NOW)
    assert result is not None and result.kind == "cannot_start" and not result.pods_done
    assert result.errors == [
        'pod p container main cannot start: ImagePullBackOff: Back-off pulling image "nope"'
    ]


def test_config_error_in_init_container() -> None:
    pods = [
        pod(
            "p",
            "Pending",
            init=[
                waiting(
                    "kubejobs-data-stager",
                    "CreateContainerConfigError",
                    'secret "kubejobs-s3" not found',
                )
            ],
        )
    ]
    result = job_outcome(job(), pods, NOW)
    assert result is not None and "CreateContainerConfigError" in result.errors[0]


def test_container_creating_is_not_a_failure() -> None:
    assert (
        job_outcome(job(), [pod("p", "Pending", [waiting("main", "ContainerCreating")])], NOW)
        is None
    )


def test_unschedulable_fails_only_after_the_timeout() -> None:
    unsched = [
        cond(
            "PodScheduled",
            "Unschedulable",
            "0/3 nodes: Insufficient cpu",
            status="False",
            when="2027-01-15T07:59:50Z",
        )
    ]
    pods = [pod("p", "Pending", conditions=unsched)]
    assert job_outcome(job(), pods, NOW, Timeouts(unschedulable=60)) is None
    result = job_outcome(job(), pods, NOW, Timeouts(unschedulable=5))
    assert result is not None and result.kind == "unschedulable"
    assert "Insufficient cpu" in result.errors[0]


def test_a_scheduled_pod_that_does_not_start_fails_after_start_timeout() -> None:
    stuck = pod(
        "kj-abc-1-q",
        "Pending",
        [waiting("main", "ContainerCreating")],
        index=1,
        conditions=[cond("PodScheduled", when="2027-01-15T07:54:00Z")],
    )
    assert job_outcome(job(), [stuck], NOW, Timeouts(start=30)) is None  # no kubelet yet
    stuck["status"]["startTime"] = "2027-01-15T07:55:00Z"  # the kubelet took it up
    assert job_outcome(job(), [stuck], NOW, Timeouts(start=301)) is None
    assert job_outcome(job(), [stuck], NOW, Timeouts(start=0)) is None  # 0: no limit
    result = job_outcome(job(), [stuck], NOW, Timeouts(start=300))
    assert result is not None and result.kind == "not_started" and not result.pods_done
    assert result.errors[0].startswith(
        "pod kj-abc-1-q (node rank 1) did not start within start_timeout 300s: "
        "main: ContainerCreating. `kubectl describe pod kj-abc-1-q` shows why"
    )


def test_job_without_pods_fails_after_start_timeout() -> None:
    old = job(created="2027-01-15T07:40:00Z")
    old["status"]["startTime"] = "2027-01-15T07:50:00Z"  # the Job controller synced it then
    assert job_outcome(old, [], NOW, Timeouts(start=900)) is None
    result = job_outcome(old, [], NOW, Timeouts(start=600))
    assert result is not None and result.kind == "no_pods"
    assert result.errors == ["Job kj-abc created no pod within 600s"]


def test_a_job_the_job_controller_has_not_come_to_yet_is_not_failed() -> None:
    """No startTime: the controller's backlog (10,000 Jobs applied at once), not a failure."""
    waiting_its_turn = job(created="2027-01-15T07:00:00Z")
    assert job_outcome(waiting_its_turn, [], NOW, Timeouts(start=300)) is None


def test_failed_create_fails_at_once_with_kubernetes_message() -> None:
    message = (
        'Error creating: pods "kj-abc-x" is forbidden: error looking up service account '
        't/kubejobs-log-shipper: serviceaccount "kubejobs-log-shipper" not found'
    )
    outcome = job_outcome(job(deadline=86400), [], NOW, Timeouts(), message)
    assert outcome is not None and not outcome.success
    assert outcome.kind == "cannot_create" and not outcome.pods_done
    assert outcome.errors == [f"Job kj-abc cannot create its pods (FailedCreate): {message}"]


@pytest.mark.parametrize(
    "message",
    [
        'Error creating: Post "https://127.0.0.1:6443/api/v1/namespaces/t/pods": dial tcp '
        "127.0.0.1:6443: connect: connection refused",
        'Error creating: Post "https://10.0.0.1/api/v1/namespaces/t/pods": net/http: TLS '
        "handshake timeout",
        "Error creating: the server is currently unable to handle the request (post pods)",
        "Error creating: Internal error occurred: resource quota evaluation timed out",
        "Error creating: Timeout: request did not complete within requested timeout",
        "Error creating: etcdserver: request timed out",
    ],
)
def test_a_failed_create_the_job_controller_retries_is_no_failure(message: str) -> None:
    """The API server away (restarting) or overloaded is no refusal: the Job controller
    creates the pods once it answers again (found by the chaos soak: a process failed with
    "connection refused" during a kube-apiserver restart)."""
    assert job_outcome(job(deadline=86400), [], NOW, Timeouts(), message) is None


def test_finished_job_wins_over_an_old_failed_create() -> None:
    outcome = job_outcome(job(cond("Complete")), [], NOW, Timeouts(), "exceeded quota")
    assert outcome is not None and outcome.success


# --- failures known while pods still run ------------------------------------------

RUNNING = {"state": {"running": {}}}
SHIPPER = "kubejobs-log-shipper"
START_ERROR = (
    'failed to create containerd task: exec: "no-such-program": executable file not found in $PATH'
)


def shipper(state: str) -> dict[str, Any]:
    if state == "running":
        return {"name": SHIPPER, **RUNNING}
    return terminated(SHIPPER, 0, "Completed")


def test_deadline_target_fails_once_the_shipper_is_done_without_waiting_for_the_pods() -> None:
    target = cond("FailureTarget", "DeadlineExceeded", "Job was active longer")
    still = pod("p", "Running", [{"name": "main", **RUNNING}], init=[shipper("terminated")])
    result = job_outcome(job(target, deadline=10), [still], NOW)
    assert result is not None and result.kind == "deadline" and not result.success
    assert "walltime=10s" in result.errors[0]
    assert result.pods_done is False  # the Job must still be deleted, its pod still runs


def test_deadline_target_waits_a_moment_for_a_running_shipper_then_fails() -> None:
    target = cond("FailureTarget", "DeadlineExceeded", when=NOW_TEXT)
    still = pod("p", "Running", [{"name": "main", **RUNNING}], init=[shipper("running")])
    assert job_outcome(job(target, deadline=10), [still], NOW + 1) is None
    result = job_outcome(job(target, deadline=10), [still], NOW + 2)
    assert result is not None and result.kind == "deadline"


def test_other_failure_targets_wait_for_the_final_condition() -> None:
    target = cond("FailureTarget", "BackoffLimitExceeded")
    still = pod("p", "Running", [terminated("main", 3, "Error")], init=[shipper("running")])
    assert job_outcome(job(target), [still], NOW + 60) is None


def start_error_pod(shipper_state: str, finished: str = NOW_TEXT) -> dict[str, Any]:
    main = terminated("main", 128, "StartError", START_ERROR)
    main["state"]["terminated"]["finishedAt"] = finished
    return pod("p-1", "Running", [main], init=[shipper(shipper_state)])


def test_start_error_fails_at_once_naming_the_container_and_the_runtime_message() -> None:
    result = job_outcome(job(), [start_error_pod("terminated")], NOW)
    assert result is not None and result.kind == "cannot_start" and result.pods_done is False
    assert result.errors == [f"pod p-1 container main could not start (StartError): {START_ERROR}"]


def test_start_error_gives_a_running_shipper_a_moment() -> None:
    assert job_outcome(job(), [start_error_pod("running")], NOW + 1) is None
    result = job_outcome(job(), [start_error_pod("running")], NOW + 2)
    assert result is not None and result.kind == "cannot_start"


def test_start_error_in_a_pod_that_restarts_its_containers_is_not_final() -> None:
    restarting = start_error_pod("terminated")
    restarting["spec"] = {"restartPolicy": "OnFailure"}
    assert job_outcome(job(), [restarting], NOW + 60) is None


def test_a_start_error_of_the_shipper_sidecar_is_retried_by_the_kubelet_not_final() -> None:
    """A native sidecar restarts whatever the pod's restartPolicy: a shipper the runtime
    could not start once (the kubelet stopped mid-start: "context canceled") starts again
    (found by the chaos soak: a quick process failed by a kubelet restart). One that fails
    to start again and again is final."""
    once = terminated(SHIPPER, 128, "StartError", "failed to create shim task: context canceled")
    waiting = pod("p-1", "Pending", [{"name": "main", "state": {"waiting": {}}}], init=[once])
    waiting["spec"] = {"initContainers": [{"name": SHIPPER, "restartPolicy": "Always"}]}
    assert job_outcome(job(), [waiting], NOW + 60) is None
    once["restartCount"] = 2
    result = job_outcome(job(), [waiting], NOW + 60)
    assert result is not None and result.kind == "cannot_start"
    assert (
        "container kubejobs-log-shipper (injected log shipper) could not start"
        in (result.errors[0])
    )


def test_a_failed_pod_names_a_start_error_the_same_way() -> None:
    failed = pod("p-1", "Failed", [terminated("main", 128, "StartError", START_ERROR)])
    result = job_outcome(job(cond("Failed", "BackoffLimitExceeded")), [failed], NOW)
    assert result is not None
    assert result.errors == [f"pod p-1 container main could not start (StartError): {START_ERROR}"]


def test_a_shipper_killed_before_it_had_shipped_everything_is_said_in_the_log() -> None:
    killed = terminated(SHIPPER, 137, "Error")
    pod_ = pod("p-1", "Succeeded", [terminated("main", 0, "Completed")], init=[killed])
    result = job_outcome(job(cond("Complete")), [pod_], NOW)
    assert result is not None and result.success
    assert result.notes == [
        "kubejobs: the log shipper of pod p-1 ended with exit code 137 (Error) before it had "
        "shipped every line: this log may be incomplete"
    ]


def test_a_shipper_that_finished_adds_no_note_and_a_failed_job_keeps_the_note() -> None:
    fine = pod("p-1", "Succeeded", [terminated("main", 0)], init=[terminated(SHIPPER, 0)])
    result = job_outcome(job(cond("Complete")), [fine], NOW)
    assert result is not None and result.notes == []
    gave_up = pod("p-2", "Failed", [terminated("main", 3, "Error")], init=[terminated(SHIPPER, 1)])
    failed = job_outcome(job(cond("Failed", "BackoffLimitExceeded")), [gave_up], NOW)
    assert failed is not None and not failed.success
    assert "log shipper of pod p-2 ended with exit code 1" in failed.notes[0]
    assert failed.errors == ["pod p-2 container main exited with code 3 (Error)"]


def test_the_shipper_note_carries_what_the_shipper_ended_on() -> None:
    said = (
        "the Colonies server's TLS certificate failed verification: server s:1, checked against x"
    )
    gave_up = terminated(SHIPPER, 1, "Error", said)
    pod_ = pod("p-1", "Succeeded", [terminated("main", 0, "Completed")], init=[gave_up])
    result = job_outcome(job(cond("Complete")), [pod_], NOW)
    assert result is not None
    assert result.notes == [
        "kubejobs: the log shipper of pod p-1 ended with exit code 1 (Error) before it had "
        f"shipped every line: this log may be incomplete. It said: {said}"
    ]


def done_pod_whose_shipper_said(said: str) -> dict[str, Any]:
    """A pod whose program succeeded with a termination message, its shipper exited 1."""
    return pod(
        "p-1",
        "Succeeded",
        [terminated("main", 0, "Completed", "a termination message")],
        init=[terminated(SHIPPER, 1, "Error", said)],
    )


def test_a_shipper_that_could_not_set_the_programs_output_fails_the_process() -> None:
    """The soak: a shipper gave up during an outage with the program's output file unset, and
    the process closed with an empty output that its workflow child took as its input."""
    said = (
        "error: kubejobs: output not delivered: the program wrote its output file(s) but the "
        "log shipper gave up before it could set them: gave up trying to add the log batch"
    )
    p = done_pod_whose_shipper_said(said)
    result = job_outcome(job(cond("Complete")), [p], NOW)
    assert result is not None and not result.success and result.kind == "output_lost"
    assert result.errors[0].startswith("the program succeeded but its output was not delivered")
    assert "gave up trying to add the log batch" in result.errors[0]
    assert "log shipper of pod p-1 ended with exit code 1" in result.notes[0]


def test_a_shipper_that_set_the_output_and_then_failed_keeps_the_output_it_set() -> None:
    # its termination message still says the output is set: a close with the main
    # containers' termination messages would replace it
    said = "error: kubejobs: output set from 1 file(s); the onclose sync failed: S3 away"
    p = done_pod_whose_shipper_said(said)
    result = job_outcome(job(cond("Complete")), [p], NOW)
    assert result is not None and result.success and result.output == []
    assert "the onclose sync failed" in result.notes[0]


def test_a_complete_job_waits_for_its_succeeded_pod_to_be_seen_before_reading_the_output() -> None:
    """The pods' watch is a stream of its own: after an API-server restart the Jobs' re-list
    came first, and the process closed with output [] from a pod still seen running."""
    done = job(cond("Complete"))
    done["status"]["succeeded"] = 1
    stale = pod("p", "Running", [{"name": "main", "state": {"running": {}}}])
    assert job_outcome(done, [stale], NOW + 5) is None
    assert job_outcome(done, [], NOW + 5) is None
    fresh = pod("p", "Succeeded", [terminated("main", 0, "Completed", "the output")])
    result = job_outcome(done, [fresh], NOW + 5)
    assert result is not None and result.output == ["the output"] and not result.notes


def test_a_complete_job_whose_pods_are_never_seen_closes_after_the_catch_up_bound() -> None:
    done = job(cond("Complete"))
    done["status"]["succeeded"] = 1
    result = job_outcome(done, [], NOW + 31)
    assert result is not None and result.success and result.output == []
    assert "succeeded pods were gone before their results were read" in result.notes[0]


def test_a_walltime_used_up_before_the_program_started_says_so() -> None:
    """The walltime counts from the Job's start: on a busy node the pod may still be starting
    at the deadline, and the process then has no log at all; the error must say why."""
    target = cond("FailureTarget", "DeadlineExceeded", when=NOW_TEXT)
    starting = pod(
        "p", "Pending", [waiting("main", "ContainerCreating")], init=[shipper("terminated")]
    )
    result = job_outcome(job(target, deadline=10), [starting], NOW)
    assert result is not None and result.kind == "deadline"
    assert result.errors[0].endswith(
        "(Kubernetes reason DeadlineExceeded); the program had not started by then (the "
        "walltime counts from the Job's start): pod p container main: ContainerCreating"
    )
    ran = pod("p", "Running", [{"name": "main", **RUNNING}], init=[shipper("terminated")])
    result = job_outcome(job(target, deadline=10), [ran], NOW)
    assert result is not None and result.errors[0].endswith("(Kubernetes reason DeadlineExceeded)")
