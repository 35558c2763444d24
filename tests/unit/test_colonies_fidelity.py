"""The Colonies stand-in behaves like the v1.9.7 server for the messages kubejobs sends.

Each test names the v1.9.7 source that shows the real behaviour. The server runs
in-process (no HTTP, an injected clock); the last tests put kubejobs' own
clients in front of it through a session that calls the server directly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kubejobs.adapters import colonies as adapter
from kubejobs.adapters.cfs import CfsClient, CfsError
from kubejobs.adapters.colonies import ColoniesClient, ColoniesError
from testenv.colonies_server import ColoniesLite, RPCError, generate_prvkey, key_id, sign
from testenv.colonies_wire import cpu_millis, like, mem_bytes, mem_text

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
T0 = 1_700_000_000_000_000  # microseconds


class Colony:
    """A server with one colony and approved executors; `call` raises RPCError like the wire."""

    def __init__(self, tmp: Path, environ: dict[str, str] | None = None) -> None:
        self.now = T0
        self.server_key = generate_prvkey()
        self.colony_key = generate_prvkey()
        self.app = ColoniesLite(
            str(tmp), key_id(self.server_key), environ=environ or {}, clock=lambda: self.now
        )
        self.call(
            self.server_key,
            {
                "msgtype": "addcolonymsg",
                "colony": {"colonyid": key_id(self.colony_key), "name": "c"},
            },
        )
        self.keys: dict[str, str] = {}
        self.exe = self.add_executor("e1")

    def call(self, key: str, msg: dict[str, Any]) -> Any:
        return json.loads(self.app.handle(key_id(key), msg["msgtype"], json.dumps(msg)))

    def add_executor(self, name: str, etype: str = "t", approve: bool = True, **extra: Any) -> str:
        key = self.keys.get(name) or generate_prvkey()
        self.keys[name] = key
        doc = {"executorid": key_id(key), "executortype": etype, "executorname": name}
        self.call(
            self.colony_key,
            {"msgtype": "addexecutormsg", "executor": {**doc, "colonyname": "c", **extra}},
        )
        if approve:
            self.call(
                self.colony_key,
                {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": name},
            )
        return key

    def submit(self, key: str | None = None, **spec: Any) -> dict[str, Any]:
        conditions = {"colonyname": "c", "executortype": "t", **spec.pop("conditions", {})}
        body = {"funcname": "f", "maxexectime": -1, "maxretries": -1, "maxwaittime": -1}
        body.update(spec, conditions=conditions)
        return dict(self.call(key or self.exe, {"msgtype": "submitfuncspecmsg", "spec": body}))

    def assign(self, key: str | None = None, timeout: int = -1, **extra: Any) -> Any:
        msg = {"msgtype": "assignprocessmsg", "colonyname": "c", "timeout": timeout, **extra}
        return self.call(key or self.exe, msg)

    def get(self, pid: str) -> dict[str, Any]:
        return dict(self.call(self.exe, {"msgtype": "getprocessmsg", "processid": pid}))

    def tick(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)
        self.app.expire()


@pytest.fixture
def colony(tmp_path: Path) -> Colony:
    return Colony(tmp_path)


@contextlib.contextmanager
def refused(status: int, text: str) -> Iterator[None]:
    """The call raises the server's error: this HTTP status, this message (a regex)."""
    with pytest.raises(RPCError, match=f"^{text}$") as err:
        yield
    assert err.value.status == status, str(err.value)


# --- envelope and signatures (pkg/server/server.go, internal/crypto) ------------------------


def envelope(msg: dict[str, Any], key: str, **changes: Any) -> bytes:
    payload = base64.b64encode(json.dumps(msg).encode()).decode()
    body = {"payloadtype": msg["msgtype"], "payload": payload, "signature": sign(payload, key)}
    body.update(changes)
    return json.dumps(body).encode()


def reply(status_and_body: tuple[int, dict[str, Any]]) -> tuple[int, Any]:
    status, body = status_and_body
    return status, json.loads(base64.b64decode(body["payload"]))


def test_the_caller_is_recovered_from_the_signature_and_errors_carry_status_and_message(
    colony: Colony,
) -> None:
    msg = {"msgtype": "getprocessmsg", "processid": "nope"}
    assert reply(colony.app.dispatch(envelope(msg, colony.exe))) == (
        404,
        {"status": 404, "message": "Failed to get process, process not found"},
    )


