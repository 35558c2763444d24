"""restricted_pods: the rendered pod passes the restricted Pod Security level; what a template
set itself is kept when compliant and refused, naming template and field, when not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kubejobs.errors import SettingsError, TemplateError
from kubejobs.render import Renderer
from kubejobs.render.podsecurity import _Checker, restrict
from kubejobs.render.settings import RenderSettings
from kubejobs.spec import validate_spec
from tests.unit.helpers import PID, job_of, mains, pod_of, render, spec_with

FS = {"mount": "/cfs", "dirs": [{"label": "/in", "dir": "/in"}]}
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def injected(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pod = pod_of(manifests)
    return [
        c
        for c in [*pod.get("initContainers", []), *pod["containers"]]
        if c["name"].startswith("kubejobs-")
    ]


def complies(manifests: list[dict[str, Any]]) -> None:
    """The whole pod, as the restricted level reads it (raises TemplateError if not)."""
    template = job_of(manifests)["spec"]["template"]
    _Checker("test").pod(template["spec"], template["metadata"], complete=True)


def custom(tmp_path: Path, pod_extra: str = "", main_extra: str = "") -> str:
    """A custom job template: the built-in one plus lines in the pod spec and main container."""
    builtin = (Path(__file__).resolve().parents[2] / "templates" / "job.yaml.j2").read_text()
    text = builtin.replace(
        "      restartPolicy: Never\n", "      restartPolicy: Never\n" + pod_extra
    )
    text = text.replace(
        "          terminationMessagePolicy: FallbackToLogsOnError\n",
        "          terminationMessagePolicy: FallbackToLogsOnError\n" + main_extra,
    )
    assert text != builtin
    (tmp_path / "job.yaml.j2").write_text(text)
    return str(tmp_path)


def test_without_the_setting_main_containers_and_pod_get_no_security_context() -> None:
    manifests = render(spec_with(fs=FS))
    assert "securityContext" not in pod_of(manifests)
    assert all("securityContext" not in c for c in mains(manifests))
    with pytest.raises(TemplateError, match="runAsNonRoot is missing"):
        complies(manifests)


def test_restricted_pod_and_main_containers_as_run_as_user() -> None:
    manifests = render(spec_with(fs=FS, conditions={"processespernode": 2}), restricted_pods=True)
    assert pod_of(manifests)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert [c["securityContext"] for c in mains(manifests)] == [RESTRICTED, RESTRICTED]
    complies(manifests)


def test_run_as_user_sets_user_group_and_fs_group_but_not_the_injected_containers() -> None:
    manifests = render(spec_with(fs=FS), restricted_pods=True, run_as_user=1234)
    pod = pod_of(manifests)["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (1234, 1234, 1234)
    (main,) = mains(manifests)
    assert (main["securityContext"]["runAsUser"], main["securityContext"]["runAsGroup"]) == (
        1234,
        1234,
    )
    # the image's user: its files and home belong to 65532; fsGroup 1234 gives it the data volume
    assert {c["securityContext"]["runAsUser"] for c in injected(manifests)} == {65532}
    complies(manifests)


@pytest.mark.parametrize("kube_version", ["1.34", "1.28"])
def test_injected_containers_comply_on_their_own(kube_version: str) -> None:
    manifests = render(spec_with(fs=FS), kube_version=kube_version)
    assert len(injected(manifests)) == 2
    pod = pod_of(manifests)
    only_injected = {
        "containers": [c for c in pod["containers"] if c["name"].startswith("kubejobs-")],
        "initContainers": pod["initContainers"],
        "volumes": pod["volumes"],
    }
    _Checker("test").pod(only_injected, {}, complete=True)


def test_restricted_leaves_the_injected_containers_as_they_were() -> None:
    plain = injected(render(spec_with(fs=FS)))
    assert injected(render(spec_with(fs=FS), restricted_pods=True)) == plain


def test_host_network_is_refused_with_restricted() -> None:
    with pytest.raises(SettingsError, match="restricted_pods and host_network cannot be combined"):
        RenderSettings(restricted_pods=True, host_network=True)
    RenderSettings(host_network=True)  # each alone is fine
    RenderSettings(restricted_pods=True)


def test_compliant_template_values_are_kept(tmp_path: Path) -> None:
    folder = custom(
        tmp_path,
        pod_extra="      securityContext: {runAsUser: 2000, fsGroup: 3000,"
        " seccompProfile: {type: Localhost, localhostProfile: p.json}}\n",
        main_extra="          securityContext: {runAsUser: 4000, readOnlyRootFilesystem: true,"
        " capabilities: {drop: [NET_RAW], add: [NET_BIND_SERVICE]}}\n",
    )
    manifests = render(spec_with(), restricted_pods=True, templates_dir=folder)
    pod = pod_of(manifests)["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (2000, 65532, 3000)
    assert pod["seccompProfile"] == {"type": "Localhost", "localhostProfile": "p.json"}
    (main,) = mains(manifests)
    assert main["securityContext"] == {
        "runAsUser": 4000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["NET_RAW", "ALL"], "add": ["NET_BIND_SERVICE"]},
        "runAsNonRoot": True,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    complies(manifests)


NON_COMPLIANT = [
    (
        "",
        "          securityContext: {runAsUser: 0}\n",
        r"containers\[0\] \('main'\)\.securityContext\.runAsUser is 0",
    ),
    (
        "",
        "          securityContext: {allowPrivilegeEscalation: true}\n",
        r"\('main'\)\.securityContext\.allowPrivilegeEscalation is True",
    ),
    ("", "          securityContext: {privileged: true}\n", r"\.privileged is True"),
    (
        "",
        "          securityContext: {capabilities: {add: [SYS_ADMIN, NET_BIND_SERVICE]}}\n",
        r"capabilities\.add is \['SYS_ADMIN'\]",
    ),
    ("", "          ports: [{containerPort: 80, hostPort: 80}]\n", r"ports\[0\]\.hostPort is 80"),
    (
        "",
        "          readinessProbe: {httpGet: {host: example.com, port: 80}}\n",
        r"readinessProbe\.httpGet\.host is 'example\.com'",
    ),
    (
        "      securityContext: {runAsNonRoot: false}\n",
        "",
        r"spec\.template\.spec\.securityContext\.runAsNonRoot is False",
    ),
    (
        "      securityContext: {seccompProfile: {type: Unconfined}}\n",
        "",
        r"securityContext\.seccompProfile\.type is 'Unconfined'",
    ),
    (
        "      securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}\n",
        "",
        r"sysctls is 'kernel\.msgmax'",
    ),
    ("      hostNetwork: true\n", "", r"spec\.template\.spec\.hostNetwork is True"),
    ("      hostPID: true\n", "", r"hostPID is True"),
    (
        "      volumes: [{name: host, hostPath: {path: /var/run}}]\n",
        "",
        r"volumes\[0\] \('host'\) is 'hostPath'",
    ),
]


@pytest.mark.parametrize(("pod_extra", "main_extra", "says"), NON_COMPLIANT)
def test_non_compliant_template_values_are_refused_naming_template_and_field(
    tmp_path: Path, pod_extra: str, main_extra: str, says: str
) -> None:
    folder = custom(tmp_path, pod_extra, main_extra)
    render(spec_with(), templates_dir=folder)  # fine without the setting
    with pytest.raises(TemplateError, match=r"^job\.yaml\.j2: .*" + says) as err:
        render(spec_with(), restricted_pods=True, templates_dir=folder)
    assert "restricted Pod Security level" in str(err.value)


def test_a_templates_own_init_container_is_made_compliant_too(tmp_path: Path) -> None:
    folder = custom(
        tmp_path,
        pod_extra='      initContainers: [{name: prep, image: busybox:1.36, command: ["true"]}]\n',
    )
    manifests = render(spec_with(), restricted_pods=True, templates_dir=folder)
    prep = next(c for c in pod_of(manifests)["initContainers"] if c["name"] == "prep")
    assert prep["securityContext"] == RESTRICTED
    complies(manifests)


def test_restrict_is_a_no_op_without_the_setting() -> None:
    job = job_of(render(spec_with(fs=FS)))
    before = copy.deepcopy(job)
    restrict(job, RenderSettings(), "job.yaml.j2")
    assert job == before


def test_renders_do_not_share_security_contexts(tmp_path: Path) -> None:
    folder = custom(tmp_path, main_extra="          securityContext: {runAsUser: 4000}\n")
    renderer = Renderer(RenderSettings(restricted_pods=True, templates_dir=folder))
    first = renderer.render(validate_spec(spec_with()), PID)
    mains(first)[0]["securityContext"]["capabilities"]["drop"].append("X")
    second = renderer.render(validate_spec(spec_with()), PID)
    assert mains(second)[0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
