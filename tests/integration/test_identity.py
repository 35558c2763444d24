"""Who an executor is, against the real Colonies server and API server: its key, bound to it.

Executors run by hand here (subprocesses, as an operator runs `kubejobs executor`)
in one namespace, self-registering with the colony key. The key Secret records
its owner; an executor that finds another's key, or a key the server knows as
another executor, or whose registration the server refuses, is not ready
(/readyz 503 with the reason), takes no work, and retries until it is fixed.
Waits are bounded; nothing asserts on durations.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.colonies import generate_prvkey, key_id
from testenv.colonies import ColoniesRPCError, ColoniesServer
from tests.integration.polling import until
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun, spec

pytestmark = pytest.mark.integration

WAITING = 0
DEFAULT_SECRET = "kubejobs-executor-key"
OWNER_EXECUTOR = "kubejobs.io/executor"
OWNER_COLONY = "kubejobs.io/colony"

Start = Callable[..., ExecutorRun]


def by_hand(colonies: Any, kube: Any, namespace: Any, tmp_path: Path) -> Iterator[Start]:
    """start(name, type, wait_ready=True, **settings): an executor run by hand in `namespace`,
    self-registering with the colony key (no executor key: it keeps one in its key Secret)."""
    namespace.kubectl("create", "serviceaccount", "kubejobs-log-shipper")
    runs: list[ExecutorRun] = []

    def start(
        name: str, executor_type: str, wait_ready: bool = True, **settings: Any
    ) -> ExecutorRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEJOBS_")}
        env.update(
            {
                "KUBEJOBS_COLONIES_HOST": colonies.host,
                "KUBEJOBS_COLONIES_PORT": str(colonies.port),
                "KUBEJOBS_COLONY_NAME": colonies.colony_name,
                "KUBEJOBS_COLONY_PRVKEY": colonies.colony_prvkey,
                "KUBEJOBS_EXECUTOR_NAME": name,
                "KUBEJOBS_EXECUTOR_TYPE": executor_type,
                "KUBEJOBS_NAMESPACE": namespace.name,
                "KUBEJOBS_KUBECONFIG": str(kube.kubeconfig),
                "KUBEJOBS_ASSIGN_TIMEOUT": "2",
                "KUBEJOBS_TAKEBACK_CHECK_SECONDS": "1",
                "KUBEJOBS_HEALTH_HOST": "127.0.0.1",
                "KUBEJOBS_LOG_LEVEL": "DEBUG",
            }
        )
        env.update({f"KUBEJOBS_{k.upper()}": str(v) for k, v in settings.items()})
        run = ExecutorRun(
            colonies, namespace, name, executor_type, "", tmp_path / f"{name}.log", env
        )
        runs.append(run)
        return run.start(wait_ready)

    try:
        yield start
    finally:
        for run in runs:
            if run.proc and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(30)


@pytest.fixture
def hand(colonies: Any, kube: Any, kube_namespace: Any, tmp_path: Path) -> Iterator[Start]:
    yield from by_hand(colonies, kube, kube_namespace, tmp_path)


def not_ready_saying(run: ExecutorRun, *parts: str) -> str:
    """The /readyz body once it is 503 and names every part (the executor must keep running)."""

    def check() -> str:
        code, body = run.readyz()
        assert run.proc is not None and run.proc.poll() is None, run.log()
        return body if code == 503 and all(p in body for p in parts) else ""

    try:
        return str(until(check, f"/readyz 503 naming {parts}", 60))
    except AssertionError as err:
        raise AssertionError(f"{err}; /readyz: {run.readyz()}\nlog:\n{run.log()}") from None


def secret(namespace: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        namespace.kubectl("get", "secret", name, "-o", "json").stdout
    )
    return found


def stored_key(namespace: Any, name: str) -> str:
    return base64.b64decode(secret(namespace, name)["data"]["prvkey"]).decode().strip()


def executor_doc(colonies: Any, name: str) -> dict[str, Any] | None:
    """The executor as the server knows it (asked as the test's own executor), or None."""
    try:
        found: dict[str, Any] = colonies.rpc(
            {"msgtype": "getexecutormsg", "colonyname": colonies.colony_name, "executorname": name}
        )
    except ColoniesRPCError:
        return None
    return found


def make_secret(namespace: Any, name: str, prvkey: str) -> None:
    """A key Secret as an older kubejobs or an operator made it: no owner recorded."""
    namespace.kubectl("create", "secret", "generic", name, f"--from-literal=prvkey={prvkey}")


# --- two executors by hand, one default key Secret -------------------------------------


def test_second_executor_finding_the_firsts_key_is_not_ready_and_takes_no_work(
    hand: Start, colonies: Any, kube_namespace: Any
) -> None:
    sfx = os.urandom(3).hex()
    cpu_name, gpu_name = f"e-cpu-{sfx}", f"e-gpu-{sfx}"
    cpu_type, gpu_type = f"kj-cpu-{sfx}", f"kj-gpu-{sfx}"
    cpu = hand(cpu_name, cpu_type)
    stored = secret(kube_namespace, DEFAULT_SECRET)
    assert stored["metadata"]["annotations"][OWNER_EXECUTOR] == cpu_name
    assert stored["metadata"]["annotations"][OWNER_COLONY] == colonies.colony_name
    cpu_id = key_id(stored_key(kube_namespace, DEFAULT_SECRET))

    gpu = hand(gpu_name, gpu_type, wait_ready=False)
    body = not_ready_saying(gpu, f'Secret "{DEFAULT_SECRET}"', f'executor "{cpu_name}"')
    assert (
        f'Secret "{DEFAULT_SECRET}" in namespace "{kube_namespace.name}" holds the key of '
        f'executor "{cpu_name}" in colony "{colonies.colony_name}"'
    ) in body
    assert "set executor_key_secret" in body and "executorKey.secretName" in body
    assert "ERROR" in gpu.log() and f'holds the key of executor "{cpu_name}"' in gpu.log()

    gpu_pid = gpu.submit(spec(gpu_type))
    cpu_pid = cpu.submit(spec(cpu_type))
    done = cpu.wait_done(cpu_pid)
    assert done["state"] == SUCCESS and done["assignedexecutorid"] == cpu_id
    # the second never registered with the first's key, and took nothing meanwhile
    assert executor_doc(colonies, gpu_name) is None
    assert colonies.get_process(gpu_pid)["state"] == WAITING
    assert gpu.readyz()[0] == 503

    # The fix the message names: a key Secret of its own.
    assert gpu.stop() == 0
    gpu = hand(gpu_name, gpu_type, executor_key_secret=f"{DEFAULT_SECRET}-{gpu_name}")
    gpu_id = key_id(stored_key(kube_namespace, f"{DEFAULT_SECRET}-{gpu_name}"))
    assert gpu_id != cpu_id
    done = gpu.wait_done(gpu_pid)
    assert done["state"] == SUCCESS and done["assignedexecutorid"] == gpu_id
    assert (executor_doc(colonies, gpu_name) or {}).get("executorid") == gpu_id
    assert (executor_doc(colonies, cpu_name) or {}).get("executorid") == cpu_id


# --- a key Secret that records no owner ----------------------------------------------


def test_unowned_secret_of_a_running_executor_is_adopted_keeping_its_identity_and_work(
    hand: Start, colonies: Any, kube_namespace: Any
) -> None:
    """An older kubejobs' generated Secret (no annotations): the executor keeps that key, so
    it is the same executor, and its RUNNING process is neither requeued nor run twice."""
    sfx = os.urandom(3).hex()
    name, executor_type = f"e-old-{sfx}", f"kj-old-{sfx}"
    key = generate_prvkey()
    make_secret(kube_namespace, DEFAULT_SECRET, key)
    colonies.add_executor(name, executor_type, prvkey=key)  # what the older kubejobs did
    pid = colonies.submit(spec(executor_type))["processid"]
    assigned = colonies.assign(prvkey=key)  # it took the process, then was upgraded
    assert assigned["processid"] == pid
    started = colonies.get_process(pid)["starttime"]

    run = hand(name, executor_type)
    annotations = secret(kube_namespace, DEFAULT_SECRET)["metadata"]["annotations"]
    assert (annotations[OWNER_EXECUTOR], annotations[OWNER_COLONY]) == (
        name,
        colonies.colony_name,
    )
    assert stored_key(kube_namespace, DEFAULT_SECRET) == key
    done = run.wait_done(pid)
    assert done["state"] == SUCCESS, done["errors"]
    assert (done["assignedexecutorid"], done["retries"], done["starttime"]) == (
        key_id(key),
        0,
        started,
    )
    assert "registered and approved already" in run.log()
    assert "adopted as executor" in run.log()


def test_unowned_secret_whose_key_the_server_knows_as_another_executor_is_refused(
    hand: Start, colonies: Any, kube_namespace: Any
) -> None:
    sfx = os.urandom(3).hex()
    other, other_type = f"e-other-{sfx}", f"kj-other-{sfx}"
    key = generate_prvkey()
    colonies.add_executor(other, other_type, prvkey=key)
    make_secret(kube_namespace, DEFAULT_SECRET, key)

    run = hand(f"e-new-{sfx}", f"kj-new-{sfx}", wait_ready=False)
    body = not_ready_saying(run, "is already executor")
    assert (
        f"this executor's key (executor id {key_id(key)}) is already executor "
        f'"{other}" (type {other_type}) in colony "{colonies.colony_name}"'
    ) in body
    assert f'Its key is in Secret "{DEFAULT_SECRET}"' in body
    # not adopted, not registered under the second name
    assert not secret(kube_namespace, DEFAULT_SECRET)["metadata"].get("annotations")
    assert executor_doc(colonies, f"e-new-{sfx}") is None
    assert (executor_doc(colonies, other) or {})["state"] == 1


# --- the server refuses a registration step ------------------------------------------


@pytest.fixture(scope="module")
def strict_colonies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColoniesServer]:
    """A real Colonies server that refuses to add an executor whose name exists (the
    default of the server; the session's server allows re-registration)."""
    server = ColoniesServer(
        tmp_path_factory.mktemp("colonies-strict"),
        server_env={"COLONIES_ALLOW_EXECUTOR_REREGISTER": "false"},
    )
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def test_server_refusal_keeps_it_not_ready_with_the_message_until_fixed(
    strict_colonies: ColoniesServer, kube: Any, kube_namespace: Any, tmp_path: Path
) -> None:
    colonies = strict_colonies
    sfx = os.urandom(3).hex()
    name, executor_type = f"e-taken-{sfx}", f"kj-taken-{sfx}"
    _, old_key = colonies.add_executor(name, executor_type)  # the name, with another key
    starts = by_hand(colonies, kube, kube_namespace, tmp_path)
    hand = next(starts)
    try:
        run = hand(name, executor_type, wait_ready=False)
        body = not_ready_saying(run, "refused to add executor")
        server_says = (
            f"Executor with name <{name}> in Colony <{colonies.colony_name}> already exists"
        )
        assert server_says in body, body
        key = stored_key(kube_namespace, DEFAULT_SECRET)
        assert "registered with another key" in body
        assert f"colonies executor chid --executorid {key_id(key)}" in body
        assert "continuing" not in run.log() and "ERROR" in run.log()
        pid = run.submit(spec(executor_type))
        assert colonies.get_process(pid)["state"] == WAITING

        # Fixed on the server as the message says: the old key moves the registration to
        # this executor's key. It finds itself registered on its next attempt, without a
        # restart, and takes the work.
        colonies.rpc(
            {"msgtype": "changeexecutoridmsg", "colonyname": colonies.colony_name,
             "executorid": key_id(key)},
            old_key,
        )  # fmt: skip
        until(run.ready, f"ready after the fix:\n{run.log()}", 90)
        done = run.wait_done(pid)
        assert done["state"] == SUCCESS and done["assignedexecutorid"] == key_id(key)
        assert run.proc is not None and run.proc.poll() is None
        # Found registered: at the start of an attempt ("approved already"), or, when the fix
        # lands between that attempt's first look (still another key's: 403) and its add
        # ("already exists"), by the add's second look, after which it approves and
        # registers the function again (harmless; seen under load).
        log = run.log()
        assert "registered and approved already" in log or (
            f"approved executor {name} in colony" in log
        ), log
        assert "added executor" not in log, log  # never added again under that name
    finally:
        starts.close()


