"""kubejobs' Colonies clients against the real Colonies v1.9.7 server (PostgreSQL), for every
server behaviour kubejobs depends on: reply shapes and units, who may close, the background
timeout and stale-executor loops, re-registration, long polls, signatures, the getprocesses
cap, log paging and the CFS label and snapshot queries.

Each test uses an executor type of its own, so the session's colony is shared safely.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.cfs import CfsClient, CfsError
from kubejobs.adapters.colonies import (
    ColoniesClient,
    ColoniesError,
    executor_document,
    generate_prvkey,
    key_id,
    sign,
)
from testenv.colonies import ColoniesRPCError, ColoniesServer
from tests.integration.polling import until

pytestmark = pytest.mark.integration

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
ZERO = "0001-01-01T00:00:00Z"


class Executor:
    """An approved executor of a fresh type, and a kubejobs client with its key."""

    def __init__(self, colonies: ColoniesServer, name: str | None = None) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.colonies = colonies
        self.type = f"real-{suffix}"
        self.name, self.prvkey = colonies.add_executor(name or f"real-{suffix}", self.type)
        self.id = key_id(self.prvkey)
        self.client = ColoniesClient(colonies.host, colonies.port, self.prvkey, timeout=10)

    def submit(self, **spec: Any) -> str:
        conditions = {"executortype": self.type, **spec.pop("conditions", {})}
        doc = {"funcname": "execute", "conditions": conditions, **spec}
        return str(self.colonies.submit(doc, self.prvkey)["processid"])

    def close(self) -> None:
        self.client.close_session()


@pytest.fixture
def executor(colonies: ColoniesServer) -> Iterator[Callable[..., Executor]]:
    made: list[Executor] = []

    def make(name: str | None = None) -> Executor:
        made.append(Executor(colonies, name))
        return made[-1]

    yield make
    for e in made:
        e.close()


def test_assign_reply_has_the_server_shape_and_no_work_is_none(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex = executor()
    assert ex.client.assign(colonies.colony_name, 1) is None
    pid = ex.submit(conditions={"cpu": "2", "mem": "1Gi"}, args=[1.0], env={"A": "1"})
    process = ex.client.assign(colonies.colony_name, 5, "1000m", "4194304Ki")
    assert process is not None and process["processid"] == pid
    spec = process["spec"]
    assert (spec["conditions"]["cpu"], spec["conditions"]["mem"]) == ("0m", "1024Mi")
    assert spec["args"] == [1] and spec["env"] == {"A": "1"} and "channels" not in spec
    assert process["state"] == RUNNING and process["assignedexecutorid"] == ex.id
    assert ex.client.get_logs(colonies.colony_name, pid) == []  # null on the wire
    ex.client.close(pid, [])
    assert ex.client.get_process(pid)["out"] == []


def test_only_the_assigned_executor_may_close_and_statuses_come_through(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex, other = executor(), executor()
    pid = ex.submit()
    with pytest.raises(ColoniesError) as err:
        other.client.close(pid, [])
    assert (err.value.status, str(err.value)) == (
        403,
        "Failed to close process as successful, process is not assigned",
    )
    assert ex.client.assign(colonies.colony_name, 5) is not None
    with pytest.raises(ColoniesError) as err:
        other.client.fail(pid, ["no"])
    assert err.value.status == 403 and "not allowed to close process as failed" in str(err.value)
    ex.client.fail(pid, ["exit 3"])
    with pytest.raises(ColoniesError, match="Tried to set failed process as successful"):
        ex.client.close(pid, [])


def test_timeout_loop_takes_back_and_fails_at_maxretries(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex = executor()
    pid = ex.submit(maxexectime=1, maxretries=1, maxwaittime=-1)
    first = ex.client.assign(colonies.colony_name, 5)
    assert first is not None
    back = until(
        lambda: (p := ex.client.get_process(pid))["state"] == WAITING and p, "the take-back"
    )
    assert back["retries"] == 1 and back["assignedexecutorid"] == ""
    assert back["starttime"] == first["starttime"] and back["endtime"] != ZERO
    with pytest.raises(ColoniesError, match="process is not assigned"):
        ex.client.close(pid, [])  # what the executor's report sees after a take-back
    assert ex.client.assign(colonies.colony_name, 5) is not None
    # the server stores the state, then the errors (no transaction): wait for both
    failed = until(
        lambda: (p := ex.client.get_process(pid))["state"] == FAILED and p["errors"] and p,
        "the failure and its errors",
    )
    assert failed["errors"] == ["Maximum execution time limit exceeded"]
    assert failed["assignedexecutorid"] == ex.id  # MarkFailed keeps the assignment


def test_reregistering_a_running_executor_requeues_its_processes(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    """The session's server allows re-registration, like COLONIES_ALLOW_EXECUTOR_REREGISTER."""
    ex = executor()
    pid = ex.submit()
    assert ex.client.assign(colonies.colony_name, 5) is not None
    colonies.add_executor(ex.name, ex.type, ex.prvkey)  # add (unregisters first) + approve
    process = ex.client.get_process(pid)
    assert (process["state"], process["assignedexecutorid"], process["retries"]) == (
        WAITING,
        "",
        0,
    )


