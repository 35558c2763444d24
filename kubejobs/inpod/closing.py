"""Which pod runs the onclose when several pods of one process share the data volume.

With a pvc, the pods of a multi-node process (its node ranks) see the same
folders. Each rank's log shipper used to run the onclose by itself when its own
pod's programs had ended: the first rank to finish uploaded the other ranks'
half-written files (and, with keepfiles false, deleted them under the ranks
still running). Now every rank records on the volume that it has ended, and
only the one that finds every rank ended runs the onclose, once, for all; a
race between the last two is settled by an atomic mkdir. The records live
under `<mount>/.kubejobs/close/<process id>-<attempt>/` and are removed by the
rank that closed. Ranks that never reach the close (a pod that failed before
its shipper finished) leave the records, and then nothing is synced: the
process has failed.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from kubejobs.inpod.sync import make_dirs

RECORDS = Path(".kubejobs") / "close"
ENDED = "ended-"
CLOSING = "closing"


def records(mount: Path, process_id: str, attempt: int) -> Path:
    return mount / RECORDS / f"{process_id}-{attempt}"


def last_to_close(mount: Path, process_id: str, attempt: int, rank: str, pods: int) -> bool:
    """Record that `rank` has ended; True for exactly one rank, the one that finds all `pods`
    ranks ended (the others return False and leave the onclose to it)."""
    folder = records(mount, process_id, attempt)
    for tries in range(3):
        try:
            make_dirs(folder)
            (folder / f"{ENDED}{rank}").touch()
            break
        except FileNotFoundError:  # another process's closer removed a parent just then
            if tries == 2:
                raise
    ended = [p for p in folder.iterdir() if p.name.startswith(ENDED)]
    if len(ended) < pods:
        return False
    try:
        (folder / CLOSING).mkdir()
    except FileExistsError:
        return False
    return True


def forget(mount: Path, process_id: str, attempt: int) -> None:
    """Remove this attempt's records, and their parents when no other process has any."""
    shutil.rmtree(records(mount, process_id, attempt), ignore_errors=True)
    for parent in (mount / RECORDS, mount / RECORDS.parent):
        with contextlib.suppress(OSError):
            parent.rmdir()
