"""The onclose on a volume several ranks share: run once, by the last rank to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubejobs.inpod.closing import forget, last_to_close
from kubejobs.inpod.command import close_fs
from kubejobs.inpod.config import PodEnv
from kubejobs.spec.model import FileSystem, FsSnapshot

PID = "c" * 64


def test_exactly_the_last_rank_to_end_closes_and_its_records_then_go(tmp_path: Path) -> None:
    assert last_to_close(tmp_path, PID, 1, "1", pods=3) is False
    assert last_to_close(tmp_path, PID, 1, "0", pods=3) is False
    assert last_to_close(tmp_path, PID, 1, "2", pods=3) is True
    # a rank that reports again (a restarted shipper) does not close a second time
    assert last_to_close(tmp_path, PID, 1, "2", pods=3) is False
    assert last_to_close(tmp_path, PID, 2, "0", pods=3) is False  # another attempt: its own
    forget(tmp_path, PID, 1)
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        ".kubejobs",
        ".kubejobs/close",
        ".kubejobs/close/" + PID + "-2",
        ".kubejobs/close/" + PID + "-2/ended-0",
    ]
    forget(tmp_path, PID, 2)
    assert list(tmp_path.iterdir()) == []  # nothing of kubejobs' own is left on the volume


def env_for(mount: Path, rank: str, pods: int) -> PodEnv:
    snapshot = FsSnapshot(
        snapshotid="snap-1", label="/data", dir="/input", keepfiles=False, keepsnapshot=True
    )
    return PodEnv(
        colonies_host="colonies",
        colonies_port=50080,
        colonies_tls=False,
        colony="c",
        process_id=PID,
        prvkey="k",
        node_rank=rank,
        fs=FileSystem(mount=str(mount), snapshots=(snapshot,)),
        shared_volume_pods=pods,
    )


def test_a_rank_that_ends_first_leaves_the_shared_files_to_the_ranks_still_running(
    tmp_path: Path,
) -> None:
    # keepfiles false: the snapshot's folder is emptied after the process, but rank 1 still
    # reads it when rank 0 ends; only the last rank's close may empty it.
    data = tmp_path / "input"
    data.mkdir()
    (data / "x.txt").write_bytes(b"still needed\n")
    client: Any = object()  # no dirs and keepsnapshot: the close never calls the server
    close_fs(env_for(tmp_path, "0", 2), client, retry_seconds=1)
    assert (data / "x.txt").read_bytes() == b"still needed\n"
    close_fs(env_for(tmp_path, "1", 2), client, retry_seconds=1)
    assert list(data.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input"]


def test_a_volume_of_its_own_is_closed_by_each_rank_at_once(tmp_path: Path) -> None:
    data = tmp_path / "input"
    data.mkdir()
    (data / "x.txt").write_bytes(b"a copy of this pod's own\n")
    close_fs(env_for(tmp_path, "1", 1), object(), retry_seconds=1)  # type: ignore[arg-type]
    assert list(data.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input"]