def test_a_submit_ends_a_waiting_assign(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex = executor()
    got: list[Any] = []
    poll = threading.Thread(target=lambda: got.append(ex.client.assign(colonies.colony_name, 10)))
    poll.start()
    time.sleep(0.5)
    started = time.monotonic()
    pid = ex.submit()
    poll.join(15)
    assert got and got[0]["processid"] == pid
    assert time.monotonic() - started < 5


def post(colonies: ColoniesServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"{colonies.url}/api", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as err:
        with err:
            status, raw = err.code, err.read()
    envelope = json.loads(raw)
    return status, json.loads(base64.b64decode(envelope["payload"]))


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def high_s(signature: str) -> str:
    """The same signature with s in the upper half (r || n-s || v^1): valid math, refused."""
    raw = bytes.fromhex(signature)
    s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
    return (raw[:32] + s.to_bytes(32, "big") + bytes([raw[64] ^ 1])).hex()


def test_high_s_signatures_and_unknown_messages_are_refused(colonies: ColoniesServer) -> None:
    msg = {"msgtype": "getprocessmsg", "processid": "nope"}
    payload = base64.b64encode(json.dumps(msg).encode()).decode()
    body = {"payloadtype": msg["msgtype"], "payload": payload}
    high = high_s(sign(payload, colonies.executor_prvkey))
    assert post(colonies, {**body, "signature": high}) == (
        403,
        {
            "status": 403,
            "message": "Failed verify signature: Signature s value is over half the order",
        },
    )
    low = sign(payload, colonies.executor_prvkey)
    assert post(colonies, {**body, "signature": low})[0] == 404
    # the stand-in answered a known type with a mismatched payload like an unknown one (403)
    mismatch = {**body, "payloadtype": "getcronsmsg", "signature": low}
    assert post(colonies, mismatch) == (
        400,
        {"status": 400, "message": "Failed to get crons, msg.MsgType does not match payloadType"},
    )
    unknown = {**body, "payloadtype": "nosuchmsg", "signature": low}
    assert post(colonies, unknown) == (
        403,
        {"status": 403, "message": "invalid rpcMsg.PayloadType: nosuchmsg"},
    )


def test_cfs_client_label_and_snapshot_quirks(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex = executor()
    cfs = CfsClient(ex.client, colonies.colony_name)
    base = f"/real/{uuid.uuid4().hex[:8]}"

    def add(label: str, name: str) -> str:
        file = {"colonyname": colonies.colony_name, "label": label, "name": name, "size": 0}
        reply = ex.client.rpc({"msgtype": "addfilemsg", "file": file})
        return str(reply["fileid"])

    add(f"{base}/data/sub", "a.txt")
    add(f"{base}/database", "b.txt")
    assert cfs.labels_under(f"{base}/data") == [f"{base}/data/sub"]
    assert cfs.labels_under(f"{base}/none") == []
    empty = cfs.create_snapshot(f"{base}/data", f"s-{uuid.uuid4().hex[:6]}")
    assert empty.fileids == ()  # the label itself holds no files: nothing recorded
    top = add(f"{base}/data", "top.txt")
    snap = cfs.create_snapshot(f"{base}/data/", f"s-{uuid.uuid4().hex[:6]}")
    assert snap.label == f"{base}/data" and top in snap.fileids and len(snap.fileids) == 2
    assert cfs.snapshot(snap.snapshotid).fileids == snap.fileids
    with pytest.raises(ColoniesError, match="already exists"):
        cfs.create_snapshot(f"{base}/data", snap.name)
    with pytest.raises(CfsError, match="not found"):
        cfs.snapshot("0" * 64)
    cfs.remove_snapshot(snap.snapshotid)
    cfs.remove_snapshot(snap.snapshotid)  # again: the server does not mind
    assert cfs.file_by_id(top).name == "top.txt"


def test_stale_executors_are_unregistered_and_their_processes_requeued(
    tmp_path: Path,
) -> None:
    """cleanupStaleExecutors, with the durations shortened through the server's environment."""
    server = ColoniesServer(tmp_path)
    assert server.service.env is not None
    server.service.env.update(
        {"COLONIES_STALE_EXECUTOR_DURATION": "2", "COLONIES_CLEANUP_INTERVAL": "1"}
    )
    server.start()
    try:
        _, quiet_key = server.add_executor("quiet", "stale")  # never assigns: never stale
        name, key = server.add_executor("busy", "stale")
        client = ColoniesClient(server.host, server.port, key, timeout=10)
        pid = str(
            server.submit({"funcname": "f", "conditions": {"executortype": "stale"}}, key)[
                "processid"
            ]
        )
        assert client.assign(server.colony_name, 5) is not None
        # reading is no sign of life: only assign moves lastheardfromtime
        until(lambda: server.get_process(pid)["state"] == WAITING, "the stale executor's process")
        with pytest.raises(ColoniesError, match="not a member") as err:
            client.get_process(pid)
        assert err.value.status == 403
        executor = server.rpc(
            {"msgtype": "getexecutormsg", "colonyname": server.colony_name, "executorname": name},
            quiet_key,
        )
        assert executor["state"] == 3  # UNREGISTERED
        server.rpc(
            {
                "msgtype": "approveexecutormsg",
                "colonyname": server.colony_name,
                "executorname": name,
            },
            server.colony_prvkey,
        )
        assert client.get_process(pid)["state"] == WAITING  # approved again, same key
        client.close_session()
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("cpu", "mem", "want_cpu", "want_mem"),
    [
        ("500m", "512Mi", "500m", "512Mi"),
        ("2", "1Gi", "0m", "1024Mi"),  # whole cores are not millicores: 0
        ("", "500M", "0m", "476Mi"),  # decimal units truncate to whole MiB
        ("", "", "0m", "0Mi"),  # unset: what the executor must read as "not given"
        ("100m", "100Ki", "100m", "0Mi"),
    ],
)
def test_conditions_quantities_come_back_in_the_servers_units(
    colonies: ColoniesServer,
    executor: Callable[..., Executor],
    cpu: str,
    mem: str,
    want_cpu: str,
    want_mem: str,
) -> None:
    """The unit rules kubejobs' spec validation and executor are built on (spec/colonies_units)."""
    ex = executor()
    pid = ex.submit(conditions={"cpu": cpu, "mem": mem, "storage": mem})
    cond = ex.client.get_process(pid)["spec"]["conditions"]
    assert (cond["cpu"], cond["mem"], cond["storage"], cond["gpu"]["mem"]) == (
        want_cpu,
        want_mem,
        want_mem,
        "0Mi",
    )


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"mem": "1 GB"}, "error converting memory to int"),
        ({"mem": "1.5Gi"}, "error converting memory to int"),
        ({"mem": "1000"}, "error converting memory to int"),
        ({"storage": "1gb"}, "error converting memory to int"),
        ({"cpu": "1.5m"}, "Error converting CPU to int"),
    ],
)
def test_quantities_kubejobs_refuses_are_refused_by_the_server_too(
    executor: Callable[..., Executor], conditions: dict[str, str], message: str
) -> None:
    ex = executor()
    with pytest.raises(ColoniesRPCError) as err:
        ex.submit(conditions=conditions)
    assert err.value.status == 400 and message in err.value.message


