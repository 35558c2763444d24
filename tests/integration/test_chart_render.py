"""The Helm chart with the real helm and kubeconform binaries (no cluster needed).

`helm lint --strict`; `helm template` of every values file checked by
kubeconform -strict against offline schemas for 1.29 and 1.34; the schema
refusing bad values with their path in the message; the Deployment reflecting
the values; and what the chart hands the executor (settings file, templates
folder) read by the package's own settings loader and renderer.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubejobs.executor.identity import for_replica
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.render import Renderer
from kubejobs.settings import load_settings
from kubejobs.spec import validate_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubejobs"
EXAMPLES = CHART / "examples"
KEY = "1f8960e46cfd7b78ae350fa47d05527e61498300e381141cd75908f2aa1f74cd"
PROCESS_ID = "ab" * 32

# Values files rendered and checked; "default" is values.yaml alone.
VALUES_FILES = {
    "default": None,
    "gpu": EXAMPLES / "gpu-values.yaml",
    "existing-secret": EXAMPLES / "existing-secret-values.yaml",
    "custom-templates": EXAMPLES / "custom-templates-values.yaml",
    "self-registration": EXAMPLES / "self-registration-values.yaml",
    "scale-out": EXAMPLES / "scale-out-values.yaml",
}
CUSTOM_JOB_TEMPLATE = EXAMPLES / "templates" / "job.yaml.j2"

Template = Callable[..., list[dict[str, Any]]]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template_args(
    *args: str, values: Path | None = None, kube_version: str = "1.34.0", namespace: str = "kj"
) -> list[str]:
    argv = ["template", "kj", str(CHART), "-n", namespace, "--kube-version", kube_version]
    if values is not None:
        argv += ["-f", str(values)]
    return [*argv, *args]


@pytest.fixture
def template(helm: str) -> Template:
    """template(*helm args, values=file, kube_version=...) -> the rendered objects."""

    def render(*args: str, **kwargs: Any) -> list[dict[str, Any]]:
        result = run_helm(helm, *template_args(*args, **kwargs))
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    return render


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[o['kind'] for o in objects]}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["executor"]
    result: dict[str, Any] = pod["containers"][0]
    return result


def settings_text(objects: list[dict[str, Any]]) -> str:
    text: str = find(objects, "ConfigMap", "kj-kubejobs-settings")["data"]["settings.yaml"]
    return text


def load_chart_settings(
    objects: list[dict[str, Any]], tmp_path: Path, **environ: str
) -> ExecutorSettings:
    """The settings the executor builds from the chart's settings file (and env overrides)."""
    path = tmp_path / "settings.yaml"
    path.write_text(settings_text(objects), encoding="utf-8")
    return load_settings(ExecutorSettings, str(path), environ)


# --- lint and Kubernetes schemas -------------------------------------------------


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_helm_lint_strict(name: str, helm: str) -> None:
    values = VALUES_FILES[name]
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_lint_strict_with_a_template_file(helm: str) -> None:
    result = run_helm(
        helm, "lint", "--strict", str(CHART),
        "--set-file", f"templates.job\\.yaml\\.j2={CUSTOM_JOB_TEMPLATE}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kube_version", ["1.29.0", "1.34.0"])
@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_rendered_chart_passes_kubeconform_strict(
    name: str, kube_version: str, helm: str, kubeconform: Any, tmp_path: Path
) -> None:
    result = run_helm(helm, *template_args(values=VALUES_FILES[name], kube_version=kube_version))
    assert result.returncode == 0, result.stderr
    count = len([d for d in yaml.safe_load_all(result.stdout) if d])
    out = tmp_path / "chart.yaml"
    out.write_text(result.stdout, encoding="utf-8")
    checked = kubeconform.run(str(out), kubernetes_version=kube_version, strict=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    summary = json.loads(checked.stdout)["summary"]
    assert summary == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}


