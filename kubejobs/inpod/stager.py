"""Stage-in: put a process's CFS data in the shared volume before its main containers start.

Snapshots first (fixed file versions), then dirs (the latest files under each
label, with the onstart conflict rule). Any failure stops staging with an
error that names the label, snapshot or file; the init container then fails
and the main containers never start on incomplete data.
"""

from __future__ import annotations

from kubejobs.adapters.cfs import CfsError
from kubejobs.inpod.config import local_dir
from kubejobs.inpod.sync import SyncReport, Transfer
from kubejobs.spec.model import FileSystem


def stage_in(fs: FileSystem, transfer: Transfer) -> SyncReport:
    """Download every fs.snapshots and fs.dirs entry under fs.mount; the combined report."""
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