def test_high_s_and_bad_recovery_codes_are_refused_with_403(colony: Colony) -> None:
    """signature.go Verify: s over half the order is refused; v is 0..3 (+4 compressed)."""
    msg = {"msgtype": "getprocessmsg", "processid": "nope"}
    payload = base64.b64encode(json.dumps(msg).encode()).decode()
    high = sign(payload, colony.exe, low_s=False)
    status, body = reply(colony.app.dispatch(envelope(msg, colony.exe, signature=high)))
    assert (status, body["message"]) == (
        403,
        "Failed verify signature: Signature s value is over half the order",
    )
    v27 = sign(payload, colony.exe)[:-2] + "1b"  # Ethereum-style v=27 is not Colonies'
    assert reply(colony.app.dispatch(envelope(msg, colony.exe, signature=v27)))[0] == 403
    short = sign(payload, colony.exe)[:-2]
    assert reply(colony.app.dispatch(envelope(msg, colony.exe, signature=short)))[1] == {
        "status": 403,
        "message": "Invalid signature length",
    }


def test_kubejobs_signatures_are_low_s_and_recover_to_the_key_id() -> None:
    """pycolonies normalises s; the server would refuse about half the requests otherwise."""
    from testenv.colonies_crypto import recover_id

    key = generate_prvkey()
    for i in range(40):
        payload = base64.b64encode(f'{{"n": {i}}}'.encode()).decode()
        assert recover_id(payload, adapter._sign(payload, key)) == adapter.key_id(key)


def test_unknown_payload_type_is_403_after_the_signature(colony: Colony) -> None:
    msg = {"msgtype": "getfunctionsmsg", "colonyname": "c"}
    assert reply(colony.app.dispatch(envelope(msg, colony.exe))) == (
        403,
        {"status": 403, "message": "invalid rpcMsg.PayloadType: getfunctionsmsg"},
    )


def test_wrong_json_types_and_msgtype_mismatch_are_400(colony: Colony) -> None:
    """encoding/json refuses a string for an int; unknown keys are ignored."""
    with refused(400, "Failed to assign process, invalid JSON"):
        colony.assign(timeout="5")  # type: ignore[arg-type]
    with refused(400, "Failed to close failed, invalid JSON"):
        colony.call(colony.exe, {"msgtype": "closefailedmsg", "processid": "x", "errors": [1]})
    with refused(400, "Failed to get logs, invalid JSON"):
        colony.call(colony.exe, {"msgtype": "getlogsmsg", "processid": "x", "count": 1.5})
    with refused(400, "Failed to get process, msg.MsgType does not match payloadType"):
        colony.app.handle(key_id(colony.exe), "getprocessmsg", '{"msgtype": "x"}')
    pid = colony.submit(surprise=1)["processid"]  # an unknown key is ignored
    by_other_case = {"msgtype": "getprocessmsg", "ProcessID": pid}  # names fold case
    assert colony.call(colony.exe, by_other_case)["state"] == WAITING


