"""The executor's apply against a real API server: a new Job is one create; a Job of its name
is looked at and left as it is (its own) or replaced (another executor's); a manifest the API
server cannot read is refused naming the field (strict field validation)."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from kubejobs.adapters.kube import KubeClient, KubeError
from kubejobs.executor.admission import Request
from kubejobs.executor.apply import Prepared, apply
from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.identity import EXECUTOR_ANNOTATION
from kubejobs.spec import validate_spec

pytestmark = pytest.mark.integration
SPEC = {"funcname": "execute", "kwargs": {"docker-image": "busybox:1.36", "cmd": "true"}}


@pytest.fixture
def target(kube: Any, kube_namespace: Any) -> tuple[KubeClient, str]:
    return KubeClient(kubeconfig=str(kube.kubeconfig)), kube_namespace.name


def prepared(pid: str, executor: str = "me") -> Prepared:
    manifests = Renderer(RenderSettings(executor_name=executor)).render(validate_spec(SPEC), pid)
    job = manifests[0]
    job["spec"]["suspend"] = True  # stored, no pods: this is about the API
    return Prepared(pid, job["metadata"]["name"], manifests, Request())


def test_a_new_job_is_one_create_and_its_own_job_again_is_left_as_it_is(
    target: tuple[KubeClient, str],
) -> None:
    kube, namespace = target
    job = prepared("a1" * 32)
    assert apply(kube, job, namespace, threading.Event())
    assert dict(kube.requests) == {"create": 1}
    first = kube.get("Job", namespace, job.job_name)
    assert first is not None
    # a retry or a restart: the same attempt again is the same Job, unchanged
    assert apply(kube, job, namespace, threading.Event())
    # rendered otherwise meanwhile (an upgraded template, another input): still left alone,
    # where an apply over it is refused ("field is immutable") and would fail the process
    other = copy.deepcopy(job)
    other.manifests[0]["spec"]["template"]["spec"]["containers"][-1]["image"] = "busybox:1.37"
    assert apply(kube, other, namespace, threading.Event())
    again = kube.get("Job", namespace, job.job_name)
    assert again is not None
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["metadata"]["generation"] == first["metadata"]["generation"]
    assert again["spec"]["template"] == first["spec"]["template"]
    assert dict(kube.requests) == {"create": 3, "get": 4}


def test_a_job_another_executor_left_under_the_name_is_replaced(
    target: tuple[KubeClient, str],
) -> None:
    kube, namespace = target
    theirs = prepared("b2" * 32, executor="gone-replica")
    assert apply(kube, theirs, namespace, threading.Event())
    before = kube.get("Job", namespace, theirs.job_name)
    assert before is not None
    mine = prepared("b2" * 32)
    assert apply(kube, mine, namespace, threading.Event(), gone_wait=60)
    after = kube.get("Job", namespace, mine.job_name)
    assert after is not None and after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["metadata"]["annotations"][EXECUTOR_ANNOTATION] == "me"


def test_a_job_with_a_field_the_api_server_does_not_know_is_refused_naming_it(
    target: tuple[KubeClient, str],
) -> None:
    kube, namespace = target
    job = prepared("c3" * 32)
    broken = copy.deepcopy(job.manifests)
    broken[0]["spec"]["template"]["spec"]["containers"][0]["comand"] = ["true"]
    with pytest.raises(KubeError) as refused:
        apply(kube, Prepared(job.process_id, job.job_name, broken, Request()), namespace,
              threading.Event())  # fmt: skip
    assert refused.value.status == 400  # a create the API server cannot decode
    assert 'unknown field "spec.template.spec.containers[0].comand"' in str(refused.value)
    assert kube.get("Job", namespace, job.job_name) is None
