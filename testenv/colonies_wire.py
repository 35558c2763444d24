"""What the Colonies v1.9.7 server does to JSON: its Go structs, encoding/json and parsers.

Messages are decoded as encoding/json decodes them into the structs of pkg/rpc
and pkg/core (unknown keys ignored, missing keys zero, names matched
case-insensitively, a wrong JSON type an error); replies are encoded from the
same structs (zero values filled in, ``omitempty`` keys left out, time.Time as
RFC 3339). Quantities go through pkg/parsers as the database layer stores them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_INT64 = 2**63 - 1
ZERO_TIME = "0001-01-01T00:00:00Z"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RPCError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# A schema is a kind name, ("list"|"map"|"ptr", schema) or ("struct", {field: schema}).
# A field schema may be (schema, "omitempty").
Schema = Any
STR, INT, FLOAT, BOOL, TIME, ANY = "string", "int", "float64", "bool", "time", "any"


def list_of(t: Schema) -> Schema:
    return ("list", t)


def map_of(t: Schema) -> Schema:
    return ("map", t)


def ptr(t: Schema) -> Schema:
    return ("ptr", t)


def struct(fields: dict[str, Schema]) -> Schema:
    return ("struct", fields)


def omitempty(t: Schema) -> Schema:
    return (t, "omitempty")


class GoJSONError(ValueError):
    """The JSON does not fit the Go struct (encoding/json would refuse it)."""


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _field_type(t: Schema) -> tuple[Schema, bool]:
    if isinstance(t, tuple) and len(t) == 2 and t[1] == "omitempty":
        return t[0], True
    return t, False


def go_zero(t: Schema) -> Any:
    t, _ = _field_type(t)
    if t == STR:
        return ""
    if t in (INT, TIME):
        return 0
    if t == FLOAT:
        return 0.0
    if t == BOOL:
        return False
    if isinstance(t, tuple) and t[0] == "struct":
        return {k: go_zero(v) for k, v in t[1].items()}
    return None  # slices, maps, pointers, interface{}


def go_any(value: Any) -> Any:
    """An interface{} value as it comes back from the server: numbers are float64."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        f = float(value)
        return int(f) if f.is_integer() and abs(f) < 1e21 else f
    if isinstance(value, list):
        return [go_any(v) for v in value]
    if isinstance(value, dict):
        return {k: go_any(v) for k, v in value.items()}
    return value


