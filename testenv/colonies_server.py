"""A Colonies-protocol server for the tests ("colonies-lite").

Why this exists: the real Colonies server (Go module github.com/colonyos/colonies)
is refused by the Go module proxy this project can reach (403 for every
version), so it cannot be built from the project's own files. This module
speaks the same wire protocol as Colonies v1.9.7 for the subset kubejobs uses,
and was checked handler by handler against the v1.9.7 source (file names below
are in that tree):

- ``POST /api``: ``{"payloadtype", "payload" (base64 JSON), "signature"}``; the
  caller's id is recovered from the secp256k1 signature (r || s || v, v 0..3)
  over the base64 payload text (SHA3-256); high-s signatures are refused
  (internal/crypto/signature.go). Replies are ``{"payloadtype", "payload",
  "error"}``; errors carry ``{"status", "message"}`` with the server's texts
  and HTTP status codes (pkg/server/server.go); empty replies are ``{}``.
- Messages are decoded like Go's encoding/json into the v1.9.7 structs
  (pkg/rpc, pkg/core): unknown keys ignored, missing keys zero, a wrong JSON
  type is "Failed to ..., invalid JSON" (400). Replies have the structs' shape
  (zero values filled, ``omitempty`` keys left out, empty lists ``null`` where
  the server's database layer returns nil slices).
- Processes as the PostgreSQL layer stores them (pkg/database/postgresql):
  conditions cpu/mem/storage/gpu.mem are parsed on submit (cpu counts only with
  an "m" suffix; memory needs a unit) and come back as "<n>m" / "<n>Mi";
  priority shifts the queue by a day per step; env comes back from attributes.
- Membership (pkg/security/validator): only approved executors of the colony;
  the colony key is an owner, not a member.
- Assign (pkg/server/handlers/process): timeout 0 is refused, negative means
  one attempt; the long poll wakes one waiter of the process's executor type per
  submit (pkg/backends/gin/eventhandler.go); selection by executor type, names,
  location and available cpu/mem (SelectAndAssign).
- The timeout loop (pkg/server/controllers, every second, whole seconds):
  maxexectime (-1 none; 0 expires at once) puts a process back to WAITING with
  retries+1 or fails it once retries reach maxretries; maxwaittime (0 and -1
  none) fails waiting processes. Executors not heard from (only assign counts)
  for COLONIES_STALE_EXECUTOR_DURATION s (600) are unregistered every
  COLONIES_CLEANUP_INTERVAL s (60), their RUNNING processes back to WAITING.
- Executors are never deleted: removal marks them UNREGISTERED (state 3);
  approving brings one back; with COLONIES_ALLOW_EXECUTOR_REREGISTER adding an
  existing name unregisters it first (requeueing its RUNNING processes).
- CFS metadata: global file sequence numbers, no label checks, the "exact"
  label query (LIKE 'LABEL/%' plus LABEL, nothing when LABEL holds no files),
  snapshots over that query with the label's trailing "/" trimmed, unique
  snapshot names, removing a missing snapshot succeeds.

Signatures are in ``testenv/colonies_crypto.py``, the Go structs and JSON rules
in ``testenv/colonies_wire.py``; ``tests/unit/test_colonies_fidelity.py`` pins
each behaviour listed here. ``GET /health``: 200. Not implemented: workflows,
crons, generators, users, channels, /pubsub websockets (pycolonies ``wait``),
blueprints, pausing.

State lives in a SQLite file in the data directory, so stopping and starting
the server keeps colonies, executors, processes, logs and files (like the real
server with its PostgreSQL).

Run: ``python -m testenv.colonies_server --port P --data-dir D --server-id ID``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from testenv.colonies_crypto import generate_prvkey, key_id, recover_id, sign
from testenv.colonies_wire import (
    COLONY,
    EXECUTOR,
    FILE,
    FILE_DATA,
    FUNCTION,
    MAX_INT64,
    MESSAGES,
    PROCESS,
    SNAPSHOT,
    STR,
    RPCError,
    cpu_millis,
    go_bool,
    go_decode,
    go_encode,
    go_time,
    like,
    mem_bytes,
    mem_text,
    struct,
)

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
PENDING_EXECUTOR, APPROVED_EXECUTOR, REJECTED_EXECUTOR, UNREGISTERED_EXECUTOR = 0, 1, 2, 3
ENV_ATTRIBUTE = 3
MAX_LOG_COUNT = 500  # pkg/server/handlers/log
MAX_COUNT = 100  # pkg/constants: list operations refuse larger counts
MIN_PRIORITY, MAX_PRIORITY = -50000, 50000
MAX_INT8 = 127  # nodes / processes / processespernode limits of SelectAndAssign
DAY_NS = 24 * 60 * 60 * 10**9
STORE_FORMAT = "2"

__all__ = ["ColoniesLite", "generate_prvkey", "key_id", "main", "recover_id", "sign"]

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
EMPTY: Any = object()
"""A handler's reply when the server sends SendEmptyHTTPReply ("{}"); None is JSON null."""


def _new_id() -> str:
    return hashlib.sha3_256(uuid.uuid4().bytes + os.urandom(16)).hexdigest()