def test_empty_replies_are_an_empty_object_and_empty_lists_null(colony: Colony) -> None:
    """SendEmptyHTTPReply sends "{}"; nil slices from the database marshal as null."""
    msg = {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": "e1"}
    assert colony.app.handle(key_id(colony.colony_key), msg["msgtype"], json.dumps(msg)) == "{}"
    listed = {"msgtype": "getprocessesmsg", "colonyname": "c", "count": 10, "state": RUNNING}
    assert colony.call(colony.exe, listed) is None


# --- who may call (pkg/security/validator) -----------------------------------------------------


def test_the_colony_key_owns_the_colony_but_is_not_a_member(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    for msg in (
        {"msgtype": "getprocessmsg", "processid": pid},
        {"msgtype": "getprocessesmsg", "colonyname": "c", "count": 1, "state": 0},
        {"msgtype": "submitfuncspecmsg", "spec": {"conditions": {"colonyname": "c"}}},
    ):
        with refused(403, "Access denied, not a member of Colony with name <c>"):
            colony.call(colony.colony_key, msg)
    with refused(403, "Colony with name <nope> does not exists"):
        colony.submit(conditions={"colonyname": "nope"})


def test_a_pending_executor_may_list_executors_but_not_assign(colony: Colony) -> None:
    pending = colony.add_executor("p1", approve=False)
    listed = colony.call(pending, {"msgtype": "getexecutorsmsg", "colonyname": "c"})
    assert {e["executorname"] for e in listed} == {"e1", "p1"}
    with refused(403, "Access denied, not a member of Colony with name <c>"):
        colony.assign(pending)


# --- executors (pkg/server/handlers/executor, postgresql/executors.go) ------------------------


def test_removal_keeps_the_name_and_requeues_without_a_retry(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    colony.assign()
    colony.call(
        colony.colony_key, {"msgtype": "removeexecutormsg", "colonyname": "c", "executorname": "e1"}
    )
    colony.add_executor("e2")
    proc = colony.call(colony.keys["e2"], {"msgtype": "getprocessmsg", "processid": pid})
    assert (proc["state"], proc["retries"], proc["assignedexecutorid"]) == (WAITING, 0, "")
    assert proc["starttime"] == "0001-01-01T00:00:00Z"
    ex = colony.call(
        colony.keys["e2"], {"msgtype": "getexecutormsg", "colonyname": "c", "executorname": "e1"}
    )
    assert ex["state"] == 3  # UNREGISTERED, not gone
    with refused(400, "Executor with name <e1> in Colony <c> already exists"):
        colony.add_executor("e1")
    with refused(403, "Access denied, not a member of Colony with name <c>"):
        colony.get(pid)
    colony.call(
        colony.colony_key,
        {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": "e1"},
    )
    assert colony.get(pid)["state"] == WAITING  # approving brings it back, same key


def test_reregistering_unregisters_first_and_requeues_its_running_processes(
    tmp_path: Path,
) -> None:
    colony = Colony(tmp_path, {"COLONIES_ALLOW_EXECUTOR_REREGISTER": "true"})
    pid = colony.submit()["processid"]
    colony.assign()
    colony.add_executor("e1", approve=False)  # what a restarting executor does
    with refused(403, "Access denied, not a member of Colony with name <c>"):
        colony.get(pid)  # PENDING until approved again
    colony.call(
        colony.colony_key,
        {"msgtype": "approveexecutormsg", "colonyname": "c", "executorname": "e1"},
    )
    proc = colony.get(pid)
    assert (proc["state"], proc["assignedexecutorid"], proc["retries"]) == (WAITING, "", 0)


def test_executors_are_only_kept_alive_by_assign(tmp_path: Path) -> None:
    """cleanupStaleExecutors: lastheardfromtime only moves in assign (MarkAlive)."""
    colony = Colony(tmp_path, {"COLONIES_STALE_EXECUTOR_DURATION": "600"})
    pid = colony.submit()["processid"]
    colony.assign()
    never = colony.add_executor("quiet")  # never assigned: zero lastheardfromtime, skipped
    for _ in range(11):
        colony.now += 60_000_000
        colony.get(pid)  # reading does not count
        assert colony.app.cleanup_stale_executors() in ([], ["e1"])
    with refused(403, "Access denied, not a member of Colony with name <c>"):
        colony.get(pid)
    proc = colony.call(never, {"msgtype": "getprocessmsg", "processid": pid})
    assert (proc["state"], proc["assignedexecutorid"]) == (WAITING, "")


def test_functions_are_added_by_their_executor_and_not_deduplicated(colony: Colony) -> None:
    fun = {"colonyname": "c", "executorname": "e1", "funcname": "execute"}
    first = colony.call(colony.exe, {"msgtype": "addfunctionmsg", "fun": fun})
    second = colony.call(colony.exe, {"msgtype": "addfunctionmsg", "fun": fun})
    assert first["functionid"] != second["functionid"]
    with refused(403, "Access denied, not a member of Colony with name <c>"):
        colony.call(colony.colony_key, {"msgtype": "addfunctionmsg", "fun": fun})
    other = colony.add_executor("e2")
    with refused(403, "Not allowed to add a function to another executor"):
        colony.call(other, {"msgtype": "addfunctionmsg", "fun": fun})


# --- submit and the process document (postgresql/processes.go, pkg/parsers) -----------------


@pytest.mark.parametrize(
    ("cpu", "mem", "want_cpu", "want_mem"),
    [
        ("500m", "64Mi", "500m", "64Mi"),
        ("2", "1Gi", "0m", "1024Mi"),  # whole cores are not millicores: 0
        ("", "500M", "0m", "476Mi"),  # decimal units truncate to whole MiB
        ("", "", "0m", "0Mi"),
        ("100m", "100Ki", "100m", "0Mi"),
    ],
)
def test_conditions_quantities_come_back_normalised(
    colony: Colony, cpu: str, mem: str, want_cpu: str, want_mem: str
) -> None:
    proc = colony.submit(conditions={"cpu": cpu, "mem": mem, "storage": mem})
    cond = proc["spec"]["conditions"]
    assert (cond["cpu"], cond["mem"], cond["storage"], cond["gpu"]["mem"]) == (
        want_cpu,
        want_mem,
        want_mem,
        "0Mi",
    )
    assert colony.get(proc["processid"])["spec"]["conditions"] == cond


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"mem": "1 GB"}, 'error converting memory to int: strconv.ParseInt: parsing "1 GB": invalid syntax'),  # no unit "GB": only "Gb"
        ({"mem": "1.5Gi"}, 'error converting memory to int: strconv.ParseInt: parsing "1.5": invalid syntax'),
        ({"mem": "1000"}, 'error converting memory to int: strconv.ParseInt: parsing "": invalid syntax'),
        ({"storage": "1gb"}, 'error converting memory to int: strconv.ParseInt: parsing "1gb": invalid syntax'),
        ({"cpu": "1.5m"}, "Error converting CPU to int"),
    ],
)  # fmt: skip
def test_unparsable_quantities_refuse_the_submit(
    colony: Colony, conditions: dict[str, str], message: str
) -> None:
    with pytest.raises(RPCError) as err:
        colony.submit(conditions=conditions)
    assert (err.value.status, str(err.value)) == (400, message)


