"""Typed, frozen function specs, built only from data that passed validation."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# maxexectime, maxretries and maxwaittime: -1 means "no limit" to the server.
NO_LIMIT = -1


@dataclass(frozen=True)
class GPU:
    count: int = 0
    name: str = ""
    mem: str = ""


@dataclass(frozen=True)
class FsSnapshot:
    snapshotid: str
    label: str
    dir: str
    keepfiles: bool
    keepsnapshot: bool


@dataclass(frozen=True)
class FsDir:
    label: str
    dir: str
    keepfiles: bool
    onstart_keeplocal: bool
    onclose_keeplocal: bool


@dataclass(frozen=True)
class FileSystem:
    mount: str
    snapshots: tuple[FsSnapshot, ...] = ()
    dirs: tuple[FsDir, ...] = ()


@dataclass(frozen=True)
class FunctionSpec:
    """A validated function spec for funcname 'execute'.

    `raw` keeps the document as given, for what the Colonies server reads and
    kubejobs does not (priority, channels, dependencies...).
    """

    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    init_cmd: str | None
    nodes: int
    processes_per_node: int
    cpu: str | None
    mem: str | None
    storage: str | None
    gpu: GPU
    walltime: int | None
    maxexectime: int
    maxretries: int
    env: tuple[tuple[str, str], ...]
    fs: FileSystem | None
    nodename: str = ""
    label: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @staticmethod
    def from_valid(data: dict[str, Any]) -> FunctionSpec:
        """Build from a document that validate_spec() accepted."""
        kwargs = data["kwargs"]
        conditions = data.get("conditions", {})
        gpu = conditions.get("gpu", {})
        walltime = conditions.get("walltime", 0)
        return FunctionSpec(
            image=kwargs["docker-image"],
            command=split_command(kwargs["cmd"]),
            args=tuple(arg_text(a) for a in kwargs.get("args", [])),
            init_cmd=kwargs.get("init-cmd") or None,
            nodes=conditions.get("nodes", 1),
            processes_per_node=conditions.get("processespernode", 1),
            cpu=conditions.get("cpu") or None,
            mem=conditions.get("mem") or None,
            storage=conditions.get("storage") or None,
            gpu=GPU(count=gpu.get("count", 0), name=gpu.get("name", ""), mem=gpu.get("mem", "")),
            walltime=walltime if walltime > 0 else None,
            maxexectime=data.get("maxexectime", NO_LIMIT),
            maxretries=data.get("maxretries", NO_LIMIT),
            env=tuple(sorted(data.get("env", {}).items())),
            fs=_file_system(data.get("fs")),
            nodename=data.get("nodename", ""),
            label=data.get("label", ""),
            raw=data,
        )


def split_command(cmd: str | list[str]) -> tuple[str, ...]:
    """cmd as exec-form words: a list as given, a string split by POSIX shell quoting rules."""
    if isinstance(cmd, list):
        return tuple(cmd)
    return split_words(cmd)


@lru_cache(maxsize=256)
def split_words(text: str) -> tuple[str, ...]:
    """shlex.split(text) (ValueError for unbalanced quotes), remembered.

    Validation splits cmd, then FunctionSpec.from_valid splits it again, and
    shlex is slow (pure Python, ~5 us a word); an executor also sees the same
    cmd again and again. Errors are not remembered: they are raised every time.
    """
    return tuple(shlex.split(text))


def arg_text(value: Any) -> str:
    """An args item as the program sees it: strings as they are, numbers and booleans as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _file_system(fs: dict[str, Any] | None) -> FileSystem | None:
    if not fs:
        return None
    snapshots = tuple(
        FsSnapshot(
            snapshotid=s.get("snapshotid", ""),
            label=s.get("label", ""),
            dir=s["dir"],
            keepfiles=s.get("keepfiles", False),
            keepsnapshot=s.get("keepsnapshot", False),
        )
        for s in fs.get("snapshots", [])
    )
    dirs = tuple(
        FsDir(
            label=d["label"],
            dir=d["dir"],
            keepfiles=d.get("keepfiles", False),
            onstart_keeplocal=d.get("onconflicts", {}).get("onstart", {}).get("keeplocal", False),
            onclose_keeplocal=d.get("onconflicts", {}).get("onclose", {}).get("keeplocal", False),
        )
        for d in fs.get("dirs", [])
    )
    return FileSystem(mount=fs["mount"], snapshots=snapshots, dirs=dirs)