def test_kubeconform_catches_a_broken_manifest(kubeconform: Any, template: Template) -> None:
    """The check above can fail: a misspelled field in a rendered Deployment is refused."""
    deployment = find(template(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    checked = kubeconform.run(stdin=json.dumps(deployment), strict=True)
    assert checked.returncode != 0
    assert "readinesProbe" in checked.stdout


def test_too_old_clusters_are_refused(helm: str) -> None:
    result = run_helm(helm, *template_args(kube_version="1.24.0"))
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


# --- the schema refuses bad values, naming them -------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=abc"], "at '/replicaCount': got string, want integer"),
        (["--set", "replicaCount=-1"], "/replicaCount"),
        (["--set", "statefulSet.replicas=2"], "additional properties 'replicas'"),
        (["--set", "config.queue_name=Team A"], "/config/queue_name"),
        (
            ["--set", "config.workload_priority_classes.low=x"],
            "/config/workload_priority_classes/low",
        ),
        (["--set", "config.max_queued=0"], "/config/max_queued"),
        (["--set", "config.run_as_user=0"], "/config/run_as_user"),
        (["--set", "config.colonies_ca_file=/x"], "additional properties 'colonies_ca_file'"),
        (["--set", "replicas=1"], "additional properties 'replicas' not allowed"),
        (["--set", "config.colony=dev"], "at '/config': additional properties 'colony'"),
        (["--set", "config.max_jobs=0"], "at '/config/max_jobs'"),
        (["--set-string", "config.colonies_port=50080"], "at '/config/colonies_port'"),
        (["--set", "config.capacity_mem=1 GB"], "/config/capacity_mem"),
        (["--set", "config.health_port=0"], "at '/config/health_port'"),
        (["--set", "config.tolerations[0].operator=Maybe"], "/config/tolerations/0/operator"),
        (["--set", "config.executor_prvkey=abc"], "additional properties 'executor_prvkey'"),
        (["--set", "config.templates_dir=/x"], "additional properties 'templates_dir'"),
        (["--set", "executorKey.source=value"], "/executorKey"),
        (["--set", "executorKey.source=value,executorKey.prvkey=xyz"], "/executorKey/prvkey"),
        (["--set", "executorKey.source=generate"], "/colonyKey"),
        (["--set", "colonyKey.source=secret"], "/colonyKey/secretName"),
        (["--set", "extraEnv[0].name=KUBEJOBS_MAX_JOBS,extraEnv[0].value=1"], "/extraEnv/0/name"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "nodeSelector.a=b c"], "/nodeSelector/a"),
    ],
)
def test_schema_refuses_bad_values_and_names_them(args: list[str], message: str, helm: str) -> None:
    result = run_helm(helm, *template_args(*args))
    assert result.returncode != 0, f"accepted: {args}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


GENERATE = "executorKey.source=generate,colonyKey.source=secret,colonyKey.secretName=ck"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=2"],
         "replicaCount 2 with one executor key (executorKey.source=secret) would run 2 executors"),
        (["--set", f"replicaCount=2,executorKey.source=value,executorKey.prvkey={KEY}"],
         "replicaCount 2 with one executor key (executorKey.source=value)"),
        (["--set", f"replicaCount=2,{GENERATE}"], "replicaCount > 1 needs statefulSet.enabled=true"),
        (["--set", "statefulSet.enabled=true"],
         "statefulSet.enabled needs executorKey.source=generate and a colonyKey"),
        (["--set", "config.colonies_ca_configmap=a,config.colonies_ca_secret=b"],
         "set config.colonies_ca_configmap or config.colonies_ca_secret, not both"),
    ],
)  # fmt: skip
def test_the_chart_refuses_what_would_break_the_executor(
    args: list[str], message: str, helm: str
) -> None:
    result = run_helm(helm, *template_args(*args))
    assert result.returncode != 0, f"accepted: {args}"
    assert message in result.stderr, result.stderr


