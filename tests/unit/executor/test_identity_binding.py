"""The executor's identity bound to its key, with fakes for speed (no servers).

The same behaviours cross the server boundary in tests/integration/test_identity.py.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest

from kubejobs.adapters.colonies import ColoniesError, generate_prvkey, key_id
from kubejobs.adapters.kube import KubeError
from kubejobs.executor import identity
from kubejobs.executor.identity import Stopped, establish
from kubejobs.executor.preflight import problems
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.render import Renderer, RenderSettings

COLONY_KEY = generate_prvkey()
NS = "jobs"


class Kube:
    """One namespace's Secrets; records patches."""

    def __init__(self, secrets: dict[str, dict[str, Any]] | None = None) -> None:
        self.secrets = secrets or {}
        self.patches: list[Any] = []
        self.patch_error: KubeError | None = None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "Secret"
        return self.secrets.get(name)

    def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        key = base64.b64encode(obj["stringData"]["prvkey"].encode()).decode()
        self.secrets[name] = {"metadata": obj["metadata"], "data": {"prvkey": key}}
        return obj

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Any) -> Any:
        assert kind == "Secret"
        if self.patch_error:
            raise self.patch_error
        self.patches.append(("PATCH", name, patch))
        self.secrets[name]["metadata"].setdefault("annotations", {}).update(
            patch["metadata"]["annotations"]
        )
        return {}


class Colonies:
    """The server as both keys see it: the colony's executors, and the calls made."""

    def __init__(self) -> None:
        self.executors: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.refuse: dict[str, ColoniesError] = {}

    def client(self, prvkey: str) -> Client:
        return Client(self, prvkey)


class Client:
    def __init__(self, server: Colonies, prvkey: str) -> None:
        self.server, self.id = server, key_id(prvkey)

    def close_session(self) -> None:
        pass

    def _call(self, what: str) -> None:
        self.server.calls.append(what)
        if what in self.server.refuse:
            raise self.server.refuse.pop(what)

    def get_executors(self, colony: str) -> list[dict[str, Any]]:
        self._call("list")
        if not any(e["executorid"] == self.id for e in self.server.executors):
            raise ColoniesError("Access denied, not a member of Colony with name <c>", 403)
        return [dict(e) for e in self.server.executors]

    def add_executor(self, doc: dict[str, Any]) -> None:
        self._call("add")
        self.server.executors = [
            e for e in self.server.executors if e["executorname"] != doc["executorname"]
        ]
        self.server.executors.append({**doc, "state": 0})

    def approve_executor(self, colony: str, name: str) -> None:
        self._call("approve")
        for e in self.server.executors:
            if e["executorname"] == name:
                e["state"] = 1

    def add_function(self, colony: str, name: str, funcname: str) -> None:
        self._call("function")


def settings(name: str = "e-cpu", **extra: Any) -> ExecutorSettings:
    return ExecutorSettings(colony_name="c", executor_name=name, colony_prvkey=COLONY_KEY, **extra)


def run(
    kube: Kube, server: Colonies, s: ExecutorSettings | None = None
) -> tuple[identity.Identity | None, list[list[str]]]:
    """establish(); stops at the first problem it reports (the retry is tested separately)."""
    stop = threading.Event()
    reports: list[list[str]] = []

    def report(found: list[str]) -> None:
        reports.append(found)
        if found:
            stop.set()

    try:
        got = establish(s or settings(), kube, NS, server.client, stop, report)  # type: ignore[arg-type]
    except Stopped:
        return None, reports
    return got, reports


def stored(kube: Kube, name: str = "kubejobs-executor-key") -> str:
    return base64.b64decode(kube.secrets[name]["data"]["prvkey"]).decode()


def test_generated_key_secret_records_its_owner_and_registers() -> None:
    kube, server = Kube(), Colonies()
    got, reports = run(kube, server)
    assert got is not None and reports == [[]]
    meta = kube.secrets["kubejobs-executor-key"]["metadata"]
    assert meta["annotations"] == {"kubejobs.io/colony": "c", "kubejobs.io/executor": "e-cpu"}
    assert got.executor_id == key_id(stored(kube))
    assert server.calls == ["list", "add", "approve", "function"]


def test_another_executors_key_is_refused_naming_secret_owner_and_setting() -> None:
    kube, server = Kube(), Colonies()
    run(kube, server)
    server.calls.clear()
    got, reports = run(kube, server, settings("e-gpu"))
    assert got is None
    (problem,) = reports[-1]
    assert (
        'Secret "kubejobs-executor-key" in namespace "jobs" holds the key of executor "e-cpu"'
        in problem
    )
    assert "executor_key_secret" in problem and "executorKey.secretName" in problem
    assert server.calls == []  # nothing registered with the other's key