def test_the_process_document_has_the_server_shape(colony: Colony) -> None:
    proc = colony.submit(
        args=[1.0, "x"],
        kwargs={"n": 2.0},
        env={"B": "2", "A": "1"},
        conditions={"executornames": ["*"]},
        channels=[],
        maxexectime=0,
    )
    spec = proc["spec"]
    assert spec["args"] == [1, "x"] and spec["kwargs"] == {"n": 2}  # numbers are float64
    assert spec["conditions"]["executornames"] == []  # "*" means any
    assert "channels" not in spec and "locationname" not in spec["conditions"]  # omitempty
    assert spec["maxexectime"] == 0  # not turned into -1 over RPC
    assert [(a["key"], a["value"], a["attributetype"]) for a in proc["attributes"]] == [
        ("A", "1", 3),
        ("B", "2", 3),
    ]
    assert proc["submissiontime"] == "2023-11-14T22:13:20Z"
    assert proc["starttime"] == proc["endtime"] == proc["execdeadline"] == "0001-01-01T00:00:00Z"
    assert proc["in"] == proc["out"] == proc["errors"] == [] and proc["parents"] == []
    assert colony.submit()["spec"]["conditions"]["executornames"] is None


def test_priority_is_range_checked_and_moves_a_day_per_step(colony: Colony) -> None:
    with refused(400, r"Failed to submit function spec, priority outside range \[-50000, 50000\]"):
        colony.submit(priority=50001)
    low = colony.submit(priority=0)["processid"]
    colony.now += 23 * 3600 * 1_000_000
    high = colony.submit(priority=1)["processid"]  # submitted 23 h later, still first
    assert colony.assign()["processid"] == high
    assert colony.assign()["processid"] == low


# --- assign (pkg/server/handlers/process, SelectAndAssign) --------------------------------


def test_assign_timeout_zero_is_refused_and_negative_is_one_attempt(colony: Colony) -> None:
    with refused(400, "Invalid timeout value, timeout cannot be zero"):
        colony.assign(timeout=0)
    with refused(404, "No process available for assignment"):
        colony.assign(timeout=-1)


