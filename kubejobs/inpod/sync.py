"""Moving CFS files between labels and the shared volume, the way `colonies fs sync` does.

A label maps to a folder and a sub-label `LABEL/sub` to its subfolder `sub`.
Files are compared by SHA-256: identical files are left alone; a file that
differs is a conflict, settled by `keeplocal` (keep or upload the local copy)
or by the remote copy winning. Deletions never propagate. Downloads go to a
temporary name, are checked against the recorded checksum and size, and are
then renamed into place, readable and writable by every uid (main containers
seldom run as the stager's uid). Several stagers may fill one folder of a shared
volume at once: each downloads to a temporary name of its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubejobs.adapters.cfs import (
    CfsClient,
    CfsError,
    RemoteFile,
    S3Store,
    is_under,
    normalize_label,
)
from kubejobs.inpod.retry import Retrier

log = logging.getLogger(__name__)
PART_SUFFIX = ".kubejobs-part"
DIR_MODE = 0o777
FILE_MODE = 0o666

Progress = Callable[[str], None]


@dataclass
class SyncReport:
    downloaded: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_local: list[str] = field(default_factory=list)
    kept_remote: list[str] = field(default_factory=list)
    bytes: int = 0

    def merge(self, other: SyncReport) -> None:
        for name in ("downloaded", "uploaded", "unchanged", "kept_local", "kept_remote"):
            getattr(self, name).extend(getattr(other, name))
        self.bytes += other.bytes


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_dirs(path: Path) -> None:
    """mkdir -p with every created folder open to all uids (the umask does not apply)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        # keep the setgid bit an fsGroup volume gives new folders (restricted_pods): files
        # made below then keep the pod's group, which the log shipper syncs back with
        os.chmod(folder, DIR_MODE | (folder.stat().st_mode & stat.S_ISGID))


def _safe_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise CfsError(f"refusing file name {name!r} from the server")
    return name


class Transfer:
    """File moves between one colony's CFS and local folders, with retries and progress lines."""

    def __init__(
        self, cfs: CfsClient, store: S3Store, retry: Retrier, progress: Progress = lambda line: None
    ) -> None:
        self.cfs = cfs
        self.store = store
        self.retry = retry
        self.progress = progress

    # Downloads -------------------------------------------------------------

    def download_label(self, label: str, target: Path, keeplocal: bool) -> SyncReport:
        """Every file under `label` and its sub-labels into `target`.

        A label with no files is not an error: fs.dirs also name where results go, and
        such labels first exist when the process uploads to them.
        """
        root = normalize_label(label)
        labels = self.retry(lambda: self.cfs.labels_under(root), f"list labels under {root}")
        report = SyncReport()
        make_dirs(target)
        if not labels:
            self.progress(f"label {root} holds no files (yet): nothing to download")
        for sub in labels:
            files = self.retry(lambda sub=sub: self.cfs.files(sub), f"list files of {sub}")  # type: ignore[misc]
            folder = (
                target / sub[len(root) :].lstrip("/") if root != "/" else target / sub.lstrip("/")
            )
            for file in files:
                self._download(file, folder, keeplocal, report)
        return report

    def download_snapshot(self, snapshotid: str, target: Path) -> SyncReport:
        """The files a snapshot recorded, at their place relative to the snapshot's label."""
        snapshot = self.retry(lambda: self.cfs.snapshot(snapshotid), f"get snapshot {snapshotid}")
        report = SyncReport()
        make_dirs(target)
        for fileid in snapshot.fileids:
            file = self.retry(
                lambda fileid=fileid: self.cfs.file_by_id(fileid),  # type: ignore[misc]
                f"get file {fileid}",
            )
            if not is_under(file.label, snapshot.label):
                raise CfsError(
                    f"snapshot {snapshotid}: file {file.label}/{file.name} is outside "
                    f"its label {snapshot.label}"
                )
            rel = (
                file.label[len(snapshot.label) :].lstrip("/")
                if snapshot.label != "/"
                else file.label.lstrip("/")
            )
            self._download(file, target / rel, keeplocal=False, report=report)
        return report

    def _download(
        self, file: RemoteFile, folder: Path, keeplocal: bool, report: SyncReport
    ) -> None:
        dest = folder / _safe_name(file.name)
        shown = f"{file.label.rstrip('/')}/{file.name}"
        if dest.exists():
            if sha256_file(dest) == file.checksum:
                report.unchanged.append(shown)
                self.progress(f"unchanged  {shown} -> {dest}")
                return
            if keeplocal:
                report.kept_local.append(shown)
                self.progress(f"kept local {dest} (differs from {shown}; keeplocal)")
                return
        make_dirs(folder)
        # A name of its own: on a shared volume another pod's stager (another rank, another
        # process) may download the same file into the same folder at the same moment.
        part = folder / f".{file.name}.{secrets.token_hex(4)}{PART_SUFFIX}"

        def fetch() -> str:
            with open(part, "wb") as f:
                return self.store.download(file, f)

        try:
            checksum = self.retry(fetch, f"download {shown}")
            size = part.stat().st_size
            if file.checksum and checksum != file.checksum:
                raise CfsError(
                    f"{shown}: SHA-256 {checksum} does not match the recorded {file.checksum}"
                )
            if size != file.size:
                raise CfsError(f"{shown}: got {size} bytes, the server recorded {file.size}")
            os.chmod(part, FILE_MODE)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        report.downloaded.append(shown)
        report.bytes += file.size
        self.progress(f"downloaded {shown} -> {dest} ({file.size} bytes, sha256 ok)")

    # Uploads ---------------------------------------------------------------

    def upload_dir(self, source: Path, label: str, keeplocal: bool) -> SyncReport:
        """Local files under `source` to `label` (subfolders to sub-labels): new files always,
        differing files only with keeplocal (else the remote copy stays the latest)."""
        root = normalize_label(label)
        report = SyncReport()
        if not source.is_dir():
            return report
        for folder, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = Path(folder).relative_to(source).as_posix()
            sub = root if rel == "." else normalize_label(f"{root}/{rel}")
            names = sorted(
                n
                for n in filenames
                if not n.endswith(PART_SUFFIX)
                and Path(folder, n).is_file()
                and not Path(folder, n).is_symlink()
            )
            if not names:
                continue
            remote = {
                f.name: f
                for f in self.retry(
                    lambda sub=sub: self.cfs.files(sub),  # type: ignore[misc]
                    f"list files of {sub}",
                )
            }
            for name in names:
                self._upload(Path(folder, name), sub, remote.get(name), keeplocal, report)
        return report

    def _upload(
        self, path: Path, label: str, remote: RemoteFile | None, keeplocal: bool, report: SyncReport
    ) -> None:
        shown = f"{label.rstrip('/')}/{path.name}"
        checksum = sha256_file(path)
        if remote is not None:
            if remote.checksum == checksum:
                report.unchanged.append(shown)
                return
            if not keeplocal:
                report.kept_remote.append(shown)
                self.progress(f"kept remote {shown} (local {path} differs; keeplocal false)")
                return
        size = path.stat().st_size
        obj = self.retry(lambda: self.store.upload(path), f"upload {path}") if size else ""
        self.retry(
            lambda: self.cfs.add_file(label, path.name, size, checksum, obj, self.store),
            f"record {shown}",
        )
        report.uploaded.append(shown)
        report.bytes += size
        self.progress(f"uploaded   {path} -> {shown} ({size} bytes)")


def clear_dir(folder: Path) -> None:
    """Remove what is inside `folder` (keepfiles false); files another uid owns may stay."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as err:
            log.warning("could not remove %s: %s", entry, err.strerror)
