"""The in-pod programs' configuration: the environment kubejobs injects (render/inject.py), checked once."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubejobs.errors import SettingsError
from kubejobs.spec.model import FileSystem, FsDir, FsSnapshot

STAGER_CONTAINER = "kubejobs-data-stager"  # render/inject.py STAGER; inpod may not import render
CA_FILE_ENV = "KUBEJOBS_COLONIES_CA_FILE"  # render/inject.py sets it when a CA is mounted
ATTEMPT_ENV = "KUBEJOBS_ATTEMPT"  # render/identity.py; absent: attempt 1
SHARED_PODS_ENV = "KUBEJOBS_SHARED_VOLUME_PODS"  # render/inject.py; absent: 1
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PodEnv:
    """What an in-pod program knows about its process and pod."""

    colonies_host: str
    colonies_port: int
    colonies_tls: bool
    colony: str
    process_id: str
    prvkey: str = field(repr=False)
    pod_name: str = ""
    namespace: str = ""
    main_containers: tuple[str, ...] = ()
    node_rank: str = "0"
    state_dir: Path = Path("/var/lib/kubejobs")
    sidecar_mode: str = "native"
    fs: FileSystem | None = None
    colonies_ca_file: str = ""
    """The operator's CA bundle for the Colonies server's certificate; empty: the public CAs."""
    attempt: int = 1
    """Which assignment of the process this pod runs (the server's retries + 1)."""
    shared_volume_pods: int = 1
    """How many pods of this attempt see the same data volume (its node ranks, with a pvc);
    above 1, only the last of them to end runs the onclose (closing.py)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], need_pod: bool = True) -> PodEnv:
        """SettingsError naming every missing or invalid variable."""
        required = [
            "COLONIES_SERVER_HOST",
            "COLONIES_SERVER_PORT",
            "COLONIES_COLONY_NAME",
            "COLONIES_PROCESS_ID",
            "COLONIES_PRVKEY",
        ]
        if need_pod:
            required += ["KUBEJOBS_POD_NAME", "KUBEJOBS_POD_NAMESPACE", "KUBEJOBS_MAIN_CONTAINERS"]
        problems = [f"{name} is not set" for name in required if not environ.get(name)]
        port = environ.get("COLONIES_SERVER_PORT", "0")
        if not port.isdigit():
            problems.append(f"COLONIES_SERVER_PORT {port!r} is not a port number")
        mode = environ.get("KUBEJOBS_SIDECAR_MODE", "native")
        if mode not in ("native", "container"):
            problems.append(f"KUBEJOBS_SIDECAR_MODE {mode!r} is not 'native' or 'container'")
        fs = None
        try:
            fs = parse_fs(environ.get("KUBEJOBS_FS", ""))
        except SettingsError as err:
            problems.append(str(err))
        attempt = environ.get(ATTEMPT_ENV, "1") or "1"
        if not attempt.isdigit() or int(attempt) < 1:
            problems.append(f"{ATTEMPT_ENV} {attempt!r} is not a positive number")
        shared = environ.get(SHARED_PODS_ENV, "1") or "1"
        if not shared.isdigit() or int(shared) < 1:
            problems.append(f"{SHARED_PODS_ENV} {shared!r} is not a positive number")
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(
            colonies_host=environ["COLONIES_SERVER_HOST"],
            colonies_port=int(port),
            colonies_tls=environ.get("COLONIES_TLS", "false").strip().lower() in _TRUE,
            colony=environ["COLONIES_COLONY_NAME"],
            process_id=environ["COLONIES_PROCESS_ID"],
            prvkey=environ["COLONIES_PRVKEY"],
            pod_name=environ.get("KUBEJOBS_POD_NAME", ""),
            namespace=environ.get("KUBEJOBS_POD_NAMESPACE", ""),
            main_containers=tuple(
                c.strip()
                for c in environ.get("KUBEJOBS_MAIN_CONTAINERS", "").split(",")
                if c.strip()
            ),
            node_rank=environ.get("KUBEJOBS_NODE_RANK", "0") or "0",
            state_dir=Path(environ.get("KUBEJOBS_STATE_DIR", "/var/lib/kubejobs")),
            sidecar_mode=mode,
            fs=fs,
            colonies_ca_file=environ.get(CA_FILE_ENV, ""),
            attempt=int(attempt),
            shared_volume_pods=int(shared),
        )


def parse_fs(text: str) -> FileSystem | None:
    """KUBEJOBS_FS (the spec's fs as JSON, {processid} substituted) as typed data; None when empty."""
    if not text.strip():
        return None
    try:
        data: Any = json.loads(text)
    except ValueError as err:
        raise SettingsError(f"KUBEJOBS_FS is not JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        return None
    try:
        mount = str(data["mount"])
        snapshots = tuple(
            FsSnapshot(
                snapshotid=str(s.get("snapshotid", "")),
                label=str(s.get("label", "")),
                dir=str(s["dir"]),
                keepfiles=bool(s.get("keepfiles", False)),
                keepsnapshot=bool(s.get("keepsnapshot", False)),
            )
            for s in data.get("snapshots") or []
        )
        dirs = tuple(
            FsDir(
                label=str(d["label"]),
                dir=str(d["dir"]),
                keepfiles=bool(d.get("keepfiles", False)),
                onstart_keeplocal=bool(
                    ((d.get("onconflicts") or {}).get("onstart") or {}).get("keeplocal", False)
                ),
                onclose_keeplocal=bool(
                    ((d.get("onconflicts") or {}).get("onclose") or {}).get("keeplocal", False)
                ),
            )
            for d in data.get("dirs") or []
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise SettingsError(f"KUBEJOBS_FS: missing or malformed field {err}") from None
    return FileSystem(mount=mount, snapshots=snapshots, dirs=dirs)


def local_dir(fs: FileSystem, directory: str) -> Path:
    """Where a spec dir lives in the pod: under fs.mount (a leading '/' in `dir` is relative to it)."""
    mount = Path(os.path.normpath(fs.mount))
    target = Path(os.path.normpath(mount / directory.lstrip("/")))
    if target != mount and mount not in target.parents:
        raise SettingsError(f"KUBEJOBS_FS: dir {directory!r} leaves the mount {fs.mount!r}")
    return target
