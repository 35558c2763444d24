"""stage-in and the onclose sync as processes, against the Colonies server (CFS metadata) and S3 (moto)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.inpod_support import (
    InpodExecutor,
    InpodProgram,
    complete_pod,
    create_pod,
    cri_log,
    inpod_executor,
    pod_manifest,
    program_env,
    shipper,
)

pytestmark = pytest.mark.integration
STAGER = "kubejobs-data-stager"


def put_file(colonies: Any, s3: Any, label: str, name: str, data: bytes) -> dict[str, Any]:
    obj = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    s3.client().put_object(Bucket=s3.config.bucket, Key=obj, Body=data)
    return colonies.add_file(
        label, name, len(data), hashlib.sha256(data).hexdigest(), obj, s3.config
    )


def latest(colonies: Any, label: str, name: str) -> dict[str, Any]:
    return colonies.get_file(label, name)[0]


def stage_in(
    colonies: Any,
    s3: Any,
    executor: InpodExecutor,
    fs: dict[str, Any],
    tmp: Path,
    extra: dict[str, str] | None = None,
) -> tuple[int, str]:
    env = program_env(
        colonies,
        executor,
        "0" * 64,
        tmp / "state",
        {"KUBEJOBS_FS": json.dumps(fs), **s3.config.env, **(extra or {})},
    )
    program = InpodProgram("stage-in", env, tmp / f"stage-in-{uuid.uuid4().hex[:6]}.log").start()
    return program.wait(), program.output()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stage_in_dirs_and_snapshots_with_nested_labels_and_a_50mb_file(
    colonies, s3, tmp_path: Path
) -> None:
    executor = inpod_executor(colonies)
    base = f"/inpod/{uuid.uuid4().hex[:8]}"
    big = os.urandom(50 * 1024 * 1024)
    data = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n", "sub/deeper/c.bin": big, "sub/empty": b""}
    for rel, body in data.items():
        folder, _, name = f"{base}/data/{rel}".rpartition("/")
        put_file(colonies, s3, folder, name, body)
    put_file(colonies, s3, f"{base}/snap", "x.txt", b"x version 1\n")
    put_file(colonies, s3, f"{base}/snap/nested", "y.txt", b"y\n")
    snapshot = colonies.create_snapshot(f"{base}/snap", f"snap-{uuid.uuid4().hex[:6]}")
    put_file(colonies, s3, f"{base}/snap", "x.txt", b"x version 2, after the snapshot\n")
    mount = tmp_path / "mount"
    fs = {
        "mount": str(mount),
        "dirs": [
            {
                "label": f"{base}/data",
                "dir": "/data",
                "keepfiles": False,
                "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": False}},
            }
        ],
        "snapshots": [
            {
                "snapshotid": snapshot["snapshotid"],
                "label": f"{base}/snap",
                "dir": "/snap",
                "keepfiles": False,
                "keepsnapshot": True,
            }
        ],
    }
    code, output = stage_in(colonies, s3, executor, fs, tmp_path)
    assert code == 0, output
    for rel, body in data.items():
        path = mount / "data" / rel
        assert path.read_bytes() == body, rel
        assert mode(path) == 0o666
    assert mode(mount / "data" / "sub" / "deeper") == 0o777
    assert (mount / "snap" / "x.txt").read_bytes() == b"x version 1\n"
    assert (mount / "snap" / "nested" / "y.txt").read_bytes() == b"y\n"
    assert "sha256 ok" in output and "stage-in: done: 6 downloaded" in output
    assert not list(mount.rglob("*.kubejobs-part"))
    # Staging again finds everything in place.
    code, output = stage_in(colonies, s3, executor, fs, tmp_path)
    assert code == 0 and "0 downloaded" in output and "6 unchanged" in output


@pytest.mark.parametrize("keeplocal", [True, False])
def test_stage_in_onstart_conflict_rule(colonies, s3, tmp_path: Path, keeplocal: bool) -> None:
    executor = inpod_executor(colonies)
    label = f"/inpod/{uuid.uuid4().hex[:8]}/in"
    put_file(colonies, s3, label, "conf.txt", b"remote\n")
    local = tmp_path / "mount" / "in"
    local.mkdir(parents=True)
    (local / "conf.txt").write_bytes(b"local\n")
    fs = {
        "mount": str(tmp_path / "mount"),
        "dirs": [
            {"label": label, "dir": "/in", "onconflicts": {"onstart": {"keeplocal": keeplocal}}}
        ],
    }
    code, output = stage_in(colonies, s3, executor, fs, tmp_path)
    assert code == 0, output
    assert (local / "conf.txt").read_bytes() == (b"local\n" if keeplocal else b"remote\n")


def test_stage_in_missing_snapshot_fails_clearly(colonies, s3, tmp_path: Path) -> None:
    executor = inpod_executor(colonies)
    fs = {
        "mount": str(tmp_path / "m"),
        "snapshots": [{"snapshotid": "f" * 64, "label": "/nope", "dir": "/s"}],
    }
    code, output = stage_in(colonies, s3, executor, fs, tmp_path)
    assert code == 1
    assert f"snapshot {'f' * 64!r} not found" in output


def test_stage_in_a_label_without_files_is_an_empty_dir(colonies, s3, tmp_path: Path) -> None:
    executor = inpod_executor(colonies)
    fs = {
        "mount": str(tmp_path / "m"),
        "dirs": [{"label": f"/inpod/{uuid.uuid4().hex}/results", "dir": "/out"}],
    }
    code, output = stage_in(colonies, s3, executor, fs, tmp_path)
    assert code == 0, output
    assert "holds no files (yet)" in output
    assert (tmp_path / "m" / "out").is_dir()


def test_stage_in_gives_up_clearly_when_s3_stays_unreachable(colonies, s3, tmp_path: Path) -> None:
    executor = inpod_executor(colonies)
    label = f"/inpod/{uuid.uuid4().hex[:8]}/in"
    put_file(colonies, s3, label, "f.txt", b"data\n")
    fs = {"mount": str(tmp_path / "m"), "dirs": [{"label": label, "dir": "/in"}]}
    code, output = stage_in(
        colonies,
        s3,
        executor,
        fs,
        tmp_path,
        {"AWS_S3_ENDPOINT": "127.0.0.1:9", "KUBEJOBS_RETRY_SECONDS": "3"},
    )
    assert code == 1
    assert "S3 unreachable" in output and "gave up after" in output


def test_stage_in_gives_up_clearly_when_colonies_stays_unreachable(
    colonies, s3, tmp_path: Path
) -> None:
    executor = inpod_executor(colonies)
    fs = {"mount": str(tmp_path / "m"), "dirs": [{"label": "/x", "dir": "/in"}]}
    code, output = stage_in(
        colonies,
        s3,
        executor,
        fs,
        tmp_path,
        {"COLONIES_SERVER_PORT": "9", "KUBEJOBS_RETRY_SECONDS": "3"},
    )
    assert code == 1
    assert "unreachable" in output and "gave up after" in output


@pytest.mark.parametrize("keeplocal", [True, False])
def test_onclose_sync_after_the_main_containers_exit(
    kube, kube_namespace, colonies, s3, tmp_path: Path, keeplocal: bool
) -> None:
    executor = inpod_executor(colonies)
    pid = executor.running_process()
    label = f"/inpod/{uuid.uuid4().hex[:8]}/results"
    put_file(colonies, s3, label, "same.txt", b"same\n")
    put_file(colonies, s3, label, "changed.txt", b"remote v1\n")
    mount = tmp_path / "mount"
    results = mount / "results"
    (results / "sub").mkdir(parents=True)
    (results / "same.txt").write_bytes(b"same\n")
    (results / "changed.txt").write_bytes(b"local v2\n")
    (results / "new.txt").write_bytes(b"new\n")
    (results / "sub" / "nested.txt").write_bytes(b"nested\n")
    fs = {
        "mount": str(mount),
        "dirs": [
            {
                "label": label,
                "dir": "/results",
                "keepfiles": not keeplocal,
                "onconflicts": {
                    "onstart": {"keeplocal": False},
                    "onclose": {"keeplocal": keeplocal},
                },
            }
        ],
    }
    stager_log = cri_log(kube_namespace, STAGER, "sync")
    main_log = cri_log(kube_namespace, "main", "sync")
    stager_log.write(["stage-in: done: 0 downloaded (0 bytes), 0 unchanged, 0 kept local"])
    main_log.write(["training...", "wrote results"])
    create_pod(kube_namespace, pod_manifest("sync", ["main"], init=[STAGER]))
    program = shipper(
        kube,
        kube_namespace,
        "sync",
        ["main"],
        colonies,
        executor,
        pid,
        tmp_path,
        {"KUBEJOBS_FS": json.dumps(fs), **s3.config.env},
    )
    program.start()
    complete_pod(kube_namespace, "sync")
    assert program.wait() == 0, program.output()
    assert executor.log_text(pid).splitlines() == [
        "stage-in: done: 0 downloaded (0 bytes), 0 unchanged, 0 kept local",
        "training...",
        "wrote results",
    ]
    assert latest(colonies, label, "new.txt")["checksum"] == hashlib.sha256(b"new\n").hexdigest()
    assert latest(colonies, f"{label}/sub", "nested.txt")["size"] == len(b"nested\n")
    assert (
        len(colonies.get_file(label, "same.txt", latest=False)) == 1
    )  # identical: not uploaded again
    changed = latest(colonies, label, "changed.txt")["checksum"]
    want = b"local v2\n" if keeplocal else b"remote v1\n"
    assert changed == hashlib.sha256(want).hexdigest()
    if keeplocal:  # keepfiles false in this case: the local results are gone
        assert list(results.iterdir()) == []
    else:  # keepfiles true
        assert (results / "new.txt").exists() and (results / "sub" / "nested.txt").exists()
    # The uploaded body is in S3 under the recorded object.
    obj = latest(colonies, label, "new.txt")["ref"]["s3object"]["object"]
    assert s3.client().get_object(Bucket=s3.config.bucket, Key=obj)["Body"].read() == b"new\n"