def go_decode(t: Schema, value: Any, current: Any = None) -> Any:
    """`value` decoded into a Go value of type `t` (JSON null leaves `current`)."""
    t, _ = _field_type(t)
    if value is None:
        return go_zero(t) if current is None else current
    if t == ANY:
        return go_any(value)
    if t == STR:
        if not isinstance(value, str):
            raise GoJSONError(f"cannot unmarshal {type(value).__name__} into string")
        return value
    if t == INT:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT64:
            raise GoJSONError(f"cannot unmarshal {value!r} into int")
        return value
    if t == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GoJSONError(f"cannot unmarshal {value!r} into float64")
        return float(value)
    if t == BOOL:
        if not isinstance(value, bool):
            raise GoJSONError(f"cannot unmarshal {value!r} into bool")
        return value
    if t == TIME:
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise GoJSONError(f"cannot parse {value!r} as RFC 3339")
        return _parse_time_us(value)
    kind, inner = t
    if kind == "ptr":
        return go_decode(inner, value, current)
    if kind == "list":
        if not isinstance(value, list):
            raise GoJSONError("cannot unmarshal into a slice")
        return [go_decode(inner, v) for v in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise GoJSONError("cannot unmarshal into a map")
        return {k: go_decode(inner, v) for k, v in value.items()}
    if not isinstance(value, dict):
        raise GoJSONError("cannot unmarshal into a struct")
    out = dict(current) if isinstance(current, dict) else go_zero(t)
    folded = {k.lower(): k for k in inner}
    for key, item in value.items():
        name = key if key in inner else folded.get(key.lower())
        if name is not None:  # unknown keys are ignored; names match case-insensitively
            out[name] = go_decode(inner[name], item, out.get(name))
    return out


def go_encode(t: Schema, value: Any) -> Any:
    """A Go value of type `t` as the server's JSON (time.Time as RFC 3339, omitempty)."""
    t, _ = _field_type(t)
    if value is None:
        return None
    if t == TIME:
        return go_time(value)
    if t == FLOAT:
        return go_any(value)
    if t in (STR, INT, BOOL, ANY):
        return value
    kind, inner = t
    if kind == "ptr":
        return go_encode(inner, value)
    if kind == "list":
        return [go_encode(inner, v) for v in value]
    if kind == "map":
        return {k: go_encode(inner, v) for k, v in value.items()}
    out = {}
    for name, ft in inner.items():
        ftype, omit = _field_type(ft)
        v = value.get(name, go_zero(ftype))
        if omit and (v is None or v in ("", 0, [], {})):
            continue
        out[name] = go_encode(ftype, v)
    return out


def _parse_time_us(text: str) -> int:
    """RFC 3339 text -> microseconds since the epoch (0: Go's zero time)."""
    if text.startswith("0001-01-01T00:00:00"):
        return 0
    main, _, rest = text.partition(".")
    frac = ""
    if rest:
        m = re.match(r"(\d+)(.*)", rest)
        assert m is not None
        frac, tz = m.group(1), m.group(2)
        text = f"{main}.{frac[:6].ljust(6, '0')}{tz}"
    return (datetime.fromisoformat(text) - _EPOCH) // timedelta(microseconds=1)


def go_time(us: int) -> str:
    """Microseconds since the epoch as Go marshals a PostgreSQL timestamp (RFC 3339, Z)."""
    if not us:
        return ZERO_TIME
    dt = datetime.fromtimestamp(us // 1_000_000, UTC)
    frac = f"{us % 1_000_000:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


# pkg/core structs -----------------------------------------------------------
GPU = struct({"name": STR, "mem": STR, "count": INT, "nodecount": INT})
CONDITIONS = struct(
    {
        "colonyname": STR,
        "executornames": list_of(STR),
        "executortype": STR,
        "locationname": omitempty(STR),
        "dependencies": list_of(STR),
        "nodes": INT,
        "cpu": STR,
        "processes": INT,
        "processespernode": INT,
        "mem": STR,
        "storage": STR,
        "gpu": GPU,
        "walltime": INT,
    }
)
_KEEPLOCAL = struct({"keeplocal": BOOL})
FILESYSTEM = struct(
    {
        "mount": STR,
        "snapshots": list_of(
            struct(
                {
                    "snapshotid": STR,
                    "label": STR,
                    "dir": STR,
                    "keepfiles": BOOL,
                    "keepsnapshot": BOOL,
                }
            )
        ),
        "dirs": list_of(
            struct(
                {
                    "label": STR,
                    "dir": STR,
                    "keepfiles": BOOL,
                    "onconflicts": struct({"onstart": _KEEPLOCAL, "onclose": _KEEPLOCAL}),
                }
            )
        ),
    }
)
FUNCTION_SPEC = struct(
    {
        "nodename": STR,
        "funcname": STR,
        "args": list_of(ANY),
        "kwargs": map_of(ANY),
        "priority": INT,
        "maxwaittime": INT,
        "maxexectime": INT,
        "maxretries": INT,
        "conditions": CONDITIONS,
        "label": STR,
        "fs": FILESYSTEM,
        "env": map_of(STR),
        "channels": omitempty(list_of(STR)),
    }
)
ATTRIBUTE = struct(
    {
        "attributeid": STR,
        "targetid": STR,
        "targetcolonyname": STR,
        "targetprocessgraphid": STR,
        "state": INT,
        "attributetype": INT,
        "key": STR,
        "value": STR,
    }
)
PROCESS = struct(
    {
        "processid": STR,
        "initiatorid": STR,
        "initiatorname": STR,
        "assignedexecutorid": STR,
        "isassigned": BOOL,
        "state": INT,
        "prioritytime": INT,
        "submissiontime": TIME,
        "starttime": TIME,
        "endtime": TIME,
        "waitdeadline": TIME,
        "execdeadline": TIME,
        "retries": INT,
        "attributes": list_of(ATTRIBUTE),
        "spec": FUNCTION_SPEC,
        "waitforparents": BOOL,
        "parents": list_of(STR),
        "children": list_of(STR),
        "processgraphid": STR,
        "in": list_of(ANY),
        "out": list_of(ANY),
        "errors": list_of(STR),
    }
)
EXECUTOR = struct(
    {
        "executorid": STR,
        "executortype": STR,
        "executorname": STR,
        "colonyname": STR,
        "state": INT,
        "requirefuncreg": BOOL,
        "commissiontime": TIME,
        "lastheardfromtime": TIME,
        "locationname": omitempty(STR),
        "capabilities": struct(
            {
                "hardware": list_of(
                    struct(
                        {
                            "model": STR,
                            "nodes": INT,
                            "cpu": STR,
                            "cores": INT,
                            "mem": STR,
                            "storage": STR,
                            "gpu": GPU,
                            "platform": STR,
                            "architecture": STR,
                            "network": list_of(STR),
                        }
                    )
                ),
                "software": list_of(struct({"name": STR, "type": STR, "version": STR})),
            }
        ),
        "allocations": struct(
            {
                "projects": map_of(
                    struct(
                        {
                            k: INT
                            for k in (
                                "allocatedcpu",
                                "usedcpu",
                                "allocatedgpu",
                                "usedgpu",
                                "allocatedstorage",
                                "usedstorage",
                            )
                        }
                    )
                )
            }
        ),
        "blueprintid": omitempty(STR),
        "blueprintgen": omitempty(INT),
    }
)
FUNCTION = struct(
    {
        "functionid": STR,
        "executorname": STR,
        "executortype": STR,
        "colonyname": STR,
        "funcname": STR,
        "counter": INT,
        **{
            k: FLOAT
            for k in (
                "minwaittime",
                "maxwaittime",
                "minexectime",
                "maxexectime",
                "avgwaittime",
                "avgexectime",
            )
        },
    }
)
S3_OBJECT = struct(
    {
        "server": STR,
        "port": INT,
        "tls": BOOL,
        "accesskey": STR,
        "secretkey": STR,
        "region": STR,
        "encryptionkey": STR,
        "encryptionalg": STR,
        "object": STR,
        "bucket": STR,
    }
)
FILE = struct(
    {
        "fileid": STR,
        "colonyname": STR,
        "label": STR,
        "name": STR,
        "size": INT,
        "sequencenr": INT,
        "checksum": STR,
        "checksumalg": STR,
        "ref": struct({"protocol": STR, "s3object": S3_OBJECT}),
        "added": TIME,
    }
)
FILE_DATA = struct({"name": STR, "checksum": STR, "size": INT, "s3filename": STR})
LABEL = struct({"name": STR, "files": INT})
SNAPSHOT = struct(
    {
        "snapshotid": STR,
        "colonyname": STR,
        "label": STR,
        "name": STR,
        "fileids": list_of(STR),
        "added": TIME,
    }
)
COLONY = struct({"colonyid": STR, "name": STR})
LOG = struct(
    {"processid": STR, "colonyname": STR, "executorname": STR, "message": STR, "timestamp": INT}
)

# pkg/rpc messages: the fields, and the words of "Failed to <what>, invalid JSON" and
# "Failed to <what>, msg.MsgType does not match payloadType" (they differ in places).
_COLONY_EXECUTOR = {"colonyname": STR, "executorname": STR}
_SNAPSHOT_REF = {"colonyname": STR, "snapshotid": STR, "name": STR}
MESSAGES: dict[str, tuple[dict[str, Schema], str, str]] = {
    "addcolonymsg": ({"colony": ptr(COLONY)}, "add colony", "add colony"),
    "removecolonymsg": ({"colonyname": STR}, "remove colony", "remove colony"),
    "getcoloniesmsg": ({}, "get colonies", "get colonies"),
    "getcolonymsg": ({"colonyname": STR}, "get colony", "get colony"),
    "addexecutormsg": ({"executor": ptr(EXECUTOR)}, "add executor", "add executor"),
    "approveexecutormsg": (_COLONY_EXECUTOR, "approve executor", "approve executor"),
    "rejectexecutormsg": (_COLONY_EXECUTOR, "reject executor", "reject executor"),
    "removeexecutormsg": (_COLONY_EXECUTOR, "remove executor", "remove executor"),
    "getexecutormsg": (_COLONY_EXECUTOR, "get executor", "get executor"),
    "getexecutorsmsg": ({"colonyname": STR}, "get executors", "get executors"),
    "addfunctionmsg": ({"fun": ptr(FUNCTION)}, "add function", "add function"),
    "submitfuncspecmsg": (
        {"spec": ptr(FUNCTION_SPEC)},
        "submit process",
        "submit process spec",
    ),
    "assignprocessmsg": (
        {"colonyname": STR, "timeout": INT, "availablecpu": STR, "availablemem": STR},
        "assign process",
        "assign process",
    ),
    "getprocessesmsg": (
        {
            "colonyname": STR,
            "count": INT,
            "state": INT,
            "executortype": STR,
            "label": STR,
            "initiator": STR,
        },
        "get processes",
        "get processes",
    ),
    "getprocessmsg": ({"processid": STR}, "get process", "get process"),
    "removeprocessmsg": ({"processid": STR}, "remove process", "remove process"),
    "removeallprocessesmsg": (
        {"colonyname": STR, "state": INT},
        "remove all processes",
        "remove all processes",
    ),
    "closesuccessfulmsg": (
        {"processid": STR, "out": list_of(ANY)},
        "close successful",
        "close process as successful",
    ),
    "closefailedmsg": (
        {"processid": STR, "errors": list_of(STR)},
        "close failed",
        "close process as failed",
    ),
    "setoutputmsg": ({"processid": STR, "out": list_of(ANY)}, "set output", "set output"),
    "addlogmsg": ({"processid": STR, "message": STR}, "add log", "add log"),
    "getlogsmsg": (
        {
            "colonyname": STR,
            "processid": STR,
            "executorname": STR,
            "count": INT,
            "since": INT,
            "latest": BOOL,
        },
        "get logs",
        "get logs",
    ),
    "addfilemsg": ({"file": ptr(FILE)}, "add log", "add file"),
    "getfilemsg": (
        {"colonyname": STR, "fileid": STR, "label": STR, "name": STR, "latest": BOOL},
        "add log",
        "get file",
    ),
    "getfilesmsg": ({"label": STR, "colonyname": STR}, "get files", "get files"),
    "getfilelabelsmsg": (
        {"colonyname": STR, "name": STR, "exact": BOOL},
        "get files",
        "get files",
    ),
    "removefilemsg": (
        {"colonyname": STR, "fileid": STR, "label": STR, "name": STR},
        "remove file",
        "remove file",
    ),
    "createsnapshotmsg": (
        {"colonyname": STR, "label": STR, "name": STR},
        "create snapshot",
        "create snapshot",
    ),
    "getsnapshotmsg": (_SNAPSHOT_REF, "get snapshot", "get snapshot"),
    "getsnapshotsmsg": ({"colonyname": STR}, "get snapshots", "get snapshots"),
    "removesnapshotmsg": (_SNAPSHOT_REF, "remove snapshot", "remove snapshot"),
}


def _go_parse_int(text: str) -> int:
    """strconv.ParseInt(text, 10, 64), with its error text."""
    if not re.fullmatch(r"[+-]?\d+", text) or abs(int(text)) > MAX_INT64:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


def cpu_millis(cpu: str) -> int:
    """pkg/parsers ConvertCPUToInt: only "<n>m" counts; anything else without "m" is 0."""
    if not cpu.endswith("m"):
        return 0
    try:
        return _go_parse_int(cpu[:-1])
    except ValueError:
        raise RPCError("Error converting CPU to int", 400) from None


_MEM_UNITS = {
    "Ki": 1024,
    "KiB": 1024,
    "Mi": 1024**2,
    "MiB": 1024**2,
    "Gi": 1024**3,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "K": 1000,
    "KB": 1000,
    "Kb": 1000,
    "M": 1000**2,
    "MB": 1000**2,
    "Mb": 1000**2,
    "G": 1000**3,
    "Gb": 1000**3,
    "TB": 1000**4,
    "Tb": 1000**4,
}


def mem_bytes(mem: str) -> int:
    """pkg/parsers ConvertMemoryToBytes: "<integer><unit>", "" is 0.

    The server matches units case-insensitively in random (Go map) order but
    trims them case-sensitively, so a spelling with a twin ("MB"/"Mb", "KB"/"Kb",
    "TB"/"Tb") parses only when its own spelling comes up first, and "GB" (the
    map has only "Gb") never does. This stand-in takes the exact spelling when
    the map has it and refuses otherwise.
    """
    if not mem:
        return 0
    upper = mem.upper()
    matches = [u for u in _MEM_UNITS if upper.endswith(u.upper())]
    exact = [u for u in matches if mem.endswith(u)]
    unit = max(exact, key=len) if exact else (matches[0] if matches else "")
    number = mem[: -len(unit)] if unit and mem.endswith(unit) else ("" if not unit else mem)
    try:
        value = _go_parse_int(number)
    except ValueError as err:
        raise RPCError(f"error converting memory to int: {err}", 400) from None
    return value * _MEM_UNITS[unit]


def mem_text(n: int) -> str:
    """pkg/parsers ConvertMemoryToString: whole MiB (Go division truncates toward zero)."""
    whole = abs(n) // 1024**2
    return f"{whole if n >= 0 else -whole}Mi"


def like(pattern: str, text: str) -> bool:
    """PostgreSQL LIKE ('%' any run, '_' one character, '\\' escapes)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 2
            continue
        out += ".*" if c == "%" else "." if c == "_" else re.escape(c)
        i += 1
    return re.fullmatch(out, text, re.DOTALL) is not None


def go_bool(text: str) -> bool:
    return text in ("1", "t", "T", "TRUE", "true", "True")
