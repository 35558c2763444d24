from __future__ import annotations

from pathlib import Path

import pytest

from kubejobs.errors import SettingsError
from kubejobs.render import RenderSettings
from kubejobs.settings import load_settings, thaw


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "kubejobs.yaml"
    config.write_text("kube-version: '1.30'\nnamespace: from-file\ngpu_resource: amd.com/gpu\n")
    env = {"KUBEJOBS_NAMESPACE": "from-env", "KUBEJOBS_KUBE_VERSION": "1.31"}
    settings = load_settings(
        RenderSettings, str(config), env, {"kube_version": "1.32", "namespace": None}
    )
    assert settings.kube_version == "1.32"
    assert settings.namespace == "from-env"
    assert settings.gpu_resource == "amd.com/gpu"
    assert settings.ttl_seconds_after_finished == 3600


def test_env_values_are_typed() -> None:
    env = {
        "KUBEJOBS_COLONIES_PORT": "443",
        "KUBEJOBS_COLONIES_TLS": "true",
        "KUBEJOBS_IMAGE_PULL_SECRETS": "a, b",
        "KUBEJOBS_NODE_SELECTOR": '{"pool": "batch"}',
        "KUBEJOBS_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]',
    }
    settings = load_settings(RenderSettings, None, env)
    assert settings.colonies_port == 443 and settings.colonies_tls is True
    assert settings.image_pull_secrets == ("a", "b")
    assert thaw(settings.node_selector) == {"pool": "batch"}
    assert thaw(settings.tolerations) == [{"key": "gpu", "operator": "Exists"}]


def test_settings_are_frozen() -> None:
    settings = load_settings(RenderSettings, None, {"KUBEJOBS_NODE_SELECTOR": '{"a": "b"}'})
    with pytest.raises(AttributeError):
        settings.namespace = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.node_selector["c"] = "d"  # type: ignore[index]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KUBEJOBS_COLONIES_PORT": "http"},
            "KUBEJOBS_COLONIES_PORT: expected an integer, got 'http'",
        ),
        (
            {"KUBEJOBS_COLONIES_TLS": "maybe"},
            "KUBEJOBS_COLONIES_TLS: expected true or false, got 'maybe'",
        ),
        (
            {"KUBEJOBS_NODE_SELECTOR": "pool=batch"},
            "KUBEJOBS_NODE_SELECTOR: expected JSON, got 'pool=batch'",
        ),
        ({"KUBEJOBS_KUBE_VERSION": "latest"}, "kube_version: 'latest' is not a Kubernetes version"),
    ],
)
def test_bad_env_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(RenderSettings, None, env)


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("namespce: x\n")
    with pytest.raises(SettingsError, match=f"{config}: unknown setting 'namespce'"):
        load_settings(RenderSettings, str(config), {})


def test_wrong_type_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tolerations: {key: x}\n")
    with pytest.raises(SettingsError, match=f"{config}: tolerations: expected"):
        load_settings(RenderSettings, str(config), {})


def test_restricted_pods_and_host_network_are_refused_together() -> None:
    from kubejobs.errors import SettingsError
    from kubejobs.render.settings import RenderSettings

    with pytest.raises(SettingsError, match="restricted_pods and host_network cannot be combined"):
        RenderSettings(restricted_pods=True, host_network=True)