# --------------------------------------------------------------------------
# state (SQLite, one JSON document per row)
# --------------------------------------------------------------------------
class Store:
    TABLES = ("colonies", "executors", "processes", "files", "snapshots", "functions")

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        row = self.db.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()
        if row is None or row[0] != STORE_FORMAT:  # written by an older stand-in: start afresh
            for t in (*self.TABLES, "logs"):
                self.db.execute(f"DROP TABLE IF EXISTS {t}")
            self.db.execute("DELETE FROM meta")
            self.db.execute("INSERT INTO meta (k, v) VALUES ('format', ?)", (STORE_FORMAT,))
        for t in self.TABLES:
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " id TEXT UNIQUE, doc TEXT)"
            )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " processid TEXT, executorname TEXT, ts INTEGER, doc TEXT)"
        )

        # write-through cache, in insertion order: documents are read from memory
        self.cache: dict[str, dict[str, dict[str, Any]]] = {}
        for t in self.TABLES:
            rows = self.db.execute(f"SELECT id, doc FROM {t} ORDER BY seq").fetchall()
            self.cache[t] = {k: json.loads(v) for k, v in rows}

    def put(self, table: str, key: str, doc: dict[str, Any]) -> None:
        self.cache[table][key] = doc
        self.db.execute(
            f"INSERT INTO {table} (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc ="
            " excluded.doc",
            (key, json.dumps(doc)),
        )

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self.cache[table].get(key)

    def delete(self, table: str, key: str) -> None:
        self.cache[table].pop(key, None)
        self.db.execute(f"DELETE FROM {table} WHERE id = ?", (key,))

    def all(self, table: str) -> list[dict[str, Any]]:
        return list(self.cache[table].values())

    def next_seq(self, name: str) -> int:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (name,)).fetchone()
        value = int(row[0]) + 1 if row else 1
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (name, str(value)))
        return value


class _Waiter:
    """One assign long poll listening for WAITING processes of its executor type."""

    def __init__(self, wid: int, executor_type: str, location: str) -> None:
        self.wid = wid
        self.executor_type = executor_type
        self.location = location
        self.woken = 0


def _now_us() -> int:
    return time.time_ns() // 1000


