"""The `pvc` setting on real-node-0: one PersistentVolume shared by every Job of an executor.

A `local` PV over a folder of the test's temp dir, owned by root with mode 0755
as a fresh disk comes (volume_support.py), bound to a claim in the test's
namespace; the executor runs with `pvc` set to that claim. What a program
wrote is read back from the PV's folder on the host and from the real
Colonies server and S3, byte for byte. No program waits for time or for the
network: where a pod must wait for the test, it waits for a file the test
puts into the volume.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.polling import until
from tests.integration.realnode.test_executor_realnode import pods, sh
from tests.integration.realnode.volume_support import (
    SharedVolume,
    delete_volume,
    make_local_volume,
)
from tests.integration.test_executor_e2e import SUCCESS, ExecutorRun
from tests.integration.test_inpod_stager import latest, put_file

pytestmark = pytest.mark.integration
WAIT = 240.0
STAGED = b"staged from CFS: \xce\xbb \xe2\x9c\x93 tab\there\n"  # UTF-8, a tab, no trailing blank


@pytest.fixture
def shared_volume(kube: Any, kube_namespace: Any, tmp_path: Path) -> Iterator[SharedVolume]:
    volume = make_local_volume(kube, kube_namespace.name, tmp_path / "pv")
    try:
        yield volume
    finally:
        delete_volume(kube, volume)


def done_ok(run: ExecutorRun, pid: str) -> dict[str, Any]:
    process = run.wait_done(pid, WAIT)
    assert process["state"] == SUCCESS, process["errors"]
    return process


def cfs_bytes(colonies: Any, s3: Any, label: str, name: str) -> bytes:
    """The latest revision of label/name as the server records it, read from S3 and checked
    against the server's checksum."""
    file = latest(colonies, label, name)
    body: bytes = (
        s3.client()
        .get_object(Bucket=s3.config.bucket, Key=file["ref"]["s3object"]["object"])["Body"]
        .read()
    )
    assert file["checksum"] == hashlib.sha256(body).hexdigest()
    return body


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under root: files with their bytes, folders as None."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_a_later_process_reads_what_an_earlier_one_left_and_staging_reuses_the_volume(
    real_executor: Callable[..., ExecutorRun],
    colonies: Any,
    s3: Any,
    shared_volume: SharedVolume,
) -> None:
    run = real_executor(pvc=shared_volume.claim)
    base = f"/volume/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, f"{base}/in", "in.txt", STAGED)
    fs = {
        "mount": "/cfs",
        "dirs": [
            {"label": f"{base}/in", "dir": "/in", "keepfiles": True},
            {"label": f"{base}/out", "dir": "/out", "keepfiles": True},
        ],
    }
    digest = hashlib.sha256(STAGED).hexdigest()
    first = run.submit(
        sh(
            run,
            "sha256sum /cfs/in/in.txt && mkdir -p /cfs/shared && "
            'printf "left by %s\\n" "$COLONIES_PROCESS_ID" >/cfs/shared/left.txt && '
            'printf "result of %s\\n" "$COLONIES_PROCESS_ID" >/cfs/out/result.txt',
            fs=fs,
        )
    )
    done_ok(run, first)
    assert f"{digest}  /cfs/in/in.txt" in colonies.log_text(first).splitlines()
    left = f"left by {first}\n".encode()
    result = f"result of {first}\n".encode()
    # On the volume after the process: the staged and synced dirs (keepfiles: true) and what
    # the program wrote elsewhere stay; kubejobs adds no folder of its own.
    assert tree(shared_volume.path) == {
        "in": None,
        "in/in.txt": STAGED,
        "out": None,
        "out/result.txt": result,
        "shared": None,
        "shared/left.txt": left,
    }
    assert cfs_bytes(colonies, s3, f"{base}/out", "result.txt") == result

    second = run.submit(sh(run, "cat /cfs/shared/left.txt && sha256sum /cfs/in/in.txt", fs=fs))
    done_ok(run, second)
    log = colonies.log_text(second).splitlines()
    assert f"left by {first}" in log
    assert f"{digest}  /cfs/in/in.txt" in log
    # the second stager found the first one's files on the volume and fetched nothing
    assert f"stage-in: unchanged  {base}/in/in.txt -> /cfs/in/in.txt" in log
    assert f"stage-in: unchanged  {base}/out/result.txt -> /cfs/out/result.txt" in log
    assert "stage-in: done: 0 downloaded (0 bytes), 2 unchanged, 0 kept local" in log
    run.wait_no_jobs()


def rank_pod_phase(run: ExecutorRun, rank: int) -> str:
    for pod in pods(run):
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get("batch.kubernetes.io/job-completion-index") == str(rank):
            return str(pod["status"].get("phase", ""))
    return ""


def test_two_ranks_share_the_volume_and_their_results_are_synced_once_when_both_are_done(
    real_executor: Callable[..., ExecutorRun],
    colonies: Any,
    s3: Any,
    shared_volume: SharedVolume,
) -> None:
    # Rank 0 writes its result and ends. Rank 1 writes half of its result, then waits
    # (for a file the test puts into the volume) until rank 0's pod, log shipper included,
    # has ended; then it reads rank 0's result and finishes its own. The results must reach
    # CFS whole and once: not rank 1's half that was on the volume when rank 0 ended.
    run = real_executor(pvc=shared_volume.claim)
    base = f"/volume/{uuid.uuid4().hex[:8]}"
    put_file(colonies, s3, f"{base}/in", "in.txt", STAGED)
    fs = {
        "mount": "/cfs",
        "dirs": [
            {"label": f"{base}/in", "dir": "/in", "keepfiles": True},
            {"label": f"{base}/out", "dir": "/out", "keepfiles": False},
        ],
    }
    script = (
        'sha256sum /cfs/in/in.txt; if [ "$KUBEJOBS_NODE_RANK" = 0 ]; then '
        "printf 'from rank 0\\n' >/cfs/out/r0.txt; "
        "else "
        "printf 'first half\\n' >/cfs/out/r1.txt; i=0; "
        'until [ -e "/cfs/gate/$COLONIES_PROCESS_ID" ]; do '
        "i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.2; done; "
        "cat /cfs/out/r0.txt && printf 'second half\\n' >>/cfs/out/r1.txt; "
        "fi"
    )
    pid = run.submit(sh(run, script, fs=fs, conditions={"nodes": 2}))
    until(lambda: rank_pod_phase(run, 0) == "Succeeded", "rank 0's pod to end", WAIT)
    gate = shared_volume.path / "gate" / pid
    gate.parent.mkdir()
    gate.touch()
    done_ok(run, pid)
    digest = hashlib.sha256(STAGED).hexdigest()
    log = colonies.log_text(pid).splitlines()
    assert f"[0/main] {digest}  /cfs/in/in.txt" in log
    assert f"[1/main] {digest}  /cfs/in/in.txt" in log
    assert "[1/main] from rank 0" in log  # rank 1 read what rank 0 left
    assert cfs_bytes(colonies, s3, f"{base}/out", "r0.txt") == b"from rank 0\n"
    assert cfs_bytes(colonies, s3, f"{base}/out", "r1.txt") == b"first half\nsecond half\n"
    for name in ("r0.txt", "r1.txt"):
        assert len(colonies.get_file(f"{base}/out", name, latest=False)) == 1, name
    # keepfiles false emptied /out once both ranks were done; /in (keepfiles true) stays
    assert tree(shared_volume.path) == {
        "gate": None,
        f"gate/{pid}": b"",
        "in": None,
        "in/in.txt": STAGED,
        "out": None,
    }
    run.wait_no_jobs()
