"""Two stagers downloading the same file into one folder of a shared volume at once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from kubejobs.adapters.cfs import RemoteFile
from kubejobs.inpod.retry import Retrier
from kubejobs.inpod.sync import Transfer

BODY = b"the same input for both ranks\n" * 1000
FILE = RemoteFile(
    label="/in", name="in.txt", size=len(BODY), checksum=hashlib.sha256(BODY).hexdigest(),
    s3_object="obj",
)  # fmt: skip


class OneLabel:
    def labels_under(self, label: str) -> list[str]:
        return ["/in"]

    def files(self, label: str) -> list[RemoteFile]:
        return [FILE]


class InterleavedStore:
    """Writes half the body, lets the other stager download the whole file, then the rest."""

    def __init__(self) -> None:
        self.other: Transfer | None = None
        self.target = Path()

    def download(self, file: RemoteFile, target: BinaryIO, progress: Any = None) -> str:
        target.write(BODY[: len(BODY) // 2])
        target.flush()
        if self.other is not None:
            other, self.other = self.other, None
            other.download_label("/in", self.target, keeplocal=False)
        target.write(BODY[len(BODY) // 2 :])
        return hashlib.sha256(BODY).hexdigest()


def test_two_stagers_filling_one_folder_at_once_both_succeed_with_the_whole_file(
    tmp_path: Path,
) -> None:
    store = InterleavedStore()
    store.target = tmp_path / "in"
    cfs: Any = OneLabel()
    first = Transfer(cfs, store, Retrier(budget=1))  # type: ignore[arg-type]
    store.other = Transfer(cfs, store, Retrier(budget=1))  # type: ignore[arg-type]
    report = first.download_label("/in", tmp_path / "in", keeplocal=False)
    assert report.downloaded == ["/in/in.txt"]
    assert (tmp_path / "in" / "in.txt").read_bytes() == BODY
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["in.txt"]
