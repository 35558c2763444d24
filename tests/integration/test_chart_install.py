"""The Helm chart installed with the real helm into the test control plane.

kwok plays the kubelet, so the executor's own pod never runs its program;
instead the tests check the objects on the API server, ask the API server's
RBAC what each ServiceAccount may do (`kubectl auth can-i --as`), and run the
executor here as the chart's ServiceAccount (a token from `kubectl create
token`) with the settings file the chart installed, against the test Colonies
server: Jobs it applies run on kwok nodes as the chart's log-shipper account.
Waits are bounded; nothing asserts on durations.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.colonies import key_id
from testenv._proc import free_port
from tests.integration.executor_support import executor_ready
from tests.integration.polling import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubejobs"
KEY = "1f8960e46cfd7b78ae350fa47d05527e61498300e381141cd75908f2aa1f74cd"
RELEASE = "kj"
EXECUTOR_SA = "kj-kubejobs"
# Release-scoped names (<release>-kubejobs-...): releases side by side in one namespace.
SHIPPER_SA = "kj-kubejobs-log-shipper"
KEY_SECRET = "kj-kubejobs-executor-key"
WAIT = 120.0
SUCCESS, FAILED = 2, 3

# Rules the API server reports for system:authenticated (system:basic-user), not the chart's.
BASIC_USER = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


Install = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def install(helm: str, kube: Any, kube_namespace: Any) -> Iterator[Install]:
    """install(*helm args, namespace=this test's, release=kj) -> `helm install` of the chart
    (must succeed); every release is uninstalled afterwards."""
    installed: list[tuple[str, str]] = []

    def run(
        *args: str, namespace: str | None = None, command: str = "install", release: str = RELEASE
    ) -> Any:
        ns = namespace or kube_namespace.name
        result = subprocess.run(
            [helm, command, release, str(CHART), "-n", ns, f"--kubeconfig={kube.kubeconfig}",
             "--set", "config.colony_name=dev", *args],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        installed.append((ns, release))
        return result

    yield run
    for ns, release in dict.fromkeys(installed):
        subprocess.run(
            [helm, "uninstall", release, "-n", ns, f"--kubeconfig={kube.kubeconfig}"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip


@pytest.fixture
def other_namespace(kube: Any) -> Iterator[str]:
    name = kube.create_namespace("other")
    try:
        yield name
    finally:
        kube.delete_namespace(name)


def get(kube: Any, namespace: str, *what: str) -> Any:
    return json.loads(kube.kubectl("-n", namespace, "get", *what, "-o", "json").stdout)


def can_i(kube: Any, namespace: str, sa: str, verb: str, resource: str, *extra: str) -> bool:
    """The API server's answer for system:serviceaccount:<namespace>:<sa>."""
    result = kube.kubectl(
        "auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{sa}", *extra,
        check=False,
    )  # fmt: skip
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return bool(answer == "yes")


def rules_of(kube: Any, namespace: str, sa: str, in_namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list`: resource (with resource names) -> verbs, less basic-user."""
    out = kube.kubectl(
        "auth", "can-i", "--list", "-n", in_namespace,
        f"--as=system:serviceaccount:{namespace}:{sa}",
    ).stdout  # fmt: skip
    rules: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        if line.startswith(" ") or not line.strip():
            continue  # non-resource URLs (discovery, health) that every user may get
        resource = line.split()[0]
        _urls, names, verbs = re.findall(r"\[([^\]]*)\]", line)
        if resource not in BASIC_USER:
            rules.setdefault(resource + (f"/{names}" if names else ""), set()).update(verbs.split())
    return rules


# --- objects -----------------------------------------------------------------------


def test_install_in_a_restricted_namespace_upgrade_and_uninstall(
    install: Install, helm: str, kube: Any, kube_namespace: Any
) -> None:
    ns = kube_namespace.name
    # Pod Security admission refuses pods that are not "restricted": the executor's must pass.
    kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    notes = install("--set", f"executorKey.source=value,executorKey.prvkey={KEY}").stdout
    assert f"Jobs run in namespace {ns}" in notes
    assert "Target Kubernetes version for rendered Jobs: 1.34." in notes

    deployment = get(kube, ns, "deployment", "kj-kubejobs")
    selector = ",".join(
        f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
    )

    def executor_pods() -> list[dict[str, Any]]:
        return list(get(kube, ns, "pods", "-l", selector)["items"])

    def events() -> str:
        return kube.kubectl("-n", ns, "get", "events").stdout

    try:
        pods = until(executor_pods, "the executor pod")
    except AssertionError as err:
        raise AssertionError(f"{err}; events:\n{events()}") from None
    pod = pods[0]["spec"]
    assert pod["serviceAccountName"] == EXECUTOR_SA
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert "FailedCreate" not in events()
    # The API server does enforce the level here (PodSecurity is on by default): a pod
    # without the chart's securityContext is refused.
    plain = {**_running_pod("plain"), "metadata": {"name": "plain"}}
    refused = kube_namespace.kubectl("create", "-f", "-", input=json.dumps(plain), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    settings = json.loads(
        get(kube, ns, "configmap", "kj-kubejobs-settings")["data"]["settings.yaml"]
    )
    assert settings["kube_version"] == kube.version.lstrip("v").rsplit(".", 1)[0]
    assert settings["namespace"] == ns
    assert settings["service_account"] == SHIPPER_SA
    secret = get(kube, ns, "secret", settings["executor_key_secret"])
    assert base64.b64decode(secret["data"]["prvkey"]).decode() == KEY
    shipper = get(kube, ns, "serviceaccount", SHIPPER_SA)
    assert shipper["automountServiceAccountToken"] is False

    old = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
    install("--reuse-values", "--set", "config.max_jobs=7", command="upgrade")
    settings = json.loads(
        get(kube, ns, "configmap", "kj-kubejobs-settings")["data"]["settings.yaml"]
    )
    assert settings["max_jobs"] == 7
    upgraded = get(kube, ns, "deployment", "kj-kubejobs")
    assert upgraded["spec"]["template"]["metadata"]["annotations"]["checksum/settings"] != old

    subprocess.run(
        [helm, "uninstall", RELEASE, "-n", ns, f"--kubeconfig={kube.kubeconfig}", "--wait"],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    left = kube.kubectl(
        "-n", ns, "get", "deployment,serviceaccount,role,rolebinding,configmap,secret",
        "-l", "app.kubernetes.io/instance=kj", "-o", "name",
    ).stdout  # fmt: skip
    assert left == ""


@pytest.mark.parametrize(
    "values",
    ["default", "gpu-values.yaml", "existing-secret-values.yaml", "custom-templates-values.yaml",
     "self-registration-values.yaml", "scale-out-values.yaml"],
)  # fmt: skip
def test_rendered_chart_passes_a_strict_server_side_dry_run(
    values: str, helm: str, kube: Any, kube_namespace: Any
) -> None:
    """The API server's own validation (what kubeconform's schemas do not know), every example."""
    args = [] if values == "default" else ["-f", str(CHART / "examples" / values)]
    rendered = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "-n", kube_namespace.name,
         f"--kube-version={kube.version}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    result = kube_namespace.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input=rendered.stdout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    workload = (
        "statefulset.apps/kj-kubejobs" if values == "scale-out-values.yaml"
        else "deployment.apps/kj-kubejobs"
    )  # fmt: skip
    assert f"{workload} created (server dry run)" in result.stdout


# --- RBAC: what each account may do --------------------------------------------------


EXECUTOR_ALLOWED = [
    ("create", "jobs.batch"), ("patch", "jobs.batch"), ("get", "jobs.batch"),
    ("list", "jobs.batch"), ("watch", "jobs.batch"), ("delete", "jobs.batch"),
    ("list", "pods"), ("watch", "pods"),
    ("create", "services"), ("patch", "services"), ("get", "services"), ("delete", "services"),
    ("list", "events"), ("watch", "events"), ("get", f"serviceaccounts/{SHIPPER_SA}"),
]  # fmt: skip
EXECUTOR_DENIED = [
    ("get", "secrets"), ("list", "secrets"), ("create", "secrets"), ("get", f"secrets/{KEY_SECRET}"),
    ("get", "pods"), ("delete", "pods"), ("create", "pods"), ("get", "pods/log"),
    ("create", "pods/exec"), ("update", "jobs.batch"), ("deletecollection", "jobs.batch"),
    ("list", "services"), ("create", "events"), ("get", "configmaps"),
    ("create", "deployments.apps"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts/token"), ("get", "serviceaccounts/default"),
    ("list", "serviceaccounts"),
]  # fmt: skip
# Kueue's objects (verb, resource[/subresource]): granted only with config.queue_name.
# The executor never unsuspends a Job (jobs/status) nor writes Kueue's own objects.
KUEUE_ALLOWED = [
    ("get", "workloads"), ("list", "workloads"), ("watch", "workloads"), ("get", "localqueues"),
]  # fmt: skip
KUEUE_DENIED = [
    ("create", "workloads"), ("patch", "workloads"), ("update", "workloads/status"),
    ("delete", "workloads"), ("list", "localqueues"), ("patch", "localqueues"),
    ("get", "clusterqueues"), ("list", "resourceflavors"),
]  # fmt: skip


def kueue_can_i(kube: Any, sa_namespace: str, sa: str, verb: str, resource: str, ns: str) -> bool:
    """A SubjectAccessReview of a kueue.x-k8s.io resource, which RBAC answers without its CRDs.

    `kubectl auth can-i` cannot ask this: it resolves the resource through
    discovery and, for a group the server does not serve, drops the group.
    """
    resource, _, subresource = resource.partition("/")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{sa_namespace}:{sa}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}",
                       "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "verb": verb, "group": "kueue.x-k8s.io",
                                   "resource": resource, "subresource": subresource},
        },
    }  # fmt: skip
    out = kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def assert_kueue(kube: Any, ns: str, granted: bool, other_namespace: str) -> None:
    for verb, resource in KUEUE_ALLOWED:
        assert kueue_can_i(kube, ns, EXECUTOR_SA, verb, resource, ns) is granted, (verb, resource)
        assert not kueue_can_i(kube, ns, EXECUTOR_SA, verb, resource, other_namespace)
        assert not kueue_can_i(kube, ns, SHIPPER_SA, verb, resource, ns), (verb, resource)
    for verb, resource in KUEUE_DENIED:
        assert not kueue_can_i(kube, ns, EXECUTOR_SA, verb, resource, ns), (verb, resource)
    for verb in ("update", "patch"):  # Kueue unsuspends; the executor only patches the Job
        assert not can_i(kube, ns, EXECUTOR_SA, verb, "jobs.batch", "--subresource=status",
                         "-n", ns)  # fmt: skip


SHIPPER_ALLOWED = [("get", "pods"), ("get", "pods/log")]
SHIPPER_DENIED = [
    ("list", "pods"), ("watch", "pods"), ("delete", "pods"), ("create", "pods"),
    ("patch", "pods"), ("create", "pods/exec"), ("create", "pods/eviction"),
    ("get", "secrets"), ("list", "secrets"), ("get", f"secrets/{KEY_SECRET}"),
    ("get", "jobs.batch"), ("list", "events"), ("get", "configmaps"),
]  # fmt: skip
CLUSTER_DENIED = [
    ("list", "nodes"), ("get", "nodes"), ("list", "namespaces"), ("list", "pods", "-A"),
    ("list", "secrets", "-A"), ("list", "jobs.batch", "-A"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("list", "persistentvolumes"),
]  # fmt: skip


def assert_allowed_only(
    kube: Any,
    ns: str,
    account: str,
    allowed: list[tuple[str, str]],
    denied: list[tuple[str, str]],
    other_namespace: str,
) -> None:
    """`kubectl auth can-i` as `account`: `allowed` here only, `denied` and cluster scope never."""
    for verb, resource in allowed:
        assert can_i(kube, ns, account, verb, resource, "-n", ns), (verb, resource)
    for verb, resource in denied:
        assert not can_i(kube, ns, account, verb, resource, "-n", ns), (verb, resource)
    for verb, resource in allowed:
        assert not can_i(kube, ns, account, verb, resource, "-n", other_namespace)
    for verb, resource, *extra in CLUSTER_DENIED:
        assert not can_i(kube, ns, account, verb, resource, *extra), (verb, resource)


def test_executor_account_may_do_what_the_executor_does_and_nothing_more(
    install: Install, kube: Any, kube_namespace: Any, other_namespace: str
) -> None:
    ns = kube_namespace.name
    install()
    assert_allowed_only(kube, ns, EXECUTOR_SA, EXECUTOR_ALLOWED, EXECUTOR_DENIED, other_namespace)
    assert_kueue(kube, ns, False, other_namespace)  # no Kueue without queue_name
    assert rules_of(kube, ns, EXECUTOR_SA, ns) == EXECUTOR_RULES
    assert rules_of(kube, ns, EXECUTOR_SA, other_namespace) == {}


EXECUTOR_RULES = {
    "jobs.batch": {"get", "list", "watch", "create", "patch", "delete"},
    "pods": {"list", "watch"},
    "services": {"get", "create", "patch", "delete"},
    "events": {"list", "watch"},
    f"serviceaccounts/{SHIPPER_SA}": {"get"},
}


def test_kueue_queue_adds_reading_workloads_and_the_local_queue_only(
    install: Install, kube: Any, kube_namespace: Any, other_namespace: str
) -> None:
    ns = kube_namespace.name
    install("--set", "config.queue_name=team-a", "--set", "config.workload_priority_class=low")
    settings = json.loads(
        get(kube, ns, "configmap", "kj-kubejobs-settings")["data"]["settings.yaml"]
    )
    assert (settings["queue_name"], settings["max_queued"]) == ("team-a", 2)
    assert_allowed_only(kube, ns, EXECUTOR_SA, EXECUTOR_ALLOWED, EXECUTOR_DENIED, other_namespace)
    assert_kueue(kube, ns, True, other_namespace)
    assert rules_of(kube, ns, EXECUTOR_SA, ns) == {
        **EXECUTOR_RULES,
        "workloads.kueue.x-k8s.io": {"get", "list", "watch"},
        "localqueues.kueue.x-k8s.io": {"get"},
    }
    # the log shipper gains nothing
    assert rules_of(kube, ns, SHIPPER_SA, ns) == {"pods": {"get"}, "pods/log": {"get"}}


def test_log_shipper_account_reads_pods_and_their_logs_only(
    install: Install, kube: Any, kube_namespace: Any, other_namespace: str
) -> None:
    ns = kube_namespace.name
    install()
    assert_allowed_only(kube, ns, SHIPPER_SA, SHIPPER_ALLOWED, SHIPPER_DENIED, other_namespace)
    assert rules_of(kube, ns, SHIPPER_SA, ns) == {"pods": {"get"}, "pods/log": {"get"}}

    # A real log read as the shipper (what `kubectl logs` does: get the pod, then pods/log).
    kube_namespace.set_logs("main", ["hello from the job"])
    kube_namespace.kubectl("create", "-f", "-", input=json.dumps(_running_pod("job-pod")))
    kube_namespace.kubectl("wait", "--for=condition=Ready", "pod/job-pod", "--timeout=60s")

    def logs_as(sa: str) -> subprocess.CompletedProcess[str]:
        return kube_namespace.kubectl(
            "logs", "job-pod", "-c", "main", f"--as=system:serviceaccount:{ns}:{sa}", check=False
        )

    text = until(lambda: logs_as(SHIPPER_SA).stdout, "the pod's log as the shipper", 60)
    assert text == "hello from the job\n"
    refused = logs_as(EXECUTOR_SA)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()


def _running_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"kwok.test/run-forever": "true"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": SHIPPER_SA,
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    }


def test_generated_key_mode_grants_its_secret_and_secret_creation_only(
    install: Install, kube: Any, kube_namespace: Any
) -> None:
    ns = kube_namespace.name
    install(
        "--set", "executorKey.source=generate",
        "--set", f"colonyKey.source=value,colonyKey.prvkey={KEY}",
    )  # fmt: skip
    assert can_i(kube, ns, EXECUTOR_SA, "get", f"secrets/{KEY_SECRET}", "-n", ns)
    # patch: to record itself as the owner of a key Secret an older kubejobs made
    assert can_i(kube, ns, EXECUTOR_SA, "patch", f"secrets/{KEY_SECRET}", "-n", ns)
    assert can_i(kube, ns, EXECUTOR_SA, "create", "secrets", "-n", ns)
    for verb, resource in [
        ("get", "secrets/kj-kubejobs-colony-key"), ("get", "secrets/other"),
        ("patch", "secrets/other"), ("list", "secrets"), ("watch", "secrets"),
        ("update", f"secrets/{KEY_SECRET}"), ("delete", f"secrets/{KEY_SECRET}"),
    ]:  # fmt: skip
        assert not can_i(kube, ns, EXECUTOR_SA, verb, resource, "-n", ns), (verb, resource)
    assert rules_of(kube, ns, EXECUTOR_SA, ns)[f"secrets/{KEY_SECRET}"] == {"get", "patch"}
    assert rules_of(kube, ns, EXECUTOR_SA, ns)["secrets"] == {"create"}
    # the colony key is the chart's Secret, mounted into the executor only
    assert get(kube, ns, "secret", "kj-kubejobs-colony-key")["data"]["prvkey"]


def test_jobs_in_another_namespace(
    install: Install, kube: Any, kube_namespace: Any, other_namespace: str
) -> None:
    ns, jobs = kube_namespace.name, other_namespace
    install(
        "--set", f"config.namespace={jobs}",
        "--set", f"executorKey.source=value,executorKey.prvkey={KEY}",
    )  # fmt: skip
    for verb, resource in EXECUTOR_ALLOWED:
        assert can_i(kube, ns, EXECUTOR_SA, verb, resource, "-n", jobs), (verb, resource)
        assert not can_i(kube, ns, EXECUTOR_SA, verb, resource, "-n", ns), (verb, resource)
    assert can_i(kube, jobs, SHIPPER_SA, "get", "pods/log", "-n", jobs)
    assert not can_i(kube, jobs, SHIPPER_SA, "get", "pods/log", "-n", ns)
    for namespace in (ns, jobs):  # the executor mounts it here; the shipper there
        secret = get(kube, namespace, "secret", KEY_SECRET)
        assert base64.b64decode(secret["data"]["prvkey"]).decode() == KEY
    get(kube, jobs, "serviceaccount", SHIPPER_SA)
    assert kube.kubectl("-n", ns, "get", "serviceaccount", SHIPPER_SA, check=False).returncode


# --- the executor itself, as the chart's account ---------------------------------------


class ChartExecutor:
    """The executor started here the way the chart's Deployment starts it, as its account."""

    def __init__(self, kube: Any, namespace: str, tmp_path: Path, release: str = RELEASE) -> None:
        self.kube = kube
        self.namespace = namespace
        self.tmp = tmp_path
        self.fullname = f"{release}-kubejobs"  # the chart's objects, its executor's account
        self.log_path = tmp_path / "executor.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def kubeconfig(self) -> Path:
        """A kubeconfig with a token of the chart's executor ServiceAccount, nothing else."""
        token = self.kube.kubectl(
            "-n", self.namespace, "create", "token", self.fullname, "--duration=1h"
        ).stdout.strip()  # fmt: skip
        admin = json.loads(Path(self.kube.kubeconfig).read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": "executor", "user": {"token": token}}],
            "contexts": [{"name": "executor", "context": {"cluster": admin["clusters"][0]["name"], "user": "executor"}}],
            "current-context": "executor",
        }  # fmt: skip
        path = self.tmp / "executor.kubeconfig"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def start(
        self, files: dict[str, str], workload: str = "deployment", pod_name: str = ""
    ) -> ChartExecutor:
        """Run the workload's command with the installed settings file.

        `files` maps a setting (executor_prvkey_file, colony_prvkey_file) to the
        text of the Secret the Deployment mounts there; here it is a local file.
        With the StatefulSet (`workload` statefulset), `pod_name` is the replica's
        pod name, which the pod gets from the downward API as POD_NAME.
        """
        deployment = get(self.kube, self.namespace, workload, self.fullname)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        settings_text = get(self.kube, self.namespace, "configmap", f"{self.fullname}-settings")[
            "data"
        ]["settings.yaml"]
        settings_file = self.tmp / "settings.yaml"
        settings_file.write_text(settings_text, encoding="utf-8")
        command = list(container["command"])
        assert command[:2] == ["kubejobs", "executor"] and command[-2] == "--config"
        kubejobs = shutil.which("kubejobs", path=str(Path(sys.executable).parent))
        assert kubejobs, "the kubejobs console script next to this Python"
        command[0], command[-1] = kubejobs, str(settings_file)

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
        if pod_name:  # the downward API's metadata.name, expanded by the kubelet
            assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}} in container["env"]  # fmt: skip
            env["POD_NAME"] = pod_name
            command = [pod_name if a == "$(POD_NAME)" else a for a in command]
        # What differs between the pod and this process: where the files are, the endpoint.
        env["KUBEJOBS_KUBECONFIG"] = str(self.kubeconfig())
        env["KUBEJOBS_HEALTH_PORT"] = str(self.port)
        env["KUBEJOBS_HEALTH_HOST"] = "127.0.0.1"
        env["KUBEJOBS_LOG_LEVEL"] = "DEBUG"
        for setting, text in files.items():
            path = self.tmp / setting
            path.write_text(text, encoding="utf-8")
            env[f"KUBEJOBS_{setting.upper()}"] = str(path)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
            )
        until(self.ready, f"executor /readyz:\n{self.log()}", 90)
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        return executor_ready(self.proc, self.port, self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture
def chart_executor(kube: Any, kube_namespace: Any, tmp_path: Path) -> Iterator[ChartExecutor]:
    runner = ChartExecutor(kube, kube_namespace.name, tmp_path)
    try:
        yield runner
    finally:
        runner.stop()


def spec(executor_type: str, **conditions: Any) -> dict[str, Any]:
    return {
        "funcname": "execute",
        "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo hello"},
        "conditions": {"executortype": executor_type, "cpu": "100m", "mem": "64Mi", **conditions},
        "maxexectime": -1,
        "maxretries": -1,
        "maxwaittime": -1,
    }


def _colonies_values(colonies: Any, executor_type: str, name: str) -> list[str]:
    return [
        "--set", f"config.colony_name={colonies.colony_name}",
        "--set", f"config.executor_name={name},config.executor_type={executor_type}",
        "--set", f"config.colonies_host={colonies.host},config.colonies_port={colonies.port}",
        "--set", "config.assign_timeout=2,config.takeback_check_seconds=1",
    ]  # fmt: skip


def test_executor_runs_jobs_as_the_chart_account(
    install: Install,
    kube: Any,
    kube_namespace: Any,
    colonies: Any,
    chart_executor: ChartExecutor,
) -> None:
    suffix = os.urandom(4).hex()
    executor_type = f"kj-chart-{suffix}"
    name, prvkey = colonies.add_executor(f"kj-chart-{suffix}", executor_type)
    install(
        *_colonies_values(colonies, executor_type, name),
        "--set", f"executorKey.source=value,executorKey.prvkey={prvkey}",
    )  # fmt: skip
    secret = get(kube, kube_namespace.name, "secret", KEY_SECRET)
    chart_executor.start(
        {"executor_prvkey_file": base64.b64decode(secret["data"]["prvkey"]).decode()}
    )

    single = colonies.submit(spec(executor_type))["processid"]
    multi = colonies.submit(spec(executor_type, nodes=2))["processid"]  # Indexed Job + Service
    for pid in (single, multi):
        try:
            process = colonies.wait_state(pid, (SUCCESS, FAILED), WAIT)
        except Exception as err:
            raise AssertionError(f"{err}\nexecutor log:\n{chart_executor.log()}") from None
        assert process["state"] == SUCCESS, (process["errors"], chart_executor.log())

    def nothing_left() -> bool:
        out = kube_namespace.kubectl("get", "jobs,services", "-o", "name").stdout
        return out.strip() == ""

    until(nothing_left, "the executor to delete its Jobs and Services")
    # The start-up check may try to read the key Secret, which the chart does not
    # grant with a key of source `secret` (it says so at DEBUG); nothing else is refused.
    log = "\n".join(
        line
        for line in chart_executor.log().splitlines()
        if "kubejobs.executor.preflight: may not read Secret" not in line
    )
    assert "forbidden" not in log.lower(), log
    assert " 403" not in log, log


def test_self_registration_as_the_chart_account(
    install: Install,
    kube: Any,
    kube_namespace: Any,
    colonies: Any,
    chart_executor: ChartExecutor,
) -> None:
    suffix = os.urandom(4).hex()
    executor_type = f"kj-self-{suffix}"
    install(
        *_colonies_values(colonies, executor_type, f"kj-self-{suffix}"),
        "--set", "executorKey.source=generate",
        "--set", f"colonyKey.source=value,colonyKey.prvkey={colonies.colony_prvkey}",
    )  # fmt: skip
    colony_secret = get(kube, kube_namespace.name, "secret", "kj-kubejobs-colony-key")
    chart_executor.start(
        {"colony_prvkey_file": base64.b64decode(colony_secret["data"]["prvkey"]).decode()}
    )
    # The executor created its key Secret (create) and reads it back on restarts (get by name).
    stored = get(kube, kube_namespace.name, "secret", KEY_SECRET)
    assert len(base64.b64decode(stored["data"]["prvkey"]).decode().strip()) == 64
    pid = colonies.submit(spec(executor_type))["processid"]
    process = colonies.wait_state(pid, (SUCCESS, FAILED), WAIT)
    assert process["state"] == SUCCESS, (process["errors"], chart_executor.log())
    chart_executor.stop()
    chart_executor.start(
        {"colony_prvkey_file": base64.b64decode(colony_secret["data"]["prvkey"]).decode()}
    )
    again = colonies.wait_state(
        colonies.submit(spec(executor_type))["processid"], (SUCCESS, FAILED), WAIT
    )
    assert again["state"] == SUCCESS, (again["errors"], chart_executor.log())
    assert "generated an executor key" in chart_executor.log()  # once, on the first start
    assert chart_executor.log().count("generated an executor key") == 1
    assert "forbidden" not in chart_executor.log().lower()


# --- releases side by side, and upgrades of releases made with the shared names --------


def test_two_releases_in_one_namespace_install_and_each_runs_its_own_type(
    install: Install, kube: Any, kube_namespace: Any, colonies: Any, tmp_path: Path
) -> None:
    """A CPU pool beside a GPU pool, each self-registering with the colony key (the case that
    used to fail: one shipper ServiceAccount and one key Secret for every release)."""
    ns = kube_namespace.name
    suffix = os.urandom(4).hex()
    runners: dict[str, ChartExecutor] = {}
    try:
        for pool in ("cpu", "gpu"):
            install(
                *_colonies_values(colonies, f"kj-{pool}-{suffix}", f"e-{pool}-{suffix}"),
                "--set", "executorKey.source=generate",
                "--set", f"colonyKey.source=value,colonyKey.prvkey={colonies.colony_prvkey}",
                "--set", "config.extra_annotations.kwok\\.test/run=3s",
                release=pool,
            )  # fmt: skip
        for pool in ("cpu", "gpu"):
            folder = tmp_path / pool
            folder.mkdir()
            colony_key = get(kube, ns, "secret", f"{pool}-kubejobs-colony-key")["data"]["prvkey"]
            runners[pool] = ChartExecutor(kube, ns, folder, release=pool).start(
                {"colony_prvkey_file": base64.b64decode(colony_key).decode()}
            )
        pids = {pool: colonies.submit(spec(f"kj-{pool}-{suffix}"))["processid"] for pool in runners}
        for pool, pid in pids.items():
            # its Job runs as its release's shipper account with its release's key
            job = until(
                lambda pid=pid: [
                    j for j in get(kube, ns, "jobs")["items"]
                    if j["metadata"]["annotations"].get("kubejobs.io/process-id") == pid
                ],
                f"the {pool} Job",
            )[0]  # fmt: skip
            pod = job["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] == f"{pool}-kubejobs-log-shipper"
            keys = {
                e["valueFrom"]["secretKeyRef"]["name"]
                for c in pod.get("initContainers", []) + pod["containers"]
                for e in c.get("env", [])
                if e["name"] == "COLONIES_PRVKEY"
            }
            assert keys == {f"{pool}-kubejobs-executor-key"}, pod
        for pool, pid in pids.items():
            process = colonies.wait_state(pid, (SUCCESS, FAILED), WAIT)
            assert process["state"] == SUCCESS, (process["errors"], runners[pool].log())
            stored = get(kube, ns, "secret", f"{pool}-kubejobs-executor-key")
            assert stored["metadata"]["annotations"]["kubejobs.io/executor"] == f"e-{pool}-{suffix}"
            key = base64.b64decode(stored["data"]["prvkey"]).decode().strip()
            assert process["assignedexecutorid"] == key_id(key), pool
        assert key_id(_stored(kube, ns, "cpu")) != key_id(_stored(kube, ns, "gpu"))
        for runner in runners.values():
            assert "forbidden" not in runner.log().lower(), runner.log()
    finally:
        for runner in runners.values():
            runner.stop()


def _stored(kube: Any, ns: str, release: str) -> str:
    data = get(kube, ns, "secret", f"{release}-kubejobs-executor-key")["data"]["prvkey"]
    return base64.b64decode(data).decode().strip()


def test_upgrade_keeps_the_shared_names_of_a_release_made_before_release_scoped_names(
    install: Install, kube: Any, kube_namespace: Any
) -> None:
    """A release installed when every release used kubejobs-log-shipper and
    kubejobs-executor-key keeps them on `helm upgrade` (read from its settings): renaming
    the key would make a new executor, renaming the account would break running shippers."""
    ns = kube_namespace.name
    old = ["--set", "logShipper.serviceAccount.name=kubejobs-log-shipper",
           "--set", "executorKey.secretName=kubejobs-executor-key"]  # fmt: skip
    install("--set", f"executorKey.source=value,executorKey.prvkey={KEY}", *old)
    account_uid = get(kube, ns, "serviceaccount", "kubejobs-log-shipper")["metadata"]["uid"]
    key_uid = get(kube, ns, "secret", "kubejobs-executor-key")["metadata"]["uid"]

    install("--reset-values", "--set", f"executorKey.source=value,executorKey.prvkey={KEY}",
            command="upgrade")  # fmt: skip
    settings = json.loads(
        get(kube, ns, "configmap", "kj-kubejobs-settings")["data"]["settings.yaml"]
    )
    assert (settings["service_account"], settings["executor_key_secret"]) == (
        "kubejobs-log-shipper", "kubejobs-executor-key"
    )  # fmt: skip
    assert get(kube, ns, "serviceaccount", "kubejobs-log-shipper")["metadata"]["uid"] == account_uid
    assert get(kube, ns, "secret", "kubejobs-executor-key")["metadata"]["uid"] == key_uid
    assert can_i(kube, ns, EXECUTOR_SA, "get", "serviceaccounts/kubejobs-log-shipper", "-n", ns)
    assert can_i(kube, ns, "kubejobs-log-shipper", "get", "pods/log", "-n", ns)
    # the new names were not made
    assert kube.kubectl("-n", ns, "get", "serviceaccount", SHIPPER_SA, check=False).returncode
    assert kube.kubectl("-n", ns, "get", "secret", KEY_SECRET, check=False).returncode

    # A new release beside it gets release-scoped names and installs.
    install("--set", f"executorKey.source=value,executorKey.prvkey={KEY}", release="second")
    second = json.loads(
        get(kube, ns, "configmap", "second-kubejobs-settings")["data"]["settings.yaml"]
    )
    assert (second["service_account"], second["executor_key_secret"]) == (
        "second-kubejobs-log-shipper", "second-kubejobs-executor-key"
    )  # fmt: skip
