"""A Colonies-protocol server for the tests ("colonies-lite").

Why this exists: the real Colonies server (Go module github.com/colonyos/colonies)
is refused by the Go module proxy this project can reach (403 for every
version), so it cannot be built from the project's own files. This module
speaks the same wire protocol as Colonies v1.9.7 for the subset kubejobs uses:

- ``POST /api``: ``{"payloadtype", "payload" (base64 JSON), "signature"}``;
  the caller's id is recovered from the secp256k1 signature over the base64
  payload (SHA3-256), exactly as the real server does; replies are
  ``{"payloadtype", "payload" (base64 JSON), "error"}``, errors carry
  ``{"status", "message"}``.
- ``GET /health``: 200.

Implemented messages: colonies (add/get/list/remove), executors
(add/approve/reject/remove/get/list), submitfuncspec, assign (long poll),
get/list/remove process, close successful/failed, set output, add/get logs,
CFS metadata (add/get/list/remove files, labels, snapshots), version.
Semantics follow colonies.md: keys and ownership (server key adds colonies,
colony key manages executors, approved executor submits/assigns/closes/logs),
only the assigned executor may close/fail/log a RUNNING process, maxexectime
(back to WAITING, retries+1, or FAILED at maxretries), maxwaittime, removing an
executor puts its RUNNING processes back to WAITING, logs at most 500 per read,
``since`` in nanoseconds, executor re-registration allowed after removal.

State lives in a SQLite file in the data directory, so stopping and starting
the server keeps colonies, executors, processes, logs and files (like the real
server with its PostgreSQL). Not implemented: workflows, crons, generators,
channels, /pubsub websockets (pycolonies ``wait``), users, blueprints.

Run: ``python -m testenv.colonies_server --port P --data-dir D --server-id ID``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WAITING, RUNNING, SUCCESS, FAILED = 0, 1, 2, 3
PENDING_EXECUTOR, APPROVED_EXECUTOR, REJECTED_EXECUTOR = 0, 1, 2
MAX_LOG_COUNT = 500
MAX_COUNT = 100  # list operations (processes) refuse larger counts
ZERO_TIME = "0001-01-01T00:00:00Z"

# --------------------------------------------------------------------------
# secp256k1 public-key recovery (signatures are r || s || v, v in {0, 1})
# --------------------------------------------------------------------------
_P = 2**256 - 2**32 - 977
_N = 115792089237316195423570985008687907852837564279074904382605163141518161494337
_G = (
    55066263022277343669578718895168534326250603453777594175500187360389116729240,
    32670510020758816978083085130507043184471273380659243275938904335757337482424,
)

Jac = tuple[int, int, int]


def _jdouble(p: Jac) -> Jac:
    x, y, z = p
    if y == 0:
        return (0, 0, 0)
    ysq = y * y % _P
    s = 4 * x * ysq % _P
    m = 3 * x * x % _P
    nx = (m * m - 2 * s) % _P
    ny = (m * (s - nx) - 8 * ysq * ysq) % _P
    nz = 2 * y * z % _P
    return (nx, ny, nz)


def _jadd(p: Jac, q: Jac) -> Jac:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    z1s, z2s = p[2] * p[2] % _P, q[2] * q[2] % _P
    u1, u2 = p[0] * z2s % _P, q[0] * z1s % _P
    s1, s2 = p[1] * z2s * q[2] % _P, q[1] * z1s * p[2] % _P
    if u1 == u2:
        return _jdouble(p) if s1 == s2 else (0, 0, 0)
    h, r = u2 - u1, s2 - s1
    h2 = h * h % _P
    h3 = h * h2 % _P
    u1h2 = u1 * h2 % _P
    nx = (r * r - h3 - 2 * u1h2) % _P
    ny = (r * (u1h2 - nx) - s1 * h3) % _P
    nz = h * p[2] * q[2] % _P
    return (nx, ny, nz)


def _jmul(p: Jac, n: int) -> Jac:
    result: Jac = (0, 0, 0)
    addend = p
    while n:
        if n & 1:
            result = _jadd(result, addend)
        addend = _jdouble(addend)
        n >>= 1
    return result


def _affine(p: Jac) -> tuple[int, int]:
    zinv = pow(p[2], -1, _P)
    return (p[0] * zinv * zinv % _P, p[1] * zinv * zinv * zinv % _P)


def recover_id(payload: str, signature_hex: str) -> str:
    """Return the Colonies id (SHA3-256 of the hex uncompressed public key)."""
    sig = bytes.fromhex(signature_hex)
    if len(sig) != 65:
        raise ValueError("invalid signature length")
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if v >= 27:
        v -= 27
    if not (0 < r < _N and 0 < s < _N and v in (0, 1)):
        raise ValueError("invalid signature")
    z = int.from_bytes(hashlib.sha3_256(payload.encode()).digest(), "big")
    x = r
    y = pow((x * x * x + 7) % _P, (_P + 1) // 4, _P)
    if (y * y - (x * x * x + 7)) % _P != 0:
        raise ValueError("invalid signature point")
    if y % 2 != v:
        y = _P - y
    rinv = pow(r, -1, _N)
    # Q = r^-1 (sR - zG) = u1*G + u2*R, computed in one pass (Shamir's trick)
    u1, u2 = (-z * rinv) % _N, (s * rinv) % _N
    g: Jac = (_G[0], _G[1], 1)
    rr: Jac = (x, y, 1)
    both = _jadd(g, rr)
    q: Jac = (0, 0, 0)
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        q = _jdouble(q)
        b1, b2 = (u1 >> bit) & 1, (u2 >> bit) & 1
        if b1 and b2:
            q = _jadd(q, both)
        elif b1:
            q = _jadd(q, g)
        elif b2:
            q = _jadd(q, rr)
    if q[2] == 0:
        raise ValueError("invalid signature")
    return _pub_id(*_affine(q))


def _pub_id(qx: int, qy: int) -> str:
    pub_hex = "04" + qx.to_bytes(32, "big").hex() + qy.to_bytes(32, "big").hex()
    return hashlib.sha3_256(pub_hex.encode()).hexdigest()


def generate_prvkey() -> str:
    """A new private key (hex), as Colonies clients make them."""
    while True:
        key = hashlib.sha3_256(os.urandom(32)).digest()
        if 0 < int.from_bytes(key, "big") < _N:
            return key.hex()


def key_id(prvkey_hex: str) -> str:
    """The Colonies id of a private key."""
    qx, qy = _affine(_jmul((_G[0], _G[1], 1), int(prvkey_hex, 16)))
    return _pub_id(qx, qy)


def sign(payload: str, prvkey_hex: str) -> str:
    """Sign like Colonies clients: SHA3-256 of the text, r || s || v (hex)."""
    z = int.from_bytes(hashlib.sha3_256(payload.encode()).digest(), "big")
    d = int(prvkey_hex, 16)
    while True:
        k = int.from_bytes(os.urandom(32), "big") % _N
        if k == 0:
            continue
        rx, ry = _affine(_jmul((_G[0], _G[1], 1), k))
        r = rx % _N
        if r == 0:
            continue
        s = pow(k, -1, _N) * (z + r * d) % _N
        if s == 0:
            continue
        v = ry % 2
        if s * 2 >= _N:
            s = _N - s
            v ^= 1
        return (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class RPCError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(dt: datetime | None) -> str:
    if dt is None:
        return ZERO_TIME
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return hashlib.sha256(uuid.uuid4().bytes + os.urandom(16)).hexdigest()


def _defaults_spec(spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    spec.setdefault("nodename", "")
    spec.setdefault("funcname", "")
    spec.setdefault("args", [])
    spec.setdefault("kwargs", {})
    spec.setdefault("priority", 0)
    spec.setdefault("maxwaittime", 0)
    spec.setdefault("maxexectime", 0)
    spec.setdefault("maxretries", 0)
    spec.setdefault("label", "")
    spec.setdefault("env", {})
    spec.setdefault("channels", [])
    cond = dict(spec.get("conditions") or {})
    for key, default in (
        ("colonyname", ""),
        ("executornames", []),
        ("executortype", ""),
        ("locationname", ""),
        ("dependencies", []),
        ("nodes", 0),
        ("cpu", ""),
        ("processes", 0),
        ("processespernode", 0),
        ("mem", ""),
        ("storage", ""),
        ("walltime", 0),
    ):
        if cond.get(key) is None:
            cond[key] = default
    cond.setdefault("gpu", {"name": "", "mem": "", "count": 0, "nodecount": 0})
    spec["conditions"] = cond
    if spec.get("fs") is None:
        spec["fs"] = {"mount": "", "snapshots": None, "dirs": None}
    return spec


# --------------------------------------------------------------------------
# state (SQLite, one JSON document per row)
# --------------------------------------------------------------------------
class Store:
    TABLES = ("colonies", "executors", "processes", "files", "snapshots")

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        for t in self.TABLES:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, doc TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " processid TEXT, executorname TEXT, ts INTEGER, doc TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")

        # write-through cache: documents are read from memory, persisted on put
        self.cache: dict[str, dict[str, dict[str, Any]]] = {}
        for t in self.TABLES:
            rows = self.db.execute(f"SELECT id, doc FROM {t}").fetchall()
            self.cache[t] = {k: json.loads(v) for k, v in rows}

    def put(self, table: str, key: str, doc: dict[str, Any]) -> None:
        self.cache[table][key] = doc
        self.db.execute(
            f"INSERT OR REPLACE INTO {table} (id, doc) VALUES (?, ?)", (key, json.dumps(doc))
        )

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self.cache[table].get(key)

    def delete(self, table: str, key: str) -> None:
        self.cache[table].pop(key, None)
        self.db.execute(f"DELETE FROM {table} WHERE id = ?", (key,))

    def all(self, table: str) -> list[dict[str, Any]]:
        return list(self.cache[table].values())


class ColoniesLite:
    def __init__(self, data_dir: str, server_id: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.store = Store(os.path.join(data_dir, "colonies.sqlite"))
        self.server_id = server_id
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.allow_reregister = os.environ.get("COLONIES_ALLOW_EXECUTOR_REREGISTER", "") == "true"

    # ---- identity helpers ----------------------------------------------
    def colony(self, name: str) -> dict[str, Any]:
        col = self.store.get("colonies", name)
        if col is None:
            raise RPCError(f"Colony with name <{name}> does not exist", 400)
        return col

    def executor_by_id(self, executor_id: str) -> dict[str, Any] | None:
        for ex in self.store.all("executors"):
            if ex["executorid"] == executor_id:
                return ex
        return None

    def require_colony_owner(self, caller: str, colonyname: str) -> dict[str, Any]:
        col = self.colony(colonyname)
        if col["colonyid"] != caller:
            raise RPCError("Access denied, not colony owner", 403)
        return col

    def require_member(self, caller: str, colonyname: str) -> dict[str, Any] | None:
        """An approved executor of the colony (or the colony owner)."""
        col = self.colony(colonyname)
        if col["colonyid"] == caller:
            return None
        ex = self.executor_by_id(caller)
        if ex is None or ex["colonyname"] != colonyname:
            raise RPCError("Access denied, not member of colony", 403)
        if ex["state"] != APPROVED_EXECUTOR:
            raise RPCError("Access denied, executor not approved", 403)
        ex["lastheardfromtime"] = _ts(_now())
        self.store.put("executors", f"{colonyname}/{ex['executorname']}", ex)
        return ex

    def process(self, processid: str) -> dict[str, Any]:
        proc = self.store.get("processes", processid)
        if proc is None:
            raise RPCError(f"Process with Id <{processid}> not found", 404)
        return proc

    # ---- dispatch -----------------------------------------------------
    def handle(self, caller: str, msgtype: str, msg: dict[str, Any]) -> str:
        """Run one RPC; returns the reply payload as JSON text (made under the lock,
        as documents are shared with the in-memory store)."""
        fn = getattr(self, "rpc_" + msgtype, None)
        if fn is None:
            raise RPCError(f"Unsupported payload type <{msgtype}> (colonies-lite)", 400)
        if msgtype == "assignprocessmsg":
            return str(fn(caller, msg))  # takes the lock itself (long poll), returns JSON
        with self.lock:
            self.expire()
            return json.dumps(fn(caller, msg))

    # ---- colonies ------------------------------------------------------
    def rpc_versionmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return {"buildversion": "v1.9.7-colonies-lite", "buildtime": ""}

    def rpc_addcolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        if caller != self.server_id:
            raise RPCError("Access denied, not server owner", 403)
        colony = msg["colony"]
        if self.store.get("colonies", colony["name"]) is not None:
            raise RPCError(f"A colony with name <{colony['name']}> already exists", 400)
        doc = {"colonyid": colony["colonyid"], "name": colony["name"]}
        self.store.put("colonies", colony["name"], doc)
        return doc

    def rpc_removecolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        if caller != self.server_id:
            raise RPCError("Access denied, not server owner", 403)
        self.colony(msg["colonyname"])
        self.store.delete("colonies", msg["colonyname"])
        return None

    def rpc_getcoloniesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        if caller != self.server_id:
            raise RPCError("Access denied, not server owner", 403)
        return self.store.all("colonies")

    def rpc_getcolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        col = self.colony(msg["colonyname"])
        if caller not in (self.server_id, col["colonyid"]):
            self.require_member(caller, msg["colonyname"])
        return col

    # ---- executors -----------------------------------------------------
    def rpc_addexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = dict(msg["executor"])
        self.require_colony_owner(caller, ex["colonyname"])
        key = f"{ex['colonyname']}/{ex['executorname']}"
        old = self.store.get("executors", key)
        if old is not None and not (old.get("removed") and self.allow_reregister):
            raise RPCError(f"Executor with name <{ex['executorname']}> already exists", 400)
        if self.executor_by_id(ex["executorid"]) not in (None, old):
            raise RPCError("Executor with the same Id already exists", 400)
        now = _ts(_now())
        ex.setdefault("executortype", "")
        ex["state"] = PENDING_EXECUTOR
        ex["requirefuncreg"] = bool(ex.get("requirefuncreg", False))
        ex["commissiontime"] = now
        ex["lastheardfromtime"] = now
        ex.pop("removed", None)
        self.store.put("executors", key, ex)
        return ex

    def _executor(self, colonyname: str, name: str) -> dict[str, Any]:
        ex = self.store.get("executors", f"{colonyname}/{name}")
        if ex is None or ex.get("removed"):
            raise RPCError(f"Executor with name <{name}> not found", 404)
        return ex

    def _set_executor_state(self, caller: str, msg: dict[str, Any], state: int) -> Any:
        self.require_colony_owner(caller, msg["colonyname"])
        ex = self._executor(msg["colonyname"], msg["executorname"])
        ex["state"] = state
        self.store.put("executors", f"{msg['colonyname']}/{msg['executorname']}", ex)
        return None

    def rpc_approveexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return self._set_executor_state(caller, msg, APPROVED_EXECUTOR)

    def rpc_rejectexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return self._set_executor_state(caller, msg, REJECTED_EXECUTOR)

    def rpc_removeexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_colony_owner(caller, msg["colonyname"])
        ex = self._executor(msg["colonyname"], msg["executorname"])
        for proc in self.store.all("processes"):
            if proc["state"] == RUNNING and proc["assignedexecutorid"] == ex["executorid"]:
                self._unassign(proc)
        if self.allow_reregister:
            ex["removed"] = True
            ex["executorid"] = "removed-" + ex["executorid"]
            self.store.put("executors", f"{msg['colonyname']}/{msg['executorname']}", ex)
        else:
            # the real server keeps the name reserved: keep a tombstone
            ex["removed"] = True
            ex["executorid"] = "removed-" + ex["executorid"]
            self.store.put("executors", f"{msg['colonyname']}/{msg['executorname']}", ex)
        self.cond.notify_all()
        return None

    def rpc_getexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return self._executor(msg["colonyname"], msg["executorname"])

    def rpc_getexecutorsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return [
            e
            for e in self.store.all("executors")
            if e["colonyname"] == msg["colonyname"] and not e.get("removed")
        ]

    # ---- processes -----------------------------------------------------
    def rpc_submitfuncspecmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        spec = _defaults_spec(msg["spec"])
        colonyname = spec["conditions"]["colonyname"]
        ex = self.require_member(caller, colonyname)
        now = _now()
        proc: dict[str, Any] = {
            "processid": _new_id(),
            "initiatorid": caller,
            "initiatorname": ex["executorname"] if ex else "",
            "assignedexecutorid": "",
            "isassigned": False,
            "state": WAITING,
            "prioritytime": int(now.timestamp() * 1e9) - int(spec["priority"]) * 60 * 10**9,
            "submissiontime": _ts(now),
            "starttime": ZERO_TIME,
            "endtime": ZERO_TIME,
            "waitdeadline": ZERO_TIME,
            "execdeadline": ZERO_TIME,
            "retries": 0,
            "attributes": [],
            "spec": spec,
            "waitforparents": False,
            "parents": [],
            "children": [],
            "processgraphid": "",
            "in": [],
            "out": [],
            "errors": [],
        }
        if spec["maxwaittime"] > 0:
            proc["waitdeadline"] = _ts(
                datetime.fromtimestamp(now.timestamp() + spec["maxwaittime"], UTC)
            )
        self.store.put("processes", proc["processid"], proc)
        self.cond.notify_all()
        return proc

    def _candidates(self, ex: dict[str, Any], colonyname: str) -> list[dict[str, Any]]:
        out = []
        for proc in self.store.all("processes"):
            c = proc["spec"]["conditions"]
            if proc["state"] != WAITING or c["colonyname"] != colonyname:
                continue
            if c.get("executortype") and c["executortype"] != ex["executortype"]:
                continue
            names = c.get("executornames") or []
            if names and ex["executorname"] not in names:
                continue
            out.append(proc)
        out.sort(key=lambda p: p["prioritytime"])
        return out

    def rpc_assignprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        timeout = float(msg.get("timeout") or 0)
        deadline = time.monotonic() + max(timeout, 0)
        with self.lock:
            while True:
                self.expire()
                ex = self.require_member(caller, msg["colonyname"])
                if ex is None:
                    raise RPCError("Access denied, only executors may assign", 403)
                cands = self._candidates(ex, msg["colonyname"])
                if cands:
                    proc = cands[0]
                    now = _now()
                    proc["state"] = RUNNING
                    proc["isassigned"] = True
                    proc["assignedexecutorid"] = ex["executorid"]
                    proc["starttime"] = _ts(now)
                    maxexec = proc["spec"]["maxexectime"]
                    if maxexec >= 0:
                        proc["execdeadline"] = _ts(
                            datetime.fromtimestamp(now.timestamp() + maxexec, UTC)
                        )
                    else:
                        proc["execdeadline"] = ZERO_TIME
                    self.store.put("processes", proc["processid"], proc)
                    return json.dumps(proc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RPCError("No process available for assignment", 404)
                self.cond.wait(min(remaining, 0.5))

    def rpc_getprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self.process(msg["processid"])
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        return proc

    def rpc_getprocessesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        count = int(msg.get("count") or 0)
        if count > MAX_COUNT:  # as the real server (constants.MAX_COUNT)
            raise RPCError(f"Count is larger than MaxCount limit <{MAX_COUNT}>", 400)
        procs = [
            p
            for p in self.store.all("processes")
            if p["spec"]["conditions"]["colonyname"] == msg["colonyname"]
            and p["state"] == msg.get("state", p["state"])
            and (
                not msg.get("executortype")
                or p["spec"]["conditions"]["executortype"] == msg["executortype"]
            )
            and (not msg.get("label") or p["spec"]["label"] == msg["label"])
        ]
        # The real server orders RUNNING processes by start time, others by submission.
        key = "starttime" if msg.get("state") == 1 else "submissiontime"
        procs.sort(key=lambda p: p[key])
        return procs[:count]

    def rpc_removeprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self.process(msg["processid"])
        self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        self.store.delete("processes", proc["processid"])
        return None

    def rpc_removeallprocessesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_colony_owner(caller, msg["colonyname"])
        for p in self.store.all("processes"):
            if p["spec"]["conditions"]["colonyname"] == msg["colonyname"]:
                self.store.delete("processes", p["processid"])
        return None

    def _assigned_running(self, caller: str, processid: str) -> dict[str, Any]:
        proc = self.process(processid)
        ex = self.require_member(caller, proc["spec"]["conditions"]["colonyname"])
        if ex is None or proc["assignedexecutorid"] != ex["executorid"]:
            raise RPCError("Access denied, not assigned executor", 403)
        if proc["state"] != RUNNING:
            raise RPCError(f"Process with Id <{processid}> is not running", 400)
        return proc

    def _finish(self, proc: dict[str, Any], state: int) -> None:
        proc["state"] = state
        proc["endtime"] = _ts(_now())
        self.store.put("processes", proc["processid"], proc)
        self.cond.notify_all()

    def rpc_closesuccessfulmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned_running(caller, msg["processid"])
        if msg.get("out") is not None:
            proc["out"] = msg["out"]
        self._finish(proc, SUCCESS)
        return None

    def rpc_closefailedmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned_running(caller, msg["processid"])
        proc["errors"] = list(msg.get("errors") or [])
        self._finish(proc, FAILED)
        return None

    def rpc_setoutputmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned_running(caller, msg["processid"])
        proc["out"] = msg.get("out") or []
        self.store.put("processes", proc["processid"], proc)
        return None

    def _unassign(self, proc: dict[str, Any]) -> None:
        proc["state"] = WAITING
        proc["isassigned"] = False
        proc["assignedexecutorid"] = ""
        proc["starttime"] = ZERO_TIME
        proc["execdeadline"] = ZERO_TIME
        self.store.put("processes", proc["processid"], proc)

    def expire(self) -> None:
        """maxexectime / maxwaittime, checked on every request and by a timer."""
        now = _now()
        stamp = _ts(now)
        changed = False
        for proc in self.store.all("processes"):
            spec = proc["spec"]
            if (
                proc["state"] == RUNNING
                and spec["maxexectime"] >= 0
                and proc["execdeadline"] != ZERO_TIME
            ):
                if proc["execdeadline"] <= stamp:
                    if spec["maxretries"] >= 0 and proc["retries"] >= spec["maxretries"]:
                        proc["errors"] = ["Maximum execution time limit exceeded"]
                        proc["state"] = FAILED
                        proc["endtime"] = stamp
                        self.store.put("processes", proc["processid"], proc)
                    else:
                        proc["retries"] += 1
                        self._unassign(proc)
                    changed = True
            elif (
                proc["state"] == WAITING
                and proc["waitdeadline"] != ZERO_TIME
                and proc["waitdeadline"] <= stamp
            ):
                proc["errors"] = ["Maximum waiting time limit exceeded"]
                proc["state"] = FAILED
                proc["endtime"] = stamp
                self.store.put("processes", proc["processid"], proc)
                changed = True
        if changed:
            self.cond.notify_all()

    # ---- logs ----------------------------------------------------------
    def rpc_addlogmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        proc = self._assigned_running(caller, msg["processid"])
        ex = self.executor_by_id(caller)
        assert ex is not None
        ts = time.time_ns()
        doc = {
            "processid": proc["processid"],
            "colonyname": proc["spec"]["conditions"]["colonyname"],
            "executorname": ex["executorname"],
            "message": msg.get("message", ""),
            "timestamp": ts,
        }
        self.store.db.execute(
            "INSERT INTO logs (processid, executorname, ts, doc) VALUES (?, ?, ?, ?)",
            (proc["processid"], ex["executorname"], ts, json.dumps(doc)),
        )
        return None

    def rpc_getlogsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        count = int(msg.get("count") or 0)
        if count > MAX_LOG_COUNT:
            raise RPCError(f"Count exceeds max log count ({MAX_LOG_COUNT})", 403)
        col, val = (
            ("processid", msg.get("processid"))
            if msg.get("processid")
            else ("executorname", msg.get("executorname"))
        )
        since = int(msg.get("since") or 0)
        if msg.get("latest"):
            rows = self.store.db.execute(
                f"SELECT doc FROM logs WHERE {col} = ? ORDER BY seq DESC LIMIT ?", (val, count)
            ).fetchall()[::-1]
        else:
            rows = self.store.db.execute(
                f"SELECT doc FROM logs WHERE {col} = ? AND ts > ? ORDER BY seq LIMIT ?",
                (val, since, count),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ---- CFS metadata -------------------------------------------------
    def rpc_addfilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        f = dict(msg["file"])
        self.require_member(caller, f["colonyname"])
        if not f.get("label", "").startswith("/"):
            raise RPCError("Label must start with /", 400)
        same = [
            x
            for x in self.store.all("files")
            if x["colonyname"] == f["colonyname"]
            and x["label"] == f["label"]
            and x["name"] == f["name"]
        ]
        f["fileid"] = _new_id()
        f["sequencenr"] = max((x["sequencenr"] for x in same), default=0) + 1
        f["added"] = _ts(_now())
        self.store.put("files", f["fileid"], f)
        return f

    def _files(self, colonyname: str) -> list[dict[str, Any]]:
        return [x for x in self.store.all("files") if x["colonyname"] == colonyname]

    def rpc_getfilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        if msg.get("fileid"):
            f = self.store.get("files", msg["fileid"])
            if f is None or f["colonyname"] != msg["colonyname"]:
                raise RPCError("File not found", 404)
            return [f]
        files = [
            x
            for x in self._files(msg["colonyname"])
            if x["label"] == msg.get("label") and x["name"] == msg.get("name")
        ]
        if not files:
            raise RPCError("File not found", 404)
        files.sort(key=lambda x: x["sequencenr"])
        return files[-1:] if msg.get("latest") else files

    def rpc_getfilesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        names = sorted(
            {x["name"] for x in self._files(msg["colonyname"]) if x["label"] == msg["label"]}
        )
        out = []
        for name in names:
            latest = self.rpc_getfilemsg(
                caller,
                {
                    "colonyname": msg["colonyname"],
                    "label": msg["label"],
                    "name": name,
                    "latest": True,
                },
            )[0]
            out.append(
                {
                    "name": name,
                    "checksum": latest["checksum"],
                    "size": latest["size"],
                    "s3filename": latest["ref"]["s3object"]["object"],
                }
            )
        return out

    def rpc_getfilelabelsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        counts: dict[str, int] = {}
        for x in self._files(msg["colonyname"]):
            label = x["label"]
            name = msg.get("name") or ""
            if name and (label != name if msg.get("exact") else not label.startswith(name)):
                continue
            counts[label] = counts.get(label, 0) + 1
        return [{"name": k, "files": v} for k, v in sorted(counts.items())]

    def rpc_removefilemsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        for x in self._files(msg["colonyname"]):
            if x["fileid"] == msg.get("fileid") or (
                x["label"] == msg.get("label") and x["name"] == msg.get("name")
            ):
                self.store.delete("files", x["fileid"])
        return None

    def rpc_createsnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        label = msg["label"].rstrip("/") or "/"
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for x in self._files(msg["colonyname"]):
            if x["label"] == label or x["label"].startswith(label + "/") or label == "/":
                k = (x["label"], x["name"])
                if k not in latest or latest[k]["sequencenr"] < x["sequencenr"]:
                    latest[k] = x
        snap = {
            "snapshotid": _new_id(),
            "colonyname": msg["colonyname"],
            "label": msg["label"],
            "name": msg["name"],
            "fileids": [x["fileid"] for x in latest.values()],
            "added": _ts(_now()),
        }
        self.store.put("snapshots", snap["snapshotid"], snap)
        return snap

    def _snapshot(self, msg: dict[str, Any]) -> dict[str, Any]:
        for s in self.store.all("snapshots"):
            if s["colonyname"] == msg["colonyname"] and (
                s["snapshotid"] == msg.get("snapshotid")
                or (msg.get("name") and s["name"] == msg["name"])
            ):
                return s
        raise RPCError("Snapshot not found", 404)

    def rpc_getsnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return self._snapshot(msg)

    def rpc_getsnapshotsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        return [s for s in self.store.all("snapshots") if s["colonyname"] == msg["colonyname"]]

    def rpc_removesnapshotmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.require_member(caller, msg["colonyname"])
        self.store.delete("snapshots", self._snapshot(msg)["snapshotid"])
        return None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
def make_handler(app: ColoniesLite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{_ts(_now())} {format % args}\n")

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/health":
                self._send(200, b'{"status":"ok"}')
            else:
                self._send(404, b'{"error":"not found"}')

        def _reply(self, payloadtype: str, payload: Any, error: bool, status: int) -> None:
            raw = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            body = json.dumps(
                {
                    "payloadtype": payloadtype,
                    "payload": base64.b64encode(raw).decode(),
                    "error": error,
                }
            ).encode()
            self._send(status, body)

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/api":
                self._send(404, b'{"error":"not found"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            payloadtype = ""
            try:
                rpc = json.loads(data)
                payloadtype = rpc.get("payloadtype", "")
                payload_b64 = rpc["payload"]
                try:
                    caller = recover_id(payload_b64, rpc["signature"])
                except (ValueError, binascii.Error) as err:
                    raise RPCError(f"Invalid signature: {err}", 403) from err
                msg = json.loads(base64.b64decode(payload_b64))
                if msg.get("msgtype") != payloadtype:
                    raise RPCError("Payload type mismatch", 400)
                result = app.handle(caller, payloadtype, msg)
                self._reply(payloadtype, result, False, 200)
            except RPCError as err:
                self._reply("error", {"status": err.status, "message": str(err)}, True, err.status)
            except (KeyError, TypeError, ValueError) as err:
                self._reply("error", {"status": 400, "message": f"Bad request: {err!r}"}, True, 400)
            except Exception as err:  # pragma: no cover - surfaced in logs
                self.log_message("internal error: %r", err)
                self._reply(
                    "error", {"status": 500, "message": f"Internal error: {err!r}"}, True, 500
                )

    return Handler


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
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(app))
    httpd.daemon_threads = True

    def ticker() -> None:
        while True:
            time.sleep(0.5)
            with app.lock:
                app.expire()

    threading.Thread(target=ticker, daemon=True).start()
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