def test_scale_out_is_a_statefulset_of_executors_with_a_key_secret_each(
    template: Template, tmp_path: Path
) -> None:
    objects = template(values=VALUES_FILES["scale-out"])
    assert not [o for o in objects if o["kind"] == "Deployment"]
    sts = find(objects, "StatefulSet", "kj-kubejobs")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "kj-kubejobs-replicas"
    assert find(objects, "Service", "kj-kubejobs-replicas")["spec"]["clusterIP"] == "None"
    pod = sts["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["command"][-4:] == [
        "--replica", "$(POD_NAME)", "--config", "/etc/kubejobs/config/settings.yaml"
    ]  # fmt: skip
    pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert pod_name in main["env"]
    assert "executor-key" not in {v["name"] for v in pod["volumes"]}  # every replica generates
    rules = find(objects, "Role", "kj-kubejobs-executor")["rules"]
    names = [
        r["resourceNames"] for r in rules if r["resources"] == ["secrets"] and "resourceNames" in r
    ]
    assert names == [[f"kj-kubejobs-executor-key-{i}" for i in range(3)]]
    # What `--replica kj-kubejobs-2` (pod 2's name) makes of the chart's settings file.
    replica = for_replica(load_chart_settings(objects, tmp_path), "kj-kubejobs-2")
    assert (replica.executor_name, replica.executor_key_secret) == (
        "kj-kubejobs-2", "kj-kubejobs-executor-key-2"
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["configmap", "secret"])
def test_the_colonies_ca_is_mounted_into_the_executor(
    kind: str, template: Template, tmp_path: Path
) -> None:
    objects = template("--set", f"config.colonies_ca_{kind}=colonies-ca,config.colonies_tls=true")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "colonies-ca")
    source = volume["configMap"]["name"] if kind == "configmap" else volume[kind]["secretName"]
    assert source == "colonies-ca"
    assert volume.get("configMap", volume.get("secret"))["items"] == [
        {"key": "ca.crt", "path": "ca.crt"}
    ]
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "colonies-ca")
    assert mount == {
        "name": "colonies-ca",
        "mountPath": "/etc/kubejobs/colonies-ca",
        "readOnly": True,
    }
    settings = json.loads(settings_text(objects))
    assert settings["colonies_ca_file"] == "/etc/kubejobs/colonies-ca/ca.crt"
    assert settings[f"colonies_ca_{kind}"] == "colonies-ca"
    loaded = load_chart_settings(objects, tmp_path)
    assert loaded.colonies_ca_file == "/etc/kubejobs/colonies-ca/ca.crt"
    plain = json.loads(settings_text(template()))
    assert "colonies_ca_file" not in plain  # no CA: the system's public CAs