class ColoniesLite:
    def __init__(
        self,
        data_dir: str,
        server_id: str,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        env = os.environ if environ is None else environ
        os.makedirs(data_dir, exist_ok=True)
        self.store = Store(os.path.join(data_dir, "colonies.sqlite"))
        self.server_id = server_id
        self.clock = clock
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.allow_reregister = go_bool(env.get("COLONIES_ALLOW_EXECUTOR_REREGISTER", ""))
        self.stale_executor_us = int(env.get("COLONIES_STALE_EXECUTOR_DURATION") or 600) * 10**6
        self.cleanup_interval = float(env.get("COLONIES_CLEANUP_INTERVAL") or 60)
        self._waiters: dict[int, _Waiter] = {}
        self._next_waiter = 0
        self._round_robin: dict[str, int] = {}
        self._last_log_ns = 0

    # ---- identity (pkg/security/validator) -----------------------------
    def _colony_or_none(self, name: str) -> dict[str, Any] | None:
        return self.store.get("colonies", name)

    def executor_by_id(self, executor_id: str) -> dict[str, Any] | None:
        for ex in self.store.all("executors"):
            if ex["executorid"] == executor_id:
                return ex
        return None

    def _executor_by_name(self, colonyname: str, name: str) -> dict[str, Any] | None:
        return self.store.get("executors", f"{colonyname}:{name}")

    def _put_executor(self, ex: dict[str, Any]) -> None:
        self.store.put("executors", f"{ex['colonyname']}:{ex['executorname']}", ex)

    def require_server_owner(self, caller: str) -> None:
        if caller != self.server_id:
            raise RPCError("Access denied, not server owner", 403)

    def require_colony_owner(self, caller: str, colonyname: str) -> None:
        if colonyname == "":
            raise RPCError("Empty Colony name", 403)
        col = self._colony_or_none(colonyname)
        if col is None:
            raise RPCError(f"Colony with name <{colonyname}> does not exists", 403)
        if col["colonyid"] != caller:
            raise RPCError("Access denied, not colony owner", 403)

    def require_member(self, caller: str, colonyname: str, approved: bool = True) -> None:
        """An (approved) executor of the colony; the colony owner is not a member."""
        ex = self.executor_by_id(caller)
        if (
            self._colony_or_none(colonyname) is not None
            and ex is not None
            and ex["colonyname"] == colonyname
            and (not approved or ex["state"] == APPROVED_EXECUTOR)
        ):
            return
        # the executor check failed: the server falls back to users (none here)
        if self._colony_or_none(colonyname) is None:
            raise RPCError(f"Colony with name <{colonyname}> does not exists", 403)
        raise RPCError(f"Access denied, not a member of Colony with name <{colonyname}>", 403)

    # ---- dispatch (pkg/server/server.go handleAPIRequest) ----------------
    def dispatch(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """One POST /api body -> (HTTP status, reply envelope)."""
        try:
            rpc = json.loads(body)
            rpc = go_decode(struct({"signature": STR, "payloadtype": STR, "payload": STR}), rpc)
        except (ValueError, UnicodeDecodeError) as err:
            return self._error(str(err), 400)
        payloadtype = rpc["payloadtype"]
        if payloadtype == "versionmsg":
            return 200, self._envelope(
                payloadtype, json.dumps({"buildversion": "v1.9.7-colonies-lite", "buildtime": ""})
            )
        try:
            caller = recover_id(rpc["payload"], rpc["signature"])
        except ValueError as err:
            return self._error(str(err), 403)
        try:
            text = base64.b64decode(rpc["payload"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = ""  # the server ignores the decoding error and parses what it got
        if payloadtype not in MESSAGES or not hasattr(self, "rpc_" + payloadtype):
            if payloadtype == "":
                return self._error(
                    "invalid rpcMsg.PayloadType: empty (this usually means the client is "
                    "misconfigured - check that COLONIES_PRVKEY and other environment "
                    "variables are set correctly)",
                    403,
                )
            return self._error(f"invalid rpcMsg.PayloadType: {payloadtype}", 403)
        try:
            return 200, self._envelope(payloadtype, self.handle(caller, payloadtype, text))
        except RPCError as err:
            return self._error(str(err), err.status)

    @staticmethod
    def _envelope(payloadtype: str, payload: str, error: bool = False) -> dict[str, Any]:
        return {
            "payloadtype": payloadtype,
            "payload": base64.b64encode(payload.encode()).decode(),
            "error": error,
        }

    def _error(self, message: str, status: int) -> tuple[int, dict[str, Any]]:
        return status, self._envelope(
            "error", json.dumps({"status": status, "message": message}), True
        )

    def handle(self, caller: str, msgtype: str, payload: str) -> str:
        """Run one message (its JSON text) for `caller`; the reply payload as JSON text."""
        fields, invalid, mismatch = MESSAGES[msgtype]
        try:
            msg = go_decode(struct({**fields, "msgtype": STR}), json.loads(payload))
        except (ValueError, RecursionError):
            raise RPCError(f"Failed to {invalid}, invalid JSON", 400) from None
        if msg["msgtype"] != msgtype:
            raise RPCError(f"Failed to {mismatch}, msg.MsgType does not match payloadType", 400)
        fn = getattr(self, "rpc_" + msgtype)
        if msgtype == "assignprocessmsg":
            return str(fn(caller, msg))  # takes the lock itself (long poll)
        with self.lock:
            result = fn(caller, msg)
        return "{}" if result is EMPTY else json.dumps(result)

    # ---- colonies --------------------------------------------------------
    def rpc_addcolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_server_owner(caller)
        colony = msg["colony"]
        if colony is None:
            raise RPCError("Failed to add colony, colony is <nil>", 400)
        if len(colony["colonyid"]) != 64:
            raise RPCError("Failed to add colony, invalid colony Id length", 400)
        if self._colony_or_none(colony["name"]) is not None:
            raise RPCError(f"A Colony with name <{colony['name']}> already exists", 400)
        self.store.put("colonies", colony["name"], colony)
        return go_encode(COLONY, colony)

    def rpc_removecolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_server_owner(caller)
        if self._colony_or_none(msg["colonyname"]) is None:
            raise RPCError(f"Colony with name <{msg['colonyname']}> not found", 400)
        self.store.delete("colonies", msg["colonyname"])
        return EMPTY

    def rpc_getcoloniesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_server_owner(caller)
        return [go_encode(COLONY, c) for c in self.store.all("colonies")] or None

    def rpc_getcolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return go_encode(COLONY, self._colony_or_none(msg["colonyname"]))

    # ---- executors (pkg/server/handlers/executor) ------------------------
    def _render_executor(self, ex: dict[str, Any]) -> Any:
        return go_encode(EXECUTOR, ex)

    def rpc_addexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = msg["executor"]
        if ex is None:
            raise RPCError("Failed to add executor, executor is nil", 400)
        self.require_colony_owner(caller, ex["colonyname"])
        old = self._executor_by_name(ex["colonyname"], ex["executorname"])
        if old is not None:
            if not self.allow_reregister:
                raise RPCError(
                    f"Executor with name <{old['executorname']}> in Colony "
                    f"<{old['colonyname']}> already exists",
                    400,
                )
            self._unregister(old)
        doc = dict(ex)
        doc["state"] = PENDING_EXECUTOR
        doc["commissiontime"] = self.clock()
        if old is not None:  # reactivated: name and colony kept, the rest from the message
            doc["requirefuncreg"] = old["requirefuncreg"]
        self._put_executor(doc)
        return self._render_executor(doc)

    def _unregister(self, ex: dict[str, Any]) -> None:
        """RemoveExecutorByName: UNREGISTERED, its RUNNING processes back to WAITING."""
        ex["state"] = UNREGISTERED_EXECUTOR
        self._put_executor(ex)
        for proc in self.store.all("processes"):
            if proc["assignedexecutorid"] == ex["executorid"] and proc["state"] == RUNNING:
                # no retries+1, start and end times cleared, no signal to waiting assigns
                proc.update(isassigned=False, assignedexecutorid="", state=WAITING)
                proc["_t"].update(start=0, end=0)
                self._put_process(proc)
        for key, fn in list(self.store.cache["functions"].items()):
            if fn["colonyname"] == ex["colonyname"] and fn["executorname"] == ex["executorname"]:
                self.store.delete("functions", key)

    def _named_executor(self, msg: dict[str, Any], what: str) -> dict[str, Any]:
        ex = self._executor_by_name(msg["colonyname"], msg["executorname"])
        if ex is None:
            raise RPCError(f"Failed to {what}, executor is nil", 500)
        return ex

    def rpc_approveexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self._named_executor(msg, "approve executor")
        self.require_colony_owner(caller, ex["colonyname"])
        ex["state"] = APPROVED_EXECUTOR  # also brings an UNREGISTERED executor back
        self._put_executor(ex)
        return EMPTY

    def rpc_rejectexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self._named_executor(msg, "reject executor")
        self.require_colony_owner(caller, ex["colonyname"])
        ex["state"] = REJECTED_EXECUTOR
        self._put_executor(ex)
        return EMPTY

    def rpc_removeexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self._named_executor(msg, "remove executor")
        self.require_colony_owner(caller, ex["colonyname"])
        self._unregister(ex)
        return EMPTY

    def rpc_getexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self._named_executor(msg, "get executor")
        self.require_member(caller, ex["colonyname"])
        return self._render_executor(ex)

    def rpc_getexecutorsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"], approved=False)
        found = [
            self._render_executor(e)
            for e in self.store.all("executors")
            if e["colonyname"] == msg["colonyname"]
        ]
        return found or None

    def rpc_addfunctionmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        fn = msg["fun"]
        if fn is None:
            raise RPCError("Failed to add function, msg.Function is nil", 400)
        if not fn["functionid"]:
            fn["functionid"] = _new_id()
        self.require_member(caller, fn["colonyname"])
        ex = self._executor_by_name(fn["colonyname"], fn["executorname"])
        if ex is None:
            raise RPCError(
                f"Failed to add function, Executor with name <{fn['executorname']}> does not exist",
                400,
            )
        if ex["executorid"] != caller:
            raise RPCError("Not allowed to add a function to another executor", 403)
        if self.store.get("functions", fn["functionid"]) is not None:
            raise RPCError(
                'pq: duplicate key value violates unique constraint "functions_pkey"', 500
            )
        # no uniqueness on (executor, funcname): registering again adds another row
        self.store.put("functions", fn["functionid"], fn)
        return go_encode(FUNCTION, fn)

    def mark_alive(self, ex: dict[str, Any]) -> None:
        """MarkAlive: only assign updates lastheardfromtime."""
        ex["lastheardfromtime"] = self.clock()
        self._put_executor(ex)

    def cleanup_stale_executors(self) -> list[str]:
        """cleanupStaleExecutors: unregister executors not heard from for too long."""
        now, gone = self.clock(), []
        for ex in self.store.all("executors"):
            if ex["state"] == UNREGISTERED_EXECUTOR or not ex["lastheardfromtime"]:
                continue
            if now - ex["lastheardfromtime"] > self.stale_executor_us:
                self._unregister(ex)
                gone.append(ex["executorname"])
        return gone

    # ---- processes (pkg/server/handlers/process, pkg/database/postgresql) -
    def _put_process(self, proc: dict[str, Any]) -> None:
        self.store.put("processes", proc["processid"], proc)

    def _process_or_none(self, processid: str) -> dict[str, Any] | None:
        return self.store.get("processes", processid)

    def render_process(self, proc: dict[str, Any]) -> Any:
        """The process as parseProcesses reads it back (times, env attributes)."""
        spec = proc["spec"]
        attributes = [
            {
                "attributeid": hashlib.sha3_256(
                    f"{proc['processid']}{ENV_ATTRIBUTE}{key}".encode()
                ).hexdigest(),
                "targetid": proc["processid"],
                "targetcolonyname": spec["conditions"]["colonyname"],
                "targetprocessgraphid": "",
                "state": proc["_attrstate"],
                "attributetype": ENV_ATTRIBUTE,
                "key": key,
                "value": value,
            }
            for key, value in sorted((spec["env"] or {}).items())
        ]
        doc = {k: v for k, v in proc.items() if not k.startswith("_")}
        doc.update(
            attributes=attributes,
            submissiontime=proc["_t"]["submission"],
            starttime=proc["_t"]["start"],
            endtime=proc["_t"]["end"],
            waitdeadline=proc["_t"]["waitdeadline"],
            execdeadline=proc["_t"]["execdeadline"],
        )
        return go_encode(PROCESS, doc)

    def rpc_submitfuncspecmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        spec = msg["spec"]
        if spec is None:
            raise RPCError("Failed to submit process spec, msg.FunctionSpec is nil", 400)
        cond = spec["conditions"]
        self.require_member(caller, cond["colonyname"])
        if not MIN_PRIORITY <= spec["priority"] <= MAX_PRIORITY:
            raise RPCError(
                "Failed to submit function spec, priority outside range "
                f"[{MIN_PRIORITY}, {MAX_PRIORITY}]",
                400,
            )
        ex = self.executor_by_id(caller)
        assert ex is not None
        # AddProcess: the quantities go to integer columns (parse errors refuse the submit)
        cpu = cpu_millis(cond["cpu"])
        mem = mem_bytes(cond["mem"])
        storage = mem_bytes(cond["storage"])
        gpu_mem = mem_bytes(cond["gpu"]["mem"])
        now_ns = self.clock() * 1000
        now = now_ns // 1000
        names = cond["executornames"]
        stored = dict(spec)
        stored.update(
            args=list(spec["args"] or []),
            kwargs=dict(spec["kwargs"] or {}),
            env=dict(spec["env"] or {}),
            channels=list(spec["channels"] or []),
            conditions={
                **cond,
                "executornames": [] if names == ["*"] else names,
                "dependencies": list(cond["dependencies"] or []),
                "cpu": f"{cpu}m",
                "mem": mem_text(mem),
                "storage": mem_text(storage),
                "gpu": {**cond["gpu"], "mem": mem_text(gpu_mem), "nodecount": 0},
            },
        )
        proc: dict[str, Any] = {
            "processid": _new_id(),
            "initiatorid": caller,
            "initiatorname": ex["executorname"],
            "assignedexecutorid": "",
            "isassigned": False,
            "state": WAITING,
            "prioritytime": spec["priority"] * -DAY_NS + now_ns,
            "retries": 0,
            "spec": stored,
            "waitforparents": False,
            "parents": [],
            "children": [],
            "processgraphid": "",
            "in": [],
            "out": [],
            "errors": [],
            "_t": {
                "submission": now,
                "start": 0,
                "end": 0,
                "waitdeadline": now + spec["maxwaittime"] * 10**6 if spec["maxwaittime"] > 0 else 0,
                "execdeadline": 0,
            },
            "_q": {"cpu": cpu, "mem": mem, "storage": storage},
            "_attrstate": WAITING,
        }
        self._put_process(proc)
        self._signal(proc)
        return self.render_process(proc)

    # assign --------------------------------------------------------------
    def _signal(self, proc: dict[str, Any]) -> None:
        """eventhandler.sendSignal: a WAITING process wakes one assign of its type (round robin)."""
        if proc["state"] != WAITING:
            return
        cond = proc["spec"]["conditions"]
        etype, location = cond["executortype"], cond.get("locationname", "")
        groups = (
            [location, ""]
            if location
            else sorted({w.location for w in self._waiters.values() if w.executor_type == etype})
        )
        for loc in groups:
            listeners = sorted(
                (
                    w
                    for w in self._waiters.values()
                    if (w.executor_type, w.location) == (etype, loc)
                ),
                key=lambda w: w.wid,
            )
            if not listeners:
                continue
            target = etype + str(WAITING) + loc
            index = self._round_robin.get(target, 0) % len(listeners)
            listeners[index].woken += 1
            self._round_robin[target] = index + 1
            self.cond.notify_all()
            return

    def _select_and_assign(
        self, ex: dict[str, Any], colonyname: str, cpu: int, mem: int
    ) -> dict[str, Any] | None:
        best = None
        for proc in self.store.all("processes"):
            c, q = proc["spec"]["conditions"], proc["_q"]
            names = c["executornames"]
            if not (
                proc["state"] == WAITING
                and not proc["isassigned"]
                and c["colonyname"] == colonyname
                and c["executortype"] == ex["executortype"]
                and (not names or ex["executorname"] in names)
                and q["cpu"] <= cpu
                and q["mem"] <= mem
                and c["nodes"] <= MAX_INT8
                and c["processes"] <= MAX_INT8
                and c["processespernode"] <= MAX_INT8
                and (
                    not c.get("locationname")
                    or c["locationname"].lower() == (ex.get("locationname") or "").lower()
                )
            ):
                continue
            if best is None or proc["prioritytime"] < best["prioritytime"]:
                best = proc
        if best is None:
            return None
        now = self.clock()
        best.update(isassigned=True, assignedexecutorid=ex["executorid"], state=RUNNING)
        best["_t"]["start"] = now
        if best["spec"]["maxexectime"] > 0:  # otherwise the deadline stays as it was
            best["_t"]["execdeadline"] = now + best["spec"]["maxexectime"] * 10**6
        best["_attrstate"] = RUNNING
        self._put_process(best)
        return best

    def rpc_assignprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        with self.lock:
            self.require_member(caller, msg["colonyname"])
            if msg["timeout"] == 0:
                raise RPCError("Invalid timeout value, timeout cannot be zero", 400)
            ex = self.executor_by_id(caller)
            if ex is None:
                raise RPCError("Failed to assign process, executor not found", 500)
            cpu = cpu_millis(msg["availablecpu"]) if msg["availablecpu"] else MAX_INT64
            mem = mem_bytes(msg["availablemem"]) if msg["availablemem"] else MAX_INT64
            timeout = msg["timeout"]
            deadline = time.monotonic() + timeout
            while True:
                self.mark_alive(ex)
                proc = self._select_and_assign(ex, msg["colonyname"], cpu, mem)
                if proc is not None:
                    return json.dumps(self.render_process(proc))
                if timeout < 0:
                    break
                self._next_waiter += 1
                waiter = _Waiter(self._next_waiter, ex["executortype"], ex.get("locationname", ""))
                self._waiters[waiter.wid] = waiter
                try:
                    while not waiter.woken:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self.cond.wait(remaining)
                finally:
                    del self._waiters[waiter.wid]
                if not waiter.woken:
                    break
        raise RPCError("No process available for assignment", 404)

    # reading ---------------------------------------------------------------
    def rpc_getprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._process_or_none(msg["processid"])
        if proc is None:
            raise RPCError("Failed to get process, process not found", 404)
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        return self.render_process(proc)

    def rpc_getprocessesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        count = msg["count"]
        if count > MAX_COUNT:
            raise RPCError(f"Count is larger than MaxCount limit <{MAX_COUNT}>", 400)
        if msg["initiator"]:
            raise RPCError(f"User <{msg['initiator']}> does not exist", 400)  # no users here
        state = msg["state"]
        if state not in (WAITING, RUNNING, SUCCESS, FAILED):
            raise RPCError("Failed to get processes, invalid msg.State", 400)
        if count < 0:
            raise RPCError("pq: LIMIT must not be negative", 400)
        procs = [
            p
            for p in self.store.all("processes")
            if p["spec"]["conditions"]["colonyname"] == msg["colonyname"] and p["state"] == state
        ]
        # one filter only, in this order of precedence (FindWaitingProcesses & co.)
        if msg["executortype"]:
            procs = [
                p for p in procs if p["spec"]["conditions"]["executortype"] == msg["executortype"]
            ]
        elif msg["label"]:
            procs = [p for p in procs if p["spec"]["label"] == msg["label"]]
        if state == WAITING:
            procs.sort(key=lambda p: p["prioritytime"])
        elif state == RUNNING:
            procs.sort(key=lambda p: p["_t"]["start"])
        else:
            procs.sort(key=lambda p: p["_t"]["end"], reverse=True)
        return [self.render_process(p) for p in procs[:count]] or None

    def rpc_removeprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._process_or_none(msg["processid"])
        if proc is None:
            raise RPCError("Failed to remove process, process is nil", 500)
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        if proc["state"] == RUNNING:
            raise RPCError("Failed to remove process, cannot remove a running process", 400)
        self.store.delete("processes", proc["processid"])
        return EMPTY

    def rpc_removeallprocessesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_colony_owner(caller, msg["colonyname"])
        state = msg["state"]
        if state == RUNNING:
            raise RPCError("Not possible to remove running processes", 400)
        if state not in (WAITING, SUCCESS, FAILED, -1):
            raise RPCError("Invalid state when deleting all processes", 400)
        for p in self.store.all("processes"):
            if p["spec"]["conditions"]["colonyname"] == msg["colonyname"] and (
                state == -1 or p["state"] == state
            ):
                self.store.delete("processes", p["processid"])
        return EMPTY

    # closing ---------------------------------------------------------------
    def _assigned(self, caller: str, msg: dict[str, Any], what: str) -> dict[str, Any]:
        proc = self._process_or_none(msg["processid"])
        if proc is None:
            raise RPCError(f"Failed to close process as {what}, process is nil", 500)
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        if proc["assignedexecutorid"] == "":
            raise RPCError(f"Failed to close process as {what}, process is not assigned", 403)
        if proc["assignedexecutorid"] != caller:
            raise RPCError(
                f"Failed to close process as {what}, not allowed to close process as {what}", 403
            )
        return proc

    def rpc_closesuccessfulmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned(caller, msg, "successful")
        if msg["out"]:  # set before the state check: a refused close still sets the output
            proc["out"] = msg["out"]
            self._put_process(proc)
        if proc["state"] == FAILED:
            raise RPCError("Tried to set failed process as successful", 400)
        if proc["state"] == WAITING:
            raise RPCError("Tried to set waiting process as successful without being running", 400)
        self._mark(proc, SUCCESS)  # closing a SUCCESS process again is accepted
        return EMPTY

    def rpc_closefailedmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned(caller, msg, "failed")
        self._mark_failed(proc, msg["errors"])
        return EMPTY

    def _mark(self, proc: dict[str, Any], state: int) -> None:
        proc["state"] = state
        proc["_attrstate"] = state
        proc["_t"]["end"] = self.clock()
        self._put_process(proc)

    def _mark_failed(self, proc: dict[str, Any], errors: list[str] | None) -> None:
        """MarkFailed: any state but SUCCESS/FAILED; the assignment is kept."""
        if proc["state"] == SUCCESS:
            raise RPCError("Tried to set successful process as failed", 400)
        if proc["state"] == FAILED:
            raise RPCError("Tried to set failed process as failed", 400)
        proc["errors"] = errors
        self._mark(proc, FAILED)

    def rpc_setoutputmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._process_or_none(msg["processid"])
        if proc is None:
            raise RPCError("Failed to set output, process is nil", 500)
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        if proc["assignedexecutorid"] != caller:
            raise RPCError(
                "Failed to close process as successful, not allowed to close process as successful",
                403,
            )
        if proc["state"] != RUNNING:
            raise RPCError("Failed to set output, process is not running", 403)
        if msg["out"]:
            proc["out"] = msg["out"]
            self._put_process(proc)
        return EMPTY

    # the controller's timeout loop -----------------------------------------
    def _unassign(self, proc: dict[str, Any]) -> None:
        """Unassign: WAITING, retries+1, new wait deadline; start time and exec deadline kept."""
        now = self.clock()
        proc.update(
            isassigned=False, assignedexecutorid="", state=WAITING, retries=proc["retries"] + 1
        )
        proc["_t"]["end"] = now
        if proc["spec"]["maxwaittime"] > 0:
            proc["_t"]["waitdeadline"] = now + proc["spec"]["maxwaittime"] * 10**6
        proc["_attrstate"] = WAITING
        self._put_process(proc)
        self._signal(proc)

    def expire(self) -> None:
        """One pass of TimeoutLoop (every RELEASE_PERIOD = 1 s; deadlines in whole seconds)."""
        now_s = math.floor(self.clock() / 10**6)

        def passed(deadline_us: int) -> bool:
            return now_s > (math.floor(deadline_us / 10**6) if deadline_us else -62135596800)

        procs = self.store.all("processes")
        for proc in sorted(
            (p for p in procs if p["state"] == RUNNING), key=lambda p: p["_t"]["start"]
        ):
            spec = proc["spec"]
            if spec["maxexectime"] == -1 or not passed(proc["_t"]["execdeadline"]):
                continue
            if proc["retries"] >= spec["maxretries"] and spec["maxretries"] > -1:
                self._mark_failed(proc, ["Maximum execution time limit exceeded"])
            else:
                self._unassign(proc)
        waiting = sorted(
            (p for p in procs if p["state"] == WAITING), key=lambda p: p["prioritytime"]
        )
        for proc in waiting[:1000]:
            if proc["spec"]["maxwaittime"] in (-1, 0) or not passed(proc["_t"]["waitdeadline"]):
                continue
            self._mark_failed(proc, ["Maximum waiting time limit exceeded"])

    # ---- logs (pkg/server/handlers/log) -----------------------------------
    def rpc_addlogmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._process_or_none(msg["processid"])
        if proc is None:
            raise RPCError("Failed to add log, process is nil", 500)
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        ex = self.executor_by_id(caller)
        assert ex is not None
        if proc["state"] != RUNNING:
            raise RPCError("Failed to set output, process is not running", 403)
        if proc["assignedexecutorid"] != caller:
            raise RPCError(
                "Failed to add log, not allowed to add log, only the assigned Executor may att"
                " logs",
                403,
            )
        now_ns = time.time_ns() if self.clock is _now_us else self.clock() * 1000
        ts = self._last_log_ns = max(now_ns, self._last_log_ns + 1)
        doc = {
            "processid": proc["processid"],
            "colonyname": proc["spec"]["conditions"]["colonyname"],
            "executorname": ex["executorname"],
            "message": msg["message"],
            "timestamp": ts,
        }
        self.store.db.execute(
            "INSERT INTO logs (processid, executorname, ts, doc) VALUES (?, ?, ?, ?)",
            (proc["processid"], ex["executorname"], ts, json.dumps(doc)),
        )
        return EMPTY

    def rpc_getlogsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        if msg["executorname"]:
            ex = self._executor_by_name(msg["colonyname"], msg["executorname"])
            if ex is None:
                raise RPCError("Failed to get logs, executor does not exist", 500)
            self.require_member(caller, ex["colonyname"])
            col, val = "executorname", msg["executorname"]
        else:
            proc = self._process_or_none(msg["processid"])
            if proc is None:
                raise RPCError("Failed to get logs, process does not exist", 500)
            self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
            col, val = "processid", msg["processid"]
        count = msg["count"]
        if count > MAX_LOG_COUNT:
            raise RPCError(f"Count exceeds max log count ({MAX_LOG_COUNT})", 403)
        if count < 0:
            raise RPCError("pq: LIMIT must not be negative", 400)
        if msg["latest"]:
            rows = self.store.db.execute(
                f"SELECT doc FROM logs WHERE {col} = ? ORDER BY ts DESC, seq DESC LIMIT ?",
                (val, count),
            ).fetchall()[::-1]
        else:  # `since` counts only when positive
            rows = self.store.db.execute(
                f"SELECT doc FROM logs WHERE {col} = ? AND ts > ? ORDER BY ts, seq LIMIT ?",
                (val, max(msg["since"], 0), count),
            ).fetchall()
        return [json.loads(r[0]) for r in rows] or None

    # ---- CFS metadata (pkg/server/handlers/file, snapshot) ----------------
    def _files(self, colonyname: str) -> list[dict[str, Any]]:
        return [x for x in self.store.all("files") if x["colonyname"] == colonyname]

    def _render_file(self, f: dict[str, Any]) -> Any:
        doc = dict(f)
        doc["ref"] = {**f["ref"], "protocol": "s3"}  # parseFiles always says s3
        return go_encode(FILE, doc)

    def rpc_addfilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        f = msg["file"]
        if f is None:
            raise RPCError("Failed to add file, msg.File is nil", 400)
        self.require_member(caller, f["colonyname"])
        f["fileid"] = _new_id()
        f["sequencenr"] = self.store.next_seq("file_seq")  # one sequence for every file
        f["added"] = self.clock()
        self.store.put("files", f["fileid"], f)
        return self._render_file(f)

    def _latest(self, colonyname: str, label: str, name: str) -> dict[str, Any] | None:
        same = [x for x in self._files(colonyname) if x["label"] == label and x["name"] == name]
        return max(same, key=lambda x: x["sequencenr"]) if same else None

    def rpc_getfilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        if msg["fileid"]:
            f = self.store.get("files", msg["fileid"])
            if f is None or f["colonyname"] != msg["colonyname"]:
                raise RPCError("Failed to get file", 400)
            files = [f]
        elif msg["label"] and msg["name"]:
            if msg["latest"]:
                latest = self._latest(msg["colonyname"], msg["label"], msg["name"])
                files = [latest] if latest else []
            else:
                files = sorted(
                    (
                        x
                        for x in self._files(msg["colonyname"])
                        if x["label"] == msg["label"] and x["name"] == msg["name"]
                    ),
                    key=lambda x: -x["sequencenr"],
                )
        else:
            raise RPCError("malformatted get file msg", 500)
        if not files:
            raise RPCError("Failed to get file", 404)
        return [self._render_file(f) for f in files]

    def rpc_getfilesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        latest: dict[str, dict[str, Any]] = {}
        for x in self._files(msg["colonyname"]):
            if x["label"] == msg["label"] and (
                x["name"] not in latest or latest[x["name"]]["sequencenr"] < x["sequencenr"]
            ):
                latest[x["name"]] = x
        return [
            go_encode(
                FILE_DATA,
                {
                    "name": x["name"],
                    "checksum": x["checksum"],
                    "size": x["size"],
                    "s3filename": x["ref"]["s3object"]["object"],
                },
            )
            for x in latest.values()
        ]

    def _labels(self, colonyname: str, name: str, exact: bool) -> list[dict[str, Any]] | None:
        """GetFileLabelsByName: LIKE 'NAME%', or with `exact` LIKE 'NAME/%' plus NAME itself,
        and then nothing at all when NAME itself holds no files."""
        counts: dict[str, int] = {}
        for x in self._files(colonyname):
            counts[x["label"]] = counts.get(x["label"], 0) + 1
        if name is None:  # GetFileLabels: every label
            found = list(counts)
        elif not exact:
            found = [label for label in counts if like(name + "%", label)]
        else:
            if name not in counts:  # the label itself holds no files: nothing at all
                return None
            found = [label for label in counts if like(name + "/%", label) or label == name]
        return [{"name": label, "files": counts[label]} for label in found] or None

    def rpc_getfilelabelsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return self._labels(msg["colonyname"], msg["name"] or None, msg["exact"])

    def rpc_removefilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        if msg["fileid"]:
            doomed = [x for x in self._files(msg["colonyname"]) if x["fileid"] == msg["fileid"]]
        elif msg["label"] and msg["name"]:
            doomed = [
                x
                for x in self._files(msg["colonyname"])
                if x["label"] == msg["label"] and x["name"] == msg["name"]
            ]
        else:
            raise RPCError("malformatted remove file msg", 400)
        for x in doomed:
            self.store.delete("files", x["fileid"])
        return EMPTY

    def rpc_createsnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony, name = msg["colonyname"], msg["name"]
        self.require_member(caller, colony)
        if any(s["_key"] == f"{colony}:{name}" for s in self.store.all("snapshots")):
            raise RPCError(f"Snapshot with name <{name}> in Colony <{colony}> already exists", 500)
        label = msg["label"].removesuffix("/")
        fileids = []
        for entry in self._labels(colony, label, True) or []:
            names = {x["name"] for x in self._files(colony) if x["label"] == entry["name"]}
            for fname in names:
                latest = self._latest(colony, entry["name"], fname)
                assert latest is not None
                fileids.append(latest["fileid"])
        snap = {
            "snapshotid": _new_id(),
            "colonyname": colony,
            "label": label,
            "name": name,
            "fileids": fileids or None,
            "added": self.clock(),
            "_key": f"{colony}:{name}",
        }
        self.store.put("snapshots", snap["snapshotid"], snap)
        return go_encode(SNAPSHOT, snap)

    def _snapshot(self, msg: dict[str, Any], what: str) -> dict[str, Any] | None:
        colony = msg["colonyname"]
        for s in self.store.all("snapshots"):
            if s["colonyname"] != colony:
                continue
            if (msg["snapshotid"] and s["snapshotid"] == msg["snapshotid"]) or (
                not msg["snapshotid"] and msg["name"] and s["_key"] == f"{colony}:{msg['name']}"
            ):
                return s
        if not msg["snapshotid"] and not msg["name"]:
            raise RPCError(f"Failed to {what}, malformatted msg", 500)
        return None

    @staticmethod
    def _render_snapshot(snap: dict[str, Any]) -> Any:
        """parseSnapshots: the stored name is "colony:name"; another ':' breaks every read."""
        parts = snap["_key"].split(":")
        if len(parts) != 2:
            raise RPCError("invalid split name", 500)
        return go_encode(SNAPSHOT, {**snap, "name": parts[1]})

    def rpc_getsnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        snap = self._snapshot(msg, "get snapshot")
        if snap is None:
            colony = msg["colonyname"]
            if msg["snapshotid"]:
                raise RPCError(
                    f"Snapshot not found with Id <{msg['snapshotid']}> in Colony <{colony}> "
                    "does not exists",
                    500,
                )
            raise RPCError(
                f"Snapshot not found with name <{msg['name']}> in Colony <{colony}> does not "
                "exists",
                500,
            )
        return self._render_snapshot(snap)

    def rpc_getsnapshotsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        snaps = [s for s in self.store.all("snapshots") if s["colonyname"] == msg["colonyname"]]
        snaps.sort(key=lambda s: s["added"], reverse=True)
        return [self._render_snapshot(s) for s in snaps] or None

    def rpc_removesnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        snap = self._snapshot(msg, "remove snapsnot")
        if snap is not None:  # removing a missing snapshot is not an error
            self.store.delete("snapshots", snap["snapshotid"])
        return EMPTY


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
def make_handler(app: ColoniesLite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{go_time(_now_us())} {format % args}\n")

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/health":
                self._send(200, b"", "text/plain; charset=utf-8")
            else:
                self._send(404, b"404 page not found", "text/plain")

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/api":
                self._send(404, b"404 page not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            try:
                status, reply = app.dispatch(data)
            except Exception as err:  # pragma: no cover - surfaced in logs
                self.log_message("internal error: %r", err)
                status, reply = app._error(f"Internal error: {err!r}", 500)
            self._send(status, json.dumps(reply).encode(), "text/plain; charset=utf-8")

    return Handler


def start_workers(app: ColoniesLite) -> None:
    """The controller's loops: timeouts every second, stale executors every interval."""

    def timeouts() -> None:
        while True:
            time.sleep(1.0)
            with app.lock:
                app.expire()

    def cleanup() -> None:
        while True:
            time.sleep(app.cleanup_interval)
            with app.lock:
                for name in app.cleanup_stale_executors():
                    sys.stderr.write(f"{go_time(_now_us())} auto-removed stale executor {name}\n")

    threading.Thread(target=timeouts, daemon=True).start()
    threading.Thread(target=cleanup, daemon=True).start()


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when hundreds of clients
    # submit at once (the executor benchmark); the Go server's backlog is the OS's.
    request_queue_size = 1024
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--server-id", default=os.environ.get("COLONIES_SERVER_ID", ""))
    args = ap.parse_args(argv)
    if not args.server_id:
        ap.error("--server-id or COLONIES_SERVER_ID is required")
    app = ColoniesLite(args.data_dir, args.server_id)
    httpd = _Server((args.host, args.port), make_handler(app))
    start_workers(app)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.stderr.write(f"colonies-lite listening on {args.host}:{args.port}, data {args.data_dir}\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