def test_assign_selects_by_type_names_location_and_available_resources(colony: Colony) -> None:
    colony.submit(conditions={"executortype": ""})  # no type matches only an untyped executor
    colony.submit(conditions={"executornames": ["someone-else"]})
    colony.submit(conditions={"locationname": "lab"})
    colony.submit(conditions={"nodes": 200})  # over SelectAndAssign's limit of 127
    big = colony.submit(conditions={"cpu": "4000m", "mem": "8Gi"})["processid"]
    with refused(404, "No process available for assignment"):
        colony.assign(availablecpu="2000m")
    with refused(404, "No process available for assignment"):
        colony.assign(availablecpu="2", availablemem="100Gi")  # "2" is 0 millicores
    with refused(404, "No process available for assignment"):
        colony.assign(availablecpu="4000m", availablemem="4Gi")
    got = colony.assign(availablecpu="4000m", availablemem="8192Mi")
    assert got["processid"] == big and got["state"] == RUNNING and got["isassigned"]
    assert got["assignedexecutorid"] == key_id(colony.exe)
    assert got["starttime"] != "0001-01-01T00:00:00Z"
    lab = colony.add_executor("lab", locationname="LAB")
    assert colony.assign(lab)["spec"]["conditions"]["locationname"] == "lab"
    with refused(
        400, 'error converting memory to int: strconv.ParseInt: parsing "": invalid syntax'
    ):
        colony.assign(availablemem="12")


def test_a_submit_wakes_one_waiting_assign_of_its_type(colony: Colony) -> None:
    """eventhandler.sendSignal wakes one general listener, round robin."""
    small = colony.add_executor("small")
    results: dict[str, Any] = {}

    def poll(name: str, key: str, cpu: str) -> None:
        try:
            results[name] = colony.assign(key, timeout=2, availablecpu=cpu)["processid"]
        except RPCError as err:
            results[name] = str(err)

    threads = [
        threading.Thread(target=poll, args=("e1", colony.exe, "")),
        threading.Thread(target=poll, args=("small", small, "100m")),
    ]
    for t in threads:
        t.start()
        time.sleep(0.2)
    started = time.monotonic()
    pid = colony.submit(conditions={"cpu": "500m"})["processid"]
    for t in threads:
        t.join()
    # the first waiter (e1) was woken and took it at once; the other timed out
    assert results == {"e1": pid, "small": "No process available for assignment"}
    assert time.monotonic() - started < 2.5


# --- close, fail, take-back (process handlers, colonies_controller*.go) -------------------


