"""Stage-in: put a process's CFS data in the shared volume before its main containers start.

Snapshots first (fixed file versions), then dirs (the latest files under each
label, with the onstart conflict rule). Any failure stops staging with an
error that names the label, snapshot or file; the init container then fails
and the main containers never start on incomplete data.
"""

from __future__ import annotations

import errno

from kubejobs.adapters.cfs import CfsError
from kubejobs.inpod.config import local_dir
from kubejobs.inpod.sync import SyncReport, Transfer
from kubejobs.spec.model import FileSystem


def stage_in(fs: FileSystem, transfer: Transfer) -> SyncReport:
    """Download every fs.snapshots and fs.dirs entry under fs.mount; the combined report.

    A folder or file the volume refuses (permissions, a full disk) is a CfsError that names
    it, not a traceback: it becomes the stager's termination message and so the process's
    error.
    """
    try:
        return _stage_in(fs, transfer)
    except OSError as err:
        where = err.filename or fs.mount
        hint = ""
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = (
                "; the data stager runs as uid 65532 and needs the volume writable by it or by "
                "the pod's fsGroup (kubejobs sets fsGroup for a pvc; volumes the kubelet does "
                "not chown, such as hostPath and NFS, must be prepared: docs/shared-volume.md)"
            )
        raise CfsError(
            f"cannot write {where} in the data volume at {fs.mount}: {err.strerror}{hint}"
        ) from None


def _stage_in(fs: FileSystem, transfer: Transfer) -> SyncReport:
    total = SyncReport()
    for snapshot in fs.snapshots:
        if not snapshot.snapshotid:
            raise CfsError(f"fs.snapshots entry for dir {snapshot.dir!r} has no snapshotid")
        target = local_dir(fs, snapshot.dir)
        transfer.progress(
            f"snapshot {snapshot.snapshotid} ({snapshot.label or 'its label'}) -> {target}"
        )
        total.merge(transfer.download_snapshot(snapshot.snapshotid, target))
    for entry in fs.dirs:
        target = local_dir(fs, entry.dir)
        rule = "keeplocal" if entry.onstart_keeplocal else "remote wins"
        transfer.progress(f"dir {entry.label} -> {target} (on conflict: {rule})")
        total.merge(transfer.download_label(entry.label, target, entry.onstart_keeplocal))
    return total