def test_approved_executor_is_not_added_or_approved_again() -> None:
    kube, server = Kube(), Colonies()
    run(kube, server)
    server.calls.clear()
    got, _ = run(kube, server)
    assert got is not None and server.calls == ["list"]


def test_pending_executor_is_approved_not_added() -> None:
    kube, server = Kube(), Colonies()
    run(kube, server)
    server.executors[0]["state"] = 0
    server.calls.clear()
    run(kube, server)
    assert server.calls == ["list", "approve", "function"]


def test_rejected_executor_is_not_ready() -> None:
    kube, server = Kube(), Colonies()
    run(kube, server)
    server.executors[0]["state"] = 2
    got, reports = run(kube, server)
    assert got is None and 'executor "e-cpu" was rejected' in reports[-1][0]


@pytest.mark.parametrize("step", ["add", "approve", "function"])
def test_a_refused_step_is_not_ready_with_the_servers_message(step: str) -> None:
    kube, server = Kube(), Colonies()
    server.refuse[step] = ColoniesError(f"the server says no to {step}", 400)
    got, reports = run(kube, server)
    assert got is None
    assert f"the server says no to {step}" in reports[-1][0]
    assert "refused" in reports[-1][0]


def test_retries_until_the_refusal_is_fixed_and_never_adds_an_approved_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(identity, "RETRY_FIRST", 0.01)
    kube, server = Kube(), Colonies()
    server.refuse["function"] = ColoniesError("busy", 400)
    reports: list[list[str]] = []
    got = establish(settings(), kube, NS, server.client, threading.Event(), reports.append)  # type: ignore[arg-type]
    assert got.executor_id == key_id(stored(kube))
    assert reports[0] and reports[-1] == []
    # the second attempt found it approved: only the function was registered again
    assert server.calls == ["list", "add", "approve", "function", "list", "function"]


def test_unowned_secret_is_adopted_with_its_key() -> None:
    key = generate_prvkey()
    secret = {
        "metadata": {"name": "kubejobs-executor-key", "resourceVersion": "7"},
        "data": {"prvkey": base64.b64encode(key.encode()).decode()},
    }
    kube, server = Kube({"kubejobs-executor-key": secret}), Colonies()
    got, _ = run(kube, server)
    assert got is not None and got.executor_id == key_id(key)
    ((method, _path, body),) = kube.patches
    assert method == "PATCH" and body["metadata"]["resourceVersion"] == "7"
    assert body["metadata"]["annotations"]["kubejobs.io/executor"] == "e-cpu"


def test_unowned_secret_whose_key_is_another_executor_is_refused_and_not_adopted() -> None:
    key = generate_prvkey()
    secret = {
        "metadata": {"name": "kubejobs-executor-key"},
        "data": {"prvkey": base64.b64encode(key.encode()).decode()},
    }
    kube, server = Kube({"kubejobs-executor-key": secret}), Colonies()
    server.executors.append(
        {"executorid": key_id(key), "executorname": "e-other", "executortype": "t", "state": 1}
    )
    got, reports = run(kube, server)
    assert got is None
    assert 'is already executor "e-other" (type t)' in reports[-1][0]
    assert kube.patches == [] and server.calls == ["list"]


def test_adoption_conflict_is_read_again() -> None:
    key = generate_prvkey()
    secret = {
        "metadata": {"name": "kubejobs-executor-key"},
        "data": {"prvkey": base64.b64encode(key.encode()).decode()},
    }
    kube, server = Kube({"kubejobs-executor-key": secret}), Colonies()
    kube.patch_error = KubeError("conflict", 409)
    got, reports = run(kube, server)
    assert got is None and "changed while this executor adopted it" in reports[-1][0]


def test_preflight_refuses_a_key_secret_with_another_key() -> None:
    mine, other = generate_prvkey(), generate_prvkey()

    class Objects:
        def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            if kind == "Secret":
                return {"data": {"prvkey": base64.b64encode(other.encode()).decode()}}
            return {} if kind == "ServiceAccount" else None

    renderer = Renderer(RenderSettings())
    (problem,) = problems(Objects(), NS, renderer, key_id(mine))  # type: ignore[arg-type]
    assert f"holds the key of executor id {key_id(other)}, not this executor's" in problem
    assert problems(Objects(), NS, renderer, key_id(other)) == []  # type: ignore[arg-type]
