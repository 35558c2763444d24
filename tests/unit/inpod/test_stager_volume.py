"""Stage-in's errors from the volume itself: named, with what to do, never a traceback."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from kubejobs.adapters.cfs import CfsError
from kubejobs.inpod.stager import stage_in
from kubejobs.inpod.sync import SyncReport
from kubejobs.spec.model import FileSystem, FsDir


class RefusingVolume:
    """A Transfer whose volume refuses what stage-in writes (as a root-owned PV did)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def progress(self, line: str) -> None:
        pass

    def download_label(self, label: str, target: Path, keeplocal: bool) -> SyncReport:
        raise OSError(self.code, "refused by the test", str(target))

    def download_snapshot(self, snapshotid: str, target: Path) -> SyncReport:
        raise AssertionError("no snapshot in this spec")


def fs_with_dir() -> FileSystem:
    entry = FsDir(
        label="/in", dir="/in", keepfiles=True, onstart_keeplocal=False, onclose_keeplocal=False
    )
    return FileSystem(mount="/cfs", snapshots=(), dirs=(entry,))


def test_a_volume_the_stager_may_not_write_is_named_with_what_to_do() -> None:
    transfer: Any = RefusingVolume(errno.EACCES)
    with pytest.raises(CfsError) as caught:
        stage_in(fs_with_dir(), transfer)
    message = str(caught.value)
    assert message.startswith(
        "cannot write /cfs/in in the data volume at /cfs: refused by the test; "
        "the data stager runs as uid 65532"
    )
    assert "docs/shared-volume.md" in message


def test_a_full_volume_is_named_without_the_permission_hint() -> None:
    transfer: Any = RefusingVolume(errno.ENOSPC)
    with pytest.raises(CfsError) as caught:
        stage_in(fs_with_dir(), transfer)
    assert (
        str(caught.value) == "cannot write /cfs/in in the data volume at /cfs: refused by the test"
    )
