"""The injection contract: order, reserved names, secrets by reference, non-root, fallback, idempotency."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubejobs.errors import TemplateError
from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.inject import Injection, inject
from kubejobs.spec import validate_spec
from tests.unit.helpers import PID, env_of, job_of, mains, pod_of, render, spec_with

FS = {"mount": "/cfs", "dirs": [{"label": "/in", "dir": "/in"}]}


def test_shipper_is_a_native_sidecar_declared_first_and_stager_follows() -> None:
    pod = pod_of(render(spec_with(fs=FS)))
    names = [c["name"] for c in pod["initContainers"]]
    assert names == ["kubejobs-log-shipper", "kubejobs-data-stager"]
    assert pod["initContainers"][0]["restartPolicy"] == "Always"
    assert "restartPolicy" not in pod["initContainers"][1]
    assert env_of(pod["initContainers"][0])["KUBEJOBS_SIDECAR_MODE"] == "native"


def test_no_stager_without_fs() -> None:
    pod = pod_of(render(spec_with()))
    assert [c["name"] for c in pod["initContainers"]] == ["kubejobs-log-shipper"]
    assert "kubejobs-data" not in [v["name"] for v in pod["volumes"]]


def test_old_clusters_get_a_shipper_container_that_exits_by_itself() -> None:
    pod = pod_of(render(spec_with(fs=FS), kube_version="1.28"))
    assert [c["name"] for c in pod["initContainers"]] == ["kubejobs-data-stager"]
    shipper = pod["containers"][-1]
    assert shipper["name"] == "kubejobs-log-shipper"
    assert "restartPolicy" not in shipper
    assert env_of(shipper)["KUBEJOBS_SIDECAR_MODE"] == "container"
    assert env_of(shipper)["KUBEJOBS_MAIN_CONTAINERS"] == "main"


def test_shared_volume_is_mounted_at_fs_mount_in_main_and_injected_containers() -> None:
    pod = pod_of(render(spec_with(fs=FS, conditions={"storage": "5Gi", "processespernode": 2})))
    volume = next(v for v in pod["volumes"] if v["name"] == "kubejobs-data")
    assert volume == {"name": "kubejobs-data", "emptyDir": {"sizeLimit": "5Gi"}}
    for container in pod["containers"] + pod["initContainers"]:
        assert {"name": "kubejobs-data", "mountPath": "/cfs"} in container["volumeMounts"]


def test_pvc_root_is_the_mount_of_every_job_so_processes_share_it() -> None:
    first = render(spec_with(fs=FS), pvc="shared-data")
    other_pid = Renderer(RenderSettings(pvc="shared-data")).render(
        validate_spec(spec_with(fs=FS)), "b" * 64
    )
    for manifests in (first, other_pid):
        pod = pod_of(manifests)
        assert {
            "name": "kubejobs-data",
            "persistentVolumeClaim": {"claimName": "shared-data"},
        } in pod["volumes"]
        for container in pod["containers"] + pod["initContainers"]:
            data = [m for m in container["volumeMounts"] if m["name"] == "kubejobs-data"]
            assert data == [{"name": "kubejobs-data", "mountPath": "/cfs"}], container["name"]


def test_pvc_pods_get_an_fs_group_so_the_non_root_stager_can_write_the_volume() -> None:
    pod = pod_of(render(spec_with(fs=FS), pvc="shared-data"))
    assert pod["securityContext"] == {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"}
    restricted = pod_of(
        render(spec_with(fs=FS), pvc="shared-data", restricted_pods=True, run_as_user=1000)
    )
    assert restricted["securityContext"]["fsGroup"] == 1000
    # an emptyDir is made writable for all; a spec without fs mounts no volume
    assert "fsGroup" not in pod_of(render(spec_with(fs=FS))).get("securityContext", {})
    assert "fsGroup" not in pod_of(render(spec_with(), pvc="shared-data")).get(
        "securityContext", {}
    )


def test_secrets_reach_only_injected_containers_and_only_by_reference() -> None:
    pod = pod_of(render(spec_with(fs=FS), executor_key_secret="exec-key", s3_secret="s3-creds"))
    for injected in pod["initContainers"]:
        env = env_of(injected)
        assert env["COLONIES_PRVKEY"] == {"secretKeyRef": {"name": "exec-key", "key": "prvkey"}}
        assert injected["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    main = pod["containers"][0]
    assert "envFrom" not in main
    assert not any("secretKeyRef" in str(e) for e in main["env"])
    assert not any(m["name"] == "kubejobs-token" for m in main["volumeMounts"])
    assert pod["automountServiceAccountToken"] is False


def test_token_is_mounted_only_into_the_shipper() -> None:
    pod = pod_of(render(spec_with(fs=FS)))
    holders = [
        c["name"]
        for c in pod["containers"] + pod["initContainers"]
        if any(m["name"] == "kubejobs-token" for m in c.get("volumeMounts", []))
    ]
    assert holders == ["kubejobs-log-shipper"]


def test_injected_containers_run_as_non_root_with_a_restricted_context() -> None:
    pod = pod_of(render(spec_with(fs=FS)))
    for container in pod["initContainers"]:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_settings_feed_the_injected_containers() -> None:
    pod = pod_of(
        render(
            spec_with(conditions={"nodes": 2}),
            colonies_host="colonies.svc",
            colonies_port=443,
            colonies_tls=True,
            inpod_image="reg/kubejobs:9",
        )
    )
    shipper = pod["initContainers"][0]
    env = env_of(shipper)
    assert shipper["image"] == "reg/kubejobs:9"
    assert (env["COLONIES_SERVER_HOST"], env["COLONIES_SERVER_PORT"], env["COLONIES_TLS"]) == (
        "colonies.svc",
        "443",
        "true",
    )
    assert env["COLONIES_PROCESS_ID"] == PID
    assert "fieldRef" in env["KUBEJOBS_NODE_RANK"]


def test_marker_records_what_was_injected() -> None:
    annotations = job_of(render(spec_with(fs=FS)))["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubejobs.io/injected"] == "kubejobs-log-shipper,kubejobs-data-stager"


def inject_again(job: dict[str, Any], data: dict[str, Any]) -> None:
    """Inject into an already rendered Job once more, with the default settings."""
    injection = Injection(
        spec=validate_spec(data),
        settings=RenderSettings(),
        process_id=PID,
        colony_name="",
        job_name=job["metadata"]["name"],
    )
    inject(job, injection, "job.yaml.j2")


def test_injecting_twice_changes_nothing() -> None:
    data = spec_with(fs=FS)
    job = job_of(render(data))
    again = copy.deepcopy(job)
    inject_again(again, data)
    assert again == job


def test_rendering_twice_gives_identical_output() -> None:
    data = spec_with(fs=FS, conditions={"nodes": 2})
    assert render(data) == render(data)


@pytest.mark.parametrize("field", ["containers", "initContainers", "volumes"])
def test_reserved_names_are_rejected(field: str) -> None:
    job = job_of(render(spec_with()))
    pod = job["spec"]["template"]["spec"]
    del job["spec"]["template"]["metadata"]["annotations"]["kubejobs.io/injected"]
    pod["initContainers"] = []
    pod["volumes"] = []
    pod.setdefault(field, []).append({"name": "kubejobs-mine", "image": "x"})
    injection = Injection(
        spec=validate_spec(spec_with()),
        settings=RenderSettings(),
        process_id=PID,
        colony_name="",
        job_name=job["metadata"]["name"],
    )
    with pytest.raises(
        TemplateError, match=f"job.yaml.j2: {field} name 'kubejobs-mine' is reserved"
    ):
        inject(job, injection, "job.yaml.j2")


def test_a_template_mount_at_fs_mount_is_refused() -> None:
    job = job_of(render(spec_with()))
    del job["spec"]["template"]["metadata"]["annotations"]["kubejobs.io/injected"]
    pod = job["spec"]["template"]["spec"]
    pod["initContainers"], pod["volumes"] = [], []
    pod["containers"][0]["volumeMounts"] = [{"name": "x", "mountPath": "/cfs"}]
    injection = Injection(
        spec=validate_spec(spec_with(fs=FS)),
        settings=RenderSettings(),
        process_id=PID,
        colony_name="",
        job_name="j",
    )
    with pytest.raises(TemplateError, match="already mounts '/cfs'"):
        inject(job, injection, "job.yaml.j2")


def test_inpod_env_reaches_only_the_injected_containers() -> None:
    api = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    pod = pod_of(render(spec_with(fs=FS), inpod_env={**api, "PRICE": "$5"}))
    for container in pod["initContainers"]:  # the shipper and the stager
        env = env_of(container)
        assert {k: env[k] for k in api} == api
        assert env["PRICE"] == "$$5"  # written for Kubernetes' $(VAR) expansion
    for container in pod["containers"]:
        assert "KUBERNETES_SERVICE_HOST" not in env_of(container)


@pytest.mark.parametrize("name", ["COLONIES_PRVKEY", "KUBEJOBS_FS", "AWS_S3_SECRETKEY", "1BAD"])
def test_inpod_env_refuses_kubejobs_own_names(name: str) -> None:
    from kubejobs.errors import SettingsError

    with pytest.raises(SettingsError, match=f"inpod_env: '{name}'"):
        RenderSettings(inpod_env={name: "x"})


@pytest.mark.parametrize(
    ("setting", "source"),
    [
        ("colonies_ca_configmap", {"configMap": {"name": "colonies-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
        ("colonies_ca_secret", {"secret": {"secretName": "colonies-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kube_version", ["1.34", "1.28"])
def test_the_colonies_ca_is_mounted_read_only_into_the_injected_containers_only(
    setting: str, source: dict[str, Any], kube_version: str
) -> None:
    pod = pod_of(
        render(
            spec_with(fs=FS),
            colonies_tls=True,
            kube_version=kube_version,
            **{setting: "colonies-ca"},
        )
    )
    assert {"name": "kubejobs-colonies-ca", **source} in pod["volumes"]
    injected = [
        c for c in pod["initContainers"] + pod["containers"] if c["name"].startswith("kubejobs-")
    ]
    assert sorted(c["name"] for c in injected) == ["kubejobs-data-stager", "kubejobs-log-shipper"]
    for container in injected:
        mount = {
            "name": "kubejobs-colonies-ca",
            "mountPath": "/etc/kubejobs/colonies-ca",
            "readOnly": True,
        }
        assert mount in container["volumeMounts"]
        assert env_of(container)["KUBEJOBS_COLONIES_CA_FILE"] == "/etc/kubejobs/colonies-ca/ca.crt"
        assert env_of(container)["COLONIES_TLS"] == "true"
    for container in mains(render(spec_with(fs=FS), **{setting: "colonies-ca"})):
        assert all(m["name"] != "kubejobs-colonies-ca" for m in container.get("volumeMounts", []))
        assert "KUBEJOBS_COLONIES_CA_FILE" not in env_of(container)


def test_no_colonies_ca_mount_without_a_ca_setting() -> None:
    pod = pod_of(render(spec_with(fs=FS), colonies_tls=True))
    assert "kubejobs-colonies-ca" not in [v["name"] for v in pod["volumes"]]
    for container in pod["initContainers"]:
        assert "KUBEJOBS_COLONIES_CA_FILE" not in env_of(container)


def test_injecting_twice_keeps_one_colonies_ca_mount() -> None:
    data = spec_with(fs=FS)
    job = job_of(render(data, colonies_ca_secret="colonies-ca"))
    again = copy.deepcopy(job)
    injection = Injection(
        spec=validate_spec(data),
        settings=RenderSettings(colonies_ca_secret="colonies-ca"),
        process_id=PID,
        colony_name="",
        job_name=job["metadata"]["name"],
    )
    inject(again, injection, "job.yaml.j2")
    assert again == job


def test_pvc_tells_the_injected_containers_how_many_ranks_share_the_volume() -> None:
    shared = pod_of(render(spec_with(fs=FS, conditions={"nodes": 3}), pvc="shared-data"))
    for container in shared["initContainers"]:
        assert env_of(container)["KUBEJOBS_SHARED_VOLUME_PODS"] == "3", container["name"]
    assert "KUBEJOBS_SHARED_VOLUME_PODS" not in env_of(shared["containers"][0])
    own = pod_of(render(spec_with(fs=FS, conditions={"nodes": 3})))
    for container in own["initContainers"]:
        assert "KUBEJOBS_SHARED_VOLUME_PODS" not in env_of(container)


@pytest.mark.parametrize("kube_version", ["1.34", "1.28"])
def test_the_shipper_is_told_the_pods_grace_period(kube_version: str) -> None:
    # it is its deadline after SIGTERM; asked of the API server instead, an outage as the pod
    # starts made it assume 30 s (the soak)
    pod = pod_of(render(spec_with(), termination_grace_seconds=45, kube_version=kube_version))
    shipper = next(
        c for c in pod["initContainers"] + pod["containers"] if c["name"] == "kubejobs-log-shipper"
    )
    assert pod["terminationGracePeriodSeconds"] == 45
    assert env_of(shipper)["KUBEJOBS_GRACE_SECONDS"] == "45"
    assert all("KUBEJOBS_GRACE_SECONDS" not in env_of(c) for c in pod["containers"][:1])


def test_a_template_without_a_grace_period_leaves_the_shipper_to_ask() -> None:
    data = spec_with()
    job = job_of(render(data))
    del job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    inject_again(job, data)  # the injected containers are made anew
    shipper = job["spec"]["template"]["spec"]["initContainers"][0]
    assert shipper["name"] == "kubejobs-log-shipper"
    assert "KUBEJOBS_GRACE_SECONDS" not in env_of(shipper)
