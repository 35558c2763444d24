"""Smoke tests: helm and kubeconform are installed and work offline."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.integration


def test_helm_version(helm):
    res = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("v3.")


def test_helm_template_renders_a_chart(helm, tmp_path):
    chart = tmp_path / "demo"
    subprocess.run([helm, "create", str(chart)], capture_output=True, text=True, check=True)
    res = subprocess.run(
        [helm, "template", "demo", str(chart)], capture_output=True, text=True, check=True
    )
    assert "kind: Deployment" in res.stdout


@pytest.mark.parametrize("version", ["1.29.0", "1.34.0"])
def test_kubeconform_validates_offline(kubeconform, tmp_path, version):
    good = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "x"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "busybox"}],
                }
            }
        },
    }
    bad = json.loads(json.dumps(good))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    ok = kubeconform.run(str(tmp_path / "good.json"), kubernetes_version=version)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["summary"]["valid"] == 1
    ko = kubeconform.run(str(tmp_path / "bad.json"), kubernetes_version=version)
    assert ko.returncode == 1, ko.stdout + ko.stderr
    assert "imagePullPolicyy" in ko.stdout


def test_kubeconform_knows_native_sidecars_only_from_1_29(kubeconform, tmp_path):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {
            "initContainers": [{"name": "s", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "m", "image": "busybox"}],
        },
    }
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    assert kubeconform.run(str(tmp_path / "pod.json"), kubernetes_version="1.29.0").returncode == 0
