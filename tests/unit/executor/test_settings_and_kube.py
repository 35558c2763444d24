"""Executor settings from the environment, and the kube adapter's reading of API answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubejobs.adapters.kube import KubeError, KubeUnavailable, WatchExpired, _decode, _watch_event
from kubejobs.errors import SettingsError
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.settings import load_settings

KEY = "a" * 64


def test_settings_from_env_and_keys_never_in_repr() -> None:
    env = {
        "KUBEJOBS_COLONY_NAME": "c",
        "KUBEJOBS_EXECUTOR_NAME": "e",
        "KUBEJOBS_EXECUTOR_PRVKEY": KEY,
        "KUBEJOBS_MAX_JOBS": "7",
        "KUBEJOBS_CAPACITY_CPU": "8",
        "KUBEJOBS_EXTRA_ANNOTATIONS": '{"a": "b"}',
    }
    settings = load_settings(ExecutorSettings, None, env, {"concurrency": 3})
    settings.required()
    assert settings.max_jobs == 7 and settings.concurrency == 3
    assert str(settings.cpu_limit) == "8" and settings.mem_limit is None
    assert settings.executor_key() == KEY and KEY not in repr(settings)


def test_key_from_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    settings = ExecutorSettings(colony_name="c", executor_name="e", colony_prvkey_file=str(path))
    settings.required()
    assert settings.colony_key() == KEY and settings.executor_key() == ""


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "--colony-name"),
        ({"colony_name": "c", "executor_name": "e"}, "needs a key"),
    ],
)
def test_missing_settings_are_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ExecutorSettings(**overrides).required()


def test_bad_capacity_is_refused() -> None:
    with pytest.raises(SettingsError, match="capacity_mem"):
        ExecutorSettings(capacity_mem="1 GB")


def test_api_answers_map_to_errors() -> None:
    assert _decode(200, b'{"kind": "Job"}', "x") == {"kind": "Job"}
    with pytest.raises(KubeUnavailable):
        _decode(503, b'{"message": "etcd down"}', "x")
    with pytest.raises(KubeUnavailable):
        _decode(429, b"", "x")
    with pytest.raises(WatchExpired):
        _decode(410, b'{"message": "too old"}', "x")
    with pytest.raises(KubeError) as caught:
        _decode(422, b'{"message": "Job.batch is invalid", "reason": "Invalid"}', "apply")
    assert not isinstance(caught.value, KubeUnavailable)
    assert caught.value.status == 422 and "Job.batch is invalid" in str(caught.value)


def test_watch_error_event_410_means_list_again() -> None:
    with pytest.raises(WatchExpired):
        _watch_event({"type": "ERROR", "object": {"code": 410, "message": "too old"}})
    event = {"type": "ADDED", "object": {"metadata": {"name": "j"}}}
    assert _watch_event(event) is event