def test_only_the_assigned_executor_may_close(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    other = colony.add_executor("e2")
    with refused(403, "Failed to close process as successful, process is not assigned"):
        colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": pid})
    colony.assign()
    with refused(403, "Failed to close process as failed, not allowed to close process as failed"):
        colony.call(other, {"msgtype": "closefailedmsg", "processid": pid, "errors": []})
    with refused(500, "Failed to close process as successful, process is nil"):
        colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": "gone"})


def test_closing_twice_is_accepted_but_fail_after_success_is_not(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    colony.assign()
    close = {"msgtype": "closesuccessfulmsg", "processid": pid, "out": ["a"]}
    colony.call(colony.exe, close)
    colony.call(colony.exe, close)  # MarkSuccessful has no check for SUCCESS
    with refused(400, "Tried to set successful process as failed"):
        colony.call(colony.exe, {"msgtype": "closefailedmsg", "processid": pid, "errors": ["x"]})
    done = colony.get(pid)
    assert (done["state"], done["out"]) == (SUCCESS, ["a"])


def test_fail_with_null_errors_stores_null(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    colony.assign()
    colony.call(colony.exe, {"msgtype": "closefailedmsg", "processid": pid, "errors": None})
    assert colony.get(pid)["errors"] is None


def test_maxexectime_takes_back_in_whole_seconds_then_fails_at_maxretries(colony: Colony) -> None:
    pid = colony.submit(maxexectime=2, maxretries=1, maxwaittime=30)["processid"]
    first = colony.assign()
    colony.tick(2.5)  # 22:13:22.5 is not after 22:13:22 in whole seconds
    assert colony.get(pid)["state"] == RUNNING
    colony.tick(0.5)
    back = colony.get(pid)
    assert (back["state"], back["retries"], back["isassigned"]) == (WAITING, 1, False)
    assert back["starttime"] == first["starttime"] and back["execdeadline"] == first["execdeadline"]
    assert (
        back["endtime"] == "2023-11-14T22:13:23Z" and back["waitdeadline"] == "2023-11-14T22:13:53Z"
    )
    with refused(403, "Failed to close process as successful, process is not assigned"):
        colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": pid})
    colony.assign()
    colony.tick(3)
    failed = colony.get(pid)
    assert (failed["state"], failed["errors"]) == (
        FAILED,
        ["Maximum execution time limit exceeded"],
    )
    assert failed["assignedexecutorid"] == key_id(colony.exe)  # MarkFailed keeps it
    with refused(400, "Tried to set failed process as successful"):
        colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": pid, "out": [7]})
    assert colony.get(pid)["out"] == [7]  # the output was set before the refusal


@pytest.mark.parametrize(
    ("maxexectime", "maxwaittime", "state"),
    [
        (0, -1, FAILED),  # 0 over RPC: the deadline stays zero and has passed
        (-2, -1, FAILED),  # only -1 means none
        (-1, -1, RUNNING),
    ],
)
def test_maxexectime_limits(colony: Colony, maxexectime: int, maxwaittime: int, state: int) -> None:
    pid = colony.submit(maxexectime=maxexectime, maxretries=0, maxwaittime=maxwaittime)["processid"]
    colony.assign()
    colony.tick(1)
    assert colony.get(pid)["state"] == state


@pytest.mark.parametrize(("maxwaittime", "after", "state"), [(0, 100, WAITING), (-5, 1, FAILED), (3, 5, FAILED), (3, 2, WAITING)])  # fmt: skip
def test_maxwaittime(colony: Colony, maxwaittime: int, after: int, state: int) -> None:
    pid = colony.submit(maxwaittime=maxwaittime)["processid"]
    colony.tick(after)
    proc = colony.get(pid)
    assert proc["state"] == state
    if state == FAILED:
        assert proc["errors"] == ["Maximum waiting time limit exceeded"]


# --- listing (HandleGetProcesses, Find*Processes) --------------------------------------------


def test_get_processes_limits_filters_and_orders(colony: Colony) -> None:
    def listed(**msg: Any) -> Any:
        base = {"msgtype": "getprocessesmsg", "colonyname": "c", "count": 10, "state": WAITING}
        return colony.call(colony.exe, {**base, **msg})

    with refused(400, "Count is larger than MaxCount limit <100>"):
        listed(count=101)
    with refused(400, "Failed to get processes, invalid msg.State"):
        listed(state=7)
    with refused(400, "User <bob> does not exist"):
        listed(initiator="bob")
    a = colony.submit(label="x")["processid"]
    b = colony.submit(label="y", conditions={"executortype": "u"})["processid"]
    assert listed(count=0) is None
    assert [p["processid"] for p in listed(executortype="t", label="y")] == [a]  # type wins
    assert [p["processid"] for p in listed(label="y")] == [b]
    colony.assign()
    colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": a})
    c = colony.submit()["processid"]
    colony.now += 1_000_000
    colony.assign()
    colony.call(colony.exe, {"msgtype": "closesuccessfulmsg", "processid": c})
    assert [p["processid"] for p in listed(state=SUCCESS)] == [c, a]  # newest end first


# --- logs (pkg/server/handlers/log) ----------------------------------------------------------


def test_logs_only_from_the_assigned_executor_while_running(colony: Colony) -> None:
    pid = colony.submit()["processid"]
    log = {"msgtype": "addlogmsg", "processid": pid, "message": "hi\n"}
    with refused(403, "Failed to set output, process is not running"):
        colony.call(colony.exe, log)
    colony.assign()
    other = colony.add_executor("e2")
    with refused(
        403,
        "Failed to add log, not allowed to add log, only the assigned Executor may att logs",
    ):
        colony.call(other, log)
    colony.call(colony.exe, log)
    colony.call(colony.exe, {**log, "message": "there\n"})
    read = {"msgtype": "getlogsmsg", "colonyname": "ignored", "processid": pid, "count": 500}
    entries = colony.call(other, read)  # any member; the process's colony counts
    assert [e["message"] for e in entries] == ["hi\n", "there\n"]
    assert entries[0]["executorname"] == "e1" and entries[0]["colonyname"] == "c"
    assert colony.call(other, {**read, "since": entries[0]["timestamp"]})[0]["message"] == "there\n"
    assert [e["message"] for e in colony.call(other, {**read, "count": 1, "latest": True})] == [
        "there\n"
    ]
    with refused(403, r"Count exceeds max log count \(500\)"):
        colony.call(other, {**read, "count": 501})
    with refused(500, "Failed to get logs, process does not exist"):
        colony.call(other, {**read, "processid": "gone"})


# --- CFS (pkg/server/handlers/file, snapshot; postgresql/files.go, snapshots.go) ---------------


def add_file(colony: Colony, label: str, name: str) -> dict[str, Any]:
    file = {"colonyname": "c", "label": label, "name": name, "size": 1, "checksum": "h"}
    return dict(colony.call(colony.exe, {"msgtype": "addfilemsg", "file": file}))


def labels(colony: Colony, name: str, exact: bool) -> Any:
    msg = {"msgtype": "getfilelabelsmsg", "colonyname": "c", "name": name, "exact": exact}
    found = colony.call(colony.exe, msg)
    return None if found is None else sorted(x["name"] for x in found)


def test_files_take_any_label_and_one_global_sequence(colony: Colony) -> None:
    first = add_file(colony, "no-slash", "a")
    second = add_file(colony, "/x", "b")
    assert (first["label"], first["sequencenr"], second["sequencenr"]) == ("no-slash", 1, 2)
    assert first["ref"]["protocol"] == "s3" and first["added"] == "2023-11-14T22:13:20Z"


def test_get_file_errors(colony: Colony) -> None:
    msg = {"msgtype": "getfilemsg", "colonyname": "c", "fileid": "nope", "label": "", "name": ""}
    with refused(400, "Failed to get file"):
        colony.call(colony.exe, msg)
    with refused(404, "Failed to get file"):
        colony.call(colony.exe, {**msg, "fileid": "", "label": "/x", "name": "y", "latest": True})
    with refused(500, "malformatted get file msg"):
        colony.call(colony.exe, {**msg, "fileid": ""})
    files = {"msgtype": "getfilesmsg", "colonyname": "c", "label": "/empty"}
    assert colony.call(colony.exe, files) == []  # getfiles answers [], not null


def test_label_queries_and_the_exact_quirk(colony: Colony) -> None:
    add_file(colony, "/d/sub", "a")
    add_file(colony, "/data", "b")
    add_file(colony, "/d_x", "c")
    assert labels(colony, "/d", exact=False) == ["/d/sub", "/d_x", "/data"]  # LIKE '/d%'
    assert labels(colony, "/d", exact=True) is None  # '/d' itself holds no files
    add_file(colony, "/d", "top")
    assert labels(colony, "/d", exact=True) == ["/d", "/d/sub"]
    assert labels(colony, "/d_s", exact=False) == ["/d/sub"]  # '_' is a wildcard


def test_snapshots(colony: Colony) -> None:
    add_file(colony, "/s/sub", "a")

    def snap(label: str, name: str) -> dict[str, Any]:
        msg = {"msgtype": "createsnapshotmsg", "colonyname": "c", "label": label, "name": name}
        return dict(colony.call(colony.exe, msg))

    assert snap("/s", "n1")["fileids"] is None  # '/s' holds no files itself: nothing
    assert snap("/", "n2")["label"] == ""  # one trailing '/' trimmed; '' finds nothing
    top = add_file(colony, "/s", "top")["fileid"]
    made = snap("/s/", "n3")
    assert made["label"] == "/s" and top in made["fileids"] and len(made["fileids"]) == 2
    with refused(500, "Snapshot with name <n3> in Colony <c> already exists"):
        snap("/s", "n3")
    get = {"msgtype": "getsnapshotmsg", "colonyname": "c", "snapshotid": "nope", "name": ""}
    with refused(500, "Snapshot not found with Id <nope> in Colony <c> does not exists"):
        colony.call(colony.exe, get)
    remove = {**get, "msgtype": "removesnapshotmsg"}
    assert colony.call(colony.exe, remove) == {}  # a missing snapshot is no error
    with refused(500, "Failed to remove snapsnot, malformatted msg"):
        colony.call(colony.exe, {**remove, "snapshotid": ""})
    odd = snap("/s", "a:b")["snapshotid"]
    with refused(500, "invalid split name"):
        colony.call(colony.exe, {**get, "snapshotid": odd})


# --- the parsers themselves --------------------------------------------------------------------


def test_times_round_trip_like_go() -> None:
    from testenv.colonies_wire import TIME, go_decode, go_time

    assert go_time(go_decode(TIME, "2024-02-03T04:05:06.1234567+01:00")) == (
        "2024-02-03T03:05:06.123456Z"
    )
    assert go_time(go_decode(TIME, "0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        go_decode(TIME, "2024-02-03 04:05:06")  # not RFC 3339: the server refuses it


def test_quantity_parsers_and_like() -> None:
    assert [cpu_millis(x) for x in ("250m", "2", "", "1.5")] == [250, 0, 0, 0]
    assert mem_bytes("1GiB") == 2**30 and mem_bytes("5Mb") == 5_000_000
    assert mem_bytes("2Gb") == 2 * 10**9
    with pytest.raises(RPCError, match='parsing "2GB"'):
        mem_bytes("2GB")  # the server's unit map has "Gb" but no "GB"
    assert mem_text(-(2**20)) == "-1Mi" and mem_text(2**20 - 1) == "0Mi"
    assert like("/a\\_b%", "/a_bc") and not like("/a\\_b%", "/aXbc")


# --- kubejobs' clients in front of the stand-in ------------------------------------------------


class DirectSession:
    """A requests-like session that hands each POST to the in-process server."""

    def __init__(self, app: ColoniesLite) -> None:
        self.app = app

    def post(self, url: str, data: str, timeout: float) -> requests.Response:
        status, body = self.app.dispatch(data.encode())
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def client_for(colony: Colony) -> Iterator[Callable[[str], ColoniesClient]]:
    made: list[ColoniesClient] = []

    def make(key: str) -> ColoniesClient:
        client = ColoniesClient("stand-in", 0, key)
        client._session.close()
        client._session = DirectSession(colony.app)  # type: ignore[assignment]
        made.append(client)
        return client

    yield make


def test_client_reads_null_lists_and_no_work_as_empty(
    colony: Colony, client_for: Callable[[str], ColoniesClient]
) -> None:
    client = client_for(colony.exe)
    assert client.get_processes("c", RUNNING, 100, "t") == []
    assert client.assign("c", -1) is None  # 404 "No process available for assignment"
    pid = colony.submit()["processid"]
    assert client.get_logs("c", pid) == []
    assigned = client.assign("c", -1, "1000m", "1048576Ki")
    assert assigned is not None and assigned["processid"] == pid
    client.add_log(pid, "x")
    assert [e["message"] for e in client.get_logs("c", pid)] == ["x"]
    assert client.close(pid, ["out"]) == {}


def test_client_errors_keep_the_server_status(
    colony: Colony, client_for: Callable[[str], ColoniesClient]
) -> None:
    pid = colony.submit()["processid"]
    with pytest.raises(ColoniesError) as err:
        client_for(colony.colony_key).get_process(pid)
    assert err.value.status == 403
    with pytest.raises(ColoniesError, match="timeout cannot be zero"):
        client_for(colony.exe).assign("c", 0)


def test_client_registration_messages(
    colony: Colony, client_for: Callable[[str], ColoniesClient]
) -> None:
    """identity._register: add (refused when the name exists), approve, add the function."""
    key = generate_prvkey()
    owner = client_for(colony.colony_key)
    doc = adapter.executor_document("c", "kj", "t", adapter.key_id(key))
    added = owner.add_executor(doc)
    assert added["state"] == 0 and added["lastheardfromtime"] == doc["lastheardfromtime"]
    with pytest.raises(ColoniesError, match="already exists"):
        owner.add_executor(doc)
    owner.approve_executor("c", "kj")
    assert client_for(key).add_function("c", "kj", "execute")["funcname"] == "execute"
    assert client_for(key).get_executor("c", "kj")["state"] == 1


def test_cfs_client_against_the_label_and_snapshot_quirks(
    colony: Colony, client_for: Callable[[str], ColoniesClient]
) -> None:
    cfs = CfsClient(client_for(colony.exe), "c")
    add_file(colony, "/in/sub", "a.txt")
    add_file(colony, "/input", "other.txt")
    assert cfs.labels_under("/in") == ["/in/sub"]  # the prefix query, filtered
    assert cfs.labels_under("/nothing") == []  # null reply
    assert [f.name for f in cfs.files("/in/sub")] == ["a.txt"]
    with pytest.raises(CfsError, match="not found"):
        cfs.snapshot("nope")  # the server answers 500 "Snapshot not found ..."
    with pytest.raises(CfsError, match="file nope not found"):
        cfs.file_by_id("nope")
    cfs.remove_snapshot("nope")  # no error from the server