# --- a key Secret with another executor's key, with an explicit executor key ---------


def test_explicit_key_with_a_key_secret_holding_another_key_is_not_ready(
    hand: Start, colonies: Any, kube_namespace: Any
) -> None:
    """The log shippers of its Jobs would sign with the Secret's key: not this executor's."""
    sfx = os.urandom(3).hex()
    name, prvkey = colonies.add_executor(f"e-explicit-{sfx}", f"kj-explicit-{sfx}")
    other = generate_prvkey()
    make_secret(kube_namespace, DEFAULT_SECRET, other)
    run = hand(
        name, f"kj-explicit-{sfx}", wait_ready=False, executor_prvkey=prvkey, colony_prvkey=""
    )
    body = not_ready_saying(run, f'Secret "{DEFAULT_SECRET}"', "holds the key of executor id")
    assert f"executor id {key_id(other)}, not this executor's ({key_id(prvkey)})" in body


# --- rotating the key ------------------------------------------------------------------


def test_key_rotation_after_draining_keeps_the_name_and_retires_the_old_key(
    hand: Start, colonies: Any, kube_namespace: Any
) -> None:
    """docs/production.md, "Rotating the key", on a server that allows re-registration:
    drained (nothing in flight), stopped, key Secret deleted, started again."""
    sfx = os.urandom(3).hex()
    name, executor_type = f"e-rot-{sfx}", f"kj-rot-{sfx}"
    run = hand(name, executor_type)
    old_key = stored_key(kube_namespace, DEFAULT_SECRET)
    first = run.wait_done(run.submit(spec(executor_type)))
    assert first["state"] == SUCCESS and first["assignedexecutorid"] == key_id(old_key)
    run.wait_no_jobs()  # drained

    assert run.stop() == 0
    kube_namespace.kubectl("delete", "secret", DEFAULT_SECRET)
    run = hand(name, executor_type)
    new_key = stored_key(kube_namespace, DEFAULT_SECRET)
    assert new_key != old_key
    assert (executor_doc(colonies, name) or {}).get("executorid") == key_id(new_key)
    second = run.wait_done(run.submit(spec(executor_type)))
    assert second["state"] == SUCCESS and second["assignedexecutorid"] == key_id(new_key)
    # The old key is no executor any more: the server refuses its requests.
    with pytest.raises(ColoniesRPCError):
        colonies.assign(timeout=1, prvkey=old_key)
    with pytest.raises(ColoniesRPCError):
        colonies.submit(spec(executor_type), prvkey=old_key)