def test_unknown_key_in_a_values_file_is_refused(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "typo.yaml"
    values.write_text("config:\n  colony_name: dev\n  max_job: 10\n", encoding="utf-8")
    result = run_helm(helm, *template_args(values=values))
    assert result.returncode != 0
    assert "at '/config': additional properties 'max_job' not allowed" in result.stderr


def test_templates_and_a_templates_configmap_together_are_refused(helm: str) -> None:
    result = run_helm(
        helm,
        *template_args("--set", "templatesConfigMap=mine", "--set", "templates.a\\.j2=x"),
    )
    assert result.returncode != 0
    assert "set templates or templatesConfigMap, not both" in result.stderr


# --- the Deployment reflects the values ---------------------------------------------


def test_default_pod_is_restricted(template: Template) -> None:
    objects = template()
    deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    c = container(objects)
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["image"] == "ghcr.io/kubejobs/kubejobs:0.1.0"
    assert c["command"] == [
        "kubejobs", "executor", "--config", "/etc/kubejobs/config/settings.yaml",
    ]  # fmt: skip
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert pod["serviceAccountName"] == "kj-kubejobs"
    assert pod["automountServiceAccountToken"] is True
    # no Secret in the environment: keys come as files
    assert all("valueFrom" not in e for e in c["env"])
    assert {o["kind"] for o in objects} == {
        "ServiceAccount", "ConfigMap", "Role", "RoleBinding", "Deployment",
    }  # fmt: skip


def test_pod_spec_reflects_the_values(template: Template) -> None:
    objects = template(
        "--set", "replicaCount=0",
        "--set", "image.repository=registry.example.com/kubejobs,image.tag=0.1.0-rc1",
        "--set", "image.pullPolicy=Always",
        "--set", "imagePullSecrets[0]=regcred",
        "--set", "command={python,-m,kubejobs.executor}",
        "--set", "logLevel=DEBUG",
        "--set", "config.health_port=9090",
        "--set", "probes.liveness.periodSeconds=7,probes.readiness.failureThreshold=9",
        "--set", "resources.requests.cpu=1,resources.limits.memory=2Gi",
        "--set", "podSecurityContext.runAsUser=null,podSecurityContext.fsGroup=2000",
        "--set", "nodeSelector.pool=system",
        "--set", "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
        "--set", "priorityClassName=system-cluster-critical",
        "--set", "terminationGracePeriodSeconds=90",
        "--set", "serviceAccount.name=executor-sa",
        "--set", "podAnnotations.team=batch,podLabels.tier=control",
        "--set", "extraEnv[0].name=HTTPS_PROXY,extraEnv[0].value=http://proxy:3128",
        "--set", "metrics.service.enabled=true,metrics.podAnnotations=true",
    )  # fmt: skip
    deployment = find(objects, "Deployment")
    template_meta = deployment["spec"]["template"]["metadata"]
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    assert deployment["spec"]["replicas"] == 0
    assert c["image"] == "registry.example.com/kubejobs:0.1.0-rc1"
    assert c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["command"][:3] == ["python", "-m", "kubejobs.executor"]
    assert {"name": "KUBEJOBS_LOG_LEVEL", "value": "DEBUG"} in c["env"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]
    assert c["ports"][0]["containerPort"] == 9090
    assert c["livenessProbe"]["periodSeconds"] == 7
    assert c["readinessProbe"]["failureThreshold"] == 9
    assert c["resources"] == {
        "requests": {"cpu": 1, "memory": "256Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert "runAsUser" not in pod["securityContext"]
    assert pod["securityContext"]["fsGroup"] == 2000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["terminationGracePeriodSeconds"] == 90
    assert pod["serviceAccountName"] == "executor-sa"
    assert find(objects, "ServiceAccount", "executor-sa")
    binding = find(objects, "RoleBinding", "kj-kubejobs-executor")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "executor-sa", "namespace": "kj"}
    ]
    assert template_meta["annotations"]["team"] == "batch"
    assert template_meta["annotations"]["prometheus.io/port"] == "9090"
    assert template_meta["labels"]["tier"] == "control"
    service = find(objects, "Service", "kj-kubejobs-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= template_meta["labels"].items()


def test_changed_settings_restart_the_executor(template: Template) -> None:
    def checksums(*args: str) -> dict[str, str]:
        deployment = find(template(*args), "Deployment")
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums()
    assert checksums() == base
    assert checksums("--set", "config.max_jobs=5")["checksum/settings"] != base["checksum/settings"]
    changed = checksums("--set", "templates.job\\.yaml\\.j2=x")
    assert changed["checksum/templates"] != base["checksum/templates"]
    keyed = checksums("--set", f"executorKey.source=value,executorKey.prvkey={KEY}")
    assert keyed["checksum/keys"] != base["checksum/keys"]


# --- what the executor gets: settings file, keys, templates ---------------------------


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_settings_file_loads_with_the_executor_settings(
    name: str, template: Template, tmp_path: Path
) -> None:
    objects = template(values=VALUES_FILES[name], kube_version="1.29.0")
    settings = load_chart_settings(objects, tmp_path)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    overrides: dict[str, Any] = {}
    if VALUES_FILES[name]:
        overrides = yaml.safe_load(VALUES_FILES[name].read_text(encoding="utf-8"))  # type: ignore[union-attr]
        values["config"].update(overrides.get("config", {}))
    for key, value in values["config"].items():
        if value not in ("", None):
            got = getattr(settings, key)
            assert json.loads(json.dumps(got, default=_plain)) == value, key
    assert settings.namespace == "kj"
    assert settings.kube_version == "1.29"
    assert settings.inpod_image == "ghcr.io/kubejobs/kubejobs:0.1.0"
    assert settings.executor_name == (values["config"]["executor_name"] or "kj-kubejobs")
    assert settings.service_account == "kj-kubejobs-log-shipper"
    chosen = (overrides.get("executorKey") or {}).get("secretName") if VALUES_FILES[name] else ""
    assert settings.executor_key_secret == (chosen or "kj-kubejobs-executor-key")
    assert settings.s3_secret == "kubejobs-s3"  # made by hand (s3Secret.create false)
    assert settings.kubeconfig == ""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return dict(value)


def _mounted_from(objects: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The volume mounted where `path` is, with the file's key inside it."""
    c = container(objects)
    volumes = {
        v["name"]: v for v in find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    for mount in c["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return {"volume": volumes[mount["name"]], "file": path[len(prefix) :]}
    raise AssertionError(f"nothing is mounted at {path}")


def test_keys_reach_the_executor_as_files_from_the_right_secrets(
    template: Template, tmp_path: Path
) -> None:
    objects = template(values=VALUES_FILES["existing-secret"])
    settings = load_chart_settings(objects, tmp_path)
    executor_key = _mounted_from(objects, settings.executor_prvkey_file)
    assert executor_key["volume"]["secret"]["secretName"] == settings.executor_key_secret
    assert executor_key["volume"]["secret"]["items"] == [
        {"key": "prvkey", "path": executor_key["file"]}
    ]
    colony_key = _mounted_from(objects, settings.colony_prvkey_file)
    assert colony_key["volume"]["secret"]["secretName"] == "colony-admin"
    assert colony_key["volume"]["secret"]["items"] == [
        {"key": "colony.key", "path": colony_key["file"]}
    ]
    assert not [o for o in objects if o["kind"] == "Secret"]  # they exist already
    assert "secrets" not in json.dumps(find(objects, "Role", "kj-kubejobs-executor")["rules"])
    # the executor reads the mounted files
    key_file = tmp_path / "prvkey"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    with_file = load_chart_settings(objects, tmp_path, KUBEJOBS_EXECUTOR_PRVKEY_FILE=str(key_file))
    assert with_file.executor_key() == KEY


def test_key_from_values_is_a_secret_named_as_the_setting(
    template: Template, tmp_path: Path
) -> None:
    objects = template("--set", f"executorKey.source=value,executorKey.prvkey={KEY}")
    settings = load_chart_settings(objects, tmp_path)
    secret = find(objects, "Secret", settings.executor_key_secret)
    assert base64.b64decode(secret["data"]["prvkey"]).decode() == KEY
    assert KEY not in settings_text(objects)
    assert (
        _mounted_from(objects, settings.executor_prvkey_file)["volume"]["secret"]["secretName"]
        == settings.executor_key_secret
    )


def test_generated_key_mode_mounts_no_key_and_grants_only_its_secret(
    template: Template, tmp_path: Path
) -> None:
    objects = template(values=VALUES_FILES["self-registration"])
    settings = load_chart_settings(objects, tmp_path)
    assert settings.executor_prvkey_file == ""
    assert settings.colony_prvkey_file
    volumes = find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert "executor-key" not in [v["name"] for v in volumes]
    rules = find(objects, "Role", "kj-kubejobs-executor")["rules"]
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [settings.executor_key_secret],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]


def test_jobs_in_another_namespace_get_the_roles_and_the_shipper_account_there(
    template: Template, tmp_path: Path
) -> None:
    objects = template(
        "--set", "config.namespace=batch-jobs",
        "--set", f"executorKey.source=value,executorKey.prvkey={KEY}",
        "--set", "s3Secret.create=true,s3Secret.data.AWS_S3_ENDPOINT=s3:9000",
        "--set", "s3Secret.data.AWS_S3_BUCKET=cfs",
    )  # fmt: skip
    assert load_chart_settings(objects, tmp_path).namespace == "batch-jobs"
    for kind, name in [
        ("Role", "kj-kubejobs-executor"),
        ("RoleBinding", "kj-kubejobs-executor"),
        ("Role", "kj-kubejobs-log-shipper"),
        ("RoleBinding", "kj-kubejobs-log-shipper"),
        ("ServiceAccount", "kj-kubejobs-log-shipper"),
        ("Secret", "kj-kubejobs-s3"),
    ]:
        assert find(objects, kind, name)["metadata"]["namespace"] == "batch-jobs", (kind, name)
    for kind, name in [
        ("Deployment", "kj-kubejobs"),
        ("ServiceAccount", "kj-kubejobs"),
        ("ConfigMap", "kj-kubejobs-settings"),
    ]:
        assert find(objects, kind, name)["metadata"]["namespace"] == "kj", (kind, name)
    key_namespaces = sorted(
        o["metadata"]["namespace"]
        for o in objects
        if o["kind"] == "Secret" and o["metadata"]["name"] == "kj-kubejobs-executor-key"
    )
    assert key_namespaces == ["batch-jobs", "kj"]
    binding = find(objects, "RoleBinding", "kj-kubejobs-executor")
    assert binding["subjects"][0]["namespace"] == "kj"


def test_custom_templates_render_jobs_with_the_real_renderer(
    template: Template, tmp_path: Path
) -> None:
    objects = template(
        "--set-file", f"templates.job\\.yaml\\.j2={CUSTOM_JOB_TEMPLATE}",
        values=VALUES_FILES["custom-templates"],
    )  # fmt: skip
    settings = load_chart_settings(objects, tmp_path)
    configmap = find(objects, "ConfigMap", "kj-kubejobs-templates")
    assert sorted(configmap["data"]) == ["job.yaml.j2", "service.yaml.j2"]
    assert configmap["data"]["job.yaml.j2"] == CUSTOM_JOB_TEMPLATE.read_text(encoding="utf-8")
    mounted = _mounted_from(objects, settings.templates_dir + "/job.yaml.j2")
    assert mounted["volume"]["configMap"]["name"] == "kj-kubejobs-templates"

    # The folder the ConfigMap mount gives the executor, used by the real renderer.
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, text in configmap["data"].items():
        (folder / name).write_text(text, encoding="utf-8")
    with_folder = load_chart_settings(objects, tmp_path, KUBEJOBS_TEMPLATES_DIR=str(folder))
    spec = validate_spec(json.loads((ROOT / "examples" / "multi-node.json").read_text()))
    manifests = Renderer(with_folder).render(spec, PROCESS_ID)
    service = find(manifests, "Service")
    assert service["spec"]["ports"] == [{"name": "rendezvous", "port": 29500, "protocol": "TCP"}]
    pod = find(manifests, "Job")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == "kj-kubejobs-log-shipper"
    assert pod["initContainers"][0]["name"] == "kubejobs-log-shipper"  # still injected


def test_no_templates_means_the_built_ins(template: Template, tmp_path: Path) -> None:
    objects = template()
    assert load_chart_settings(objects, tmp_path).templates_dir == ""
    assert not [o for o in objects if o["metadata"]["name"] == "kj-kubejobs-templates"]
    existing = template("--set", "templatesConfigMap=team-templates")
    settings = load_chart_settings(existing, tmp_path)
    mounted = _mounted_from(existing, settings.templates_dir + "/job.yaml.j2")
    assert mounted["volume"]["configMap"]["name"] == "team-templates"


# --- releases side by side in one namespace -------------------------------------------


NAMESPACED_KINDS = {"ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding", "Service",
                    "Deployment", "StatefulSet"}  # fmt: skip


@pytest.mark.parametrize("name", ["default", "gpu", "custom-templates"])
def test_two_releases_in_one_namespace_share_no_object_name(
    name: str, helm: str, tmp_path: Path
) -> None:
    """A CPU pool beside a GPU pool: every object one release makes (the log shipper's
    account, the key Secret, the Roles, ...) has a name of its own, and so does every
    name its executor's settings use for its Jobs."""

    def release(release_name: str) -> tuple[set[tuple[str, str]], ExecutorSettings]:
        argv = template_args(
            "--set", f"executorKey.source=value,executorKey.prvkey={KEY}",
            "--set", "s3Secret.create=true,s3Secret.data.AWS_S3_BUCKET=cfs",
            values=VALUES_FILES[name],
        )  # fmt: skip
        argv[1] = release_name
        result = run_helm(helm, *argv)
        assert result.returncode == 0, result.stderr
        objects = [d for d in yaml.safe_load_all(result.stdout) if d]
        named = {
            (o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in NAMESPACED_KINDS
        }
        text = next(
            o
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-settings")
        )["data"]["settings.yaml"]
        path = tmp_path / f"{release_name}.yaml"
        path.write_text(text, encoding="utf-8")
        return named, load_settings(ExecutorSettings, str(path), {})

    cpu, cpu_settings = release("cpu")
    gpu, gpu_settings = release("gpu")
    assert cpu and not cpu & gpu, cpu & gpu
    for setting in ("service_account", "executor_key_secret", "s3_secret"):
        assert getattr(cpu_settings, setting) != getattr(gpu_settings, setting), setting
    if name == "default":  # the examples choose an executor_name: one per release, please
        assert cpu_settings.executor_name != gpu_settings.executor_name
    assert cpu_settings.service_account == "cpu-kubejobs-log-shipper"
    assert cpu_settings.executor_key_secret == "cpu-kubejobs-executor-key"
    assert cpu_settings.s3_secret == "cpu-kubejobs-s3"


def test_two_generating_releases_get_key_secrets_and_roles_of_their_own(helm: str) -> None:
    def rules(release_name: str) -> list[Any]:
        argv = template_args("--set", GENERATE, "--set", "replicaCount=2,statefulSet.enabled=true")
        argv[1] = release_name
        result = run_helm(helm, *argv)
        assert result.returncode == 0, result.stderr
        role = next(
            d for d in yaml.safe_load_all(result.stdout)
            if d and d["kind"] == "Role" and d["metadata"]["name"].endswith("-executor")
        )  # fmt: skip
        return [r.get("resourceNames") for r in role["rules"] if r["resources"] == ["secrets"]]

    assert rules("cpu")[0] == ["cpu-kubejobs-executor-key-0", "cpu-kubejobs-executor-key-1"]
    assert rules("gpu")[0] == ["gpu-kubejobs-executor-key-0", "gpu-kubejobs-executor-key-1"]


def test_chosen_names_are_kept(template: Template, tmp_path: Path) -> None:
    """Names set in values win (e.g. the names of a release made before release-scoped
    defaults, pinned for tools that render with `helm template`)."""
    objects = template(
        "--set", "logShipper.serviceAccount.name=kubejobs-log-shipper",
        "--set", "executorKey.secretName=kubejobs-executor-key,config.s3_secret=team-s3",
        "--set", "config.colony_name=dev",
        "--set", f"executorKey.source=value,executorKey.prvkey={KEY}",
    )  # fmt: skip
    settings = load_chart_settings(objects, tmp_path)
    assert (settings.service_account, settings.executor_key_secret, settings.s3_secret) == (
        "kubejobs-log-shipper", "kubejobs-executor-key", "team-s3"
    )  # fmt: skip
    assert find(objects, "ServiceAccount", "kubejobs-log-shipper")
    key = find(objects, "Secret", "kubejobs-executor-key")
    assert key["metadata"]["annotations"] == {
        "kubejobs.io/colony": "dev",
        "kubejobs.io/executor": "kj-kubejobs",
    }
    rules = find(objects, "Role", "kj-kubejobs-executor")["rules"]
    assert {"apiGroups": [""], "resources": ["serviceaccounts"],
            "resourceNames": ["kubejobs-log-shipper"], "verbs": ["get"]} in rules  # fmt: skip
    binding = find(objects, "RoleBinding", "kj-kubejobs-log-shipper")
    assert binding["subjects"][0]["name"] == "kubejobs-log-shipper"