def test_get_processes_is_capped_at_100(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    """The take-back check relies on it: one list of at most 100, the rest looked up one by one."""
    ex = executor()
    pids = {ex.submit() for _ in range(101)}
    with pytest.raises(ColoniesError) as err:
        ex.client.get_processes(colonies.colony_name, WAITING, 101, ex.type)
    assert err.value.status == 400 and "MaxCount limit <100>" in str(err.value)
    listed = ex.client.get_processes(colonies.colony_name, WAITING, 100, ex.type)
    assert len(listed) == 100 and {p["processid"] for p in listed} <= pids
    assert ex.client.get_processes(colonies.colony_name, RUNNING, 100, ex.type) == []  # null


def test_logs_page_by_500_with_since_and_only_the_assignee_writes(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex, other = executor(), executor()
    pid = ex.submit()
    with pytest.raises(ColoniesError, match="not running"):
        ex.client.add_log(pid, "early\n")
    assert ex.client.assign(colonies.colony_name, 5) is not None
    with pytest.raises(ColoniesError) as err:
        other.client.add_log(pid, "intruder\n")
    assert err.value.status == 403
    for i in range(1203):
        ex.client.add_log(pid, f"{i}\n")
    with pytest.raises(ColoniesError, match="exceeds max log count"):
        ex.client.get_logs(colonies.colony_name, pid, 501)
    # the shipper's and the tests' paging: 500 at a time, `since` the last timestamp
    first = ex.client.get_logs(colonies.colony_name, pid, 500)
    assert len(first) == 500
    read = "".join(e["message"] for e in first)
    since = first[-1]["timestamp"]
    while True:
        page = other.client.get_logs(colonies.colony_name, pid, 500, since)
        read += "".join(e["message"] for e in page)
        if len(page) < 500:
            break
        since = page[-1]["timestamp"]
    assert read == "".join(f"{i}\n" for i in range(1203))
    assert colonies.log_text(pid) == read


def test_client_errors_keep_the_server_status(
    colonies: ColoniesServer, executor: Callable[..., Executor]
) -> None:
    ex = executor()
    pid = ex.submit()
    owner = ColoniesClient(colonies.host, colonies.port, colonies.colony_prvkey, timeout=10)
    with pytest.raises(ColoniesError) as err:
        owner.get_process(pid)  # the colony key owns the colony but is not a member
    assert err.value.status == 403
    with pytest.raises(ColoniesError, match="timeout cannot be zero"):
        ex.client.assign(colonies.colony_name, 0)
    assert ex.client.assign(colonies.colony_name, -1) is not None  # negative: one attempt
    owner.close_session()


def test_registration_messages_the_executor_sends(colonies: ColoniesServer) -> None:
    """identity: add (refused when the name exists), approve, add the function, look itself up."""
    key = generate_prvkey()
    name = f"reg-{uuid.uuid4().hex[:8]}"
    owner = ColoniesClient(colonies.host, colonies.port, colonies.colony_prvkey, timeout=10)
    own = ColoniesClient(colonies.host, colonies.port, key, timeout=10)
    doc = executor_document(colonies.colony_name, name, "reg", key_id(key))
    added = owner.add_executor(doc)
    assert added["state"] == 0 and added["executorname"] == name
    owner.approve_executor(colonies.colony_name, name)
    assert own.add_function(colonies.colony_name, name, "execute")["funcname"] == "execute"
    assert own.get_executor(colonies.colony_name, name)["state"] == 1  # APPROVED
    owner.close_session()
    own.close_session()