def test_key_rotation_on_a_server_refusing_re_registration_moves_the_registration(
    strict_colonies: ColoniesServer, kube: Any, kube_namespace: Any, tmp_path: Path
) -> None:
    """docs/production.md, "Rotating the key", on a server that refuses re-registration: the
    old key moves the registration to the new key (`colonies executor chid`), the new key goes
    into the Secret, and the executor, started again, is the same executor under a new id."""
    colonies = strict_colonies
    sfx = os.urandom(3).hex()
    name, executor_type = f"e-chid-{sfx}", f"kj-chid-{sfx}"
    starts = by_hand(colonies, kube, kube_namespace, tmp_path)
    hand = next(starts)
    try:
        run = hand(name, executor_type)
        old_key = stored_key(kube_namespace, DEFAULT_SECRET)
        assert run.wait_done(run.submit(spec(executor_type)))["state"] == SUCCESS
        run.wait_no_jobs()  # drained
        assert run.stop() == 0

        new_key = generate_prvkey()
        colonies.rpc(
            {"msgtype": "changeexecutoridmsg", "colonyname": colonies.colony_name,
             "executorid": key_id(new_key)},
            old_key,
        )  # fmt: skip
        encoded = base64.b64encode(new_key.encode()).decode()
        kube_namespace.kubectl(
            "patch", "secret", DEFAULT_SECRET, "--type=merge", "-p",
            json.dumps({"data": {"prvkey": encoded}}),
        )  # fmt: skip
        run = hand(name, executor_type)
        assert "registered and approved already" in run.log()
        done = run.wait_done(run.submit(spec(executor_type)))
        assert done["state"] == SUCCESS and done["assignedexecutorid"] == key_id(new_key)
        with pytest.raises(ColoniesRPCError):
            colonies.assign(timeout=1, prvkey=old_key)
    finally:
        starts.close()
