"""The Colonies file system (CFS): file metadata RPCs on the Colonies server, file bodies in S3.

The server keeps only metadata (label, name, size, SHA-256, S3 object); clients
move the bytes to and from S3 themselves. pycolonies' CFS code is not used: its
`sync` needs a native library the wheel lacks, `upload_file` crashes without
AWS_S3_TLS/AWS_S3_SKIPVERIFY and `download_file(fileid=...)` raises TypeError.
The message types follow the Colonies server v1.9.7 (pkg/rpc). This is the one
module that imports boto3.

Label listing quirk worked around here: the server's "exact" label query matches
`LABEL/%` and returns nothing at all when the label itself holds no files, so
sub-labels are found with the prefix query and filtered on the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kubejobs.adapters.colonies import ColoniesClient, ColoniesError, ColoniesUnavailable
from kubejobs.errors import KubejobsError

CHUNK = 1024 * 1024


class CfsError(KubejobsError):
    """A CFS operation failed for a reason retrying will not fix (missing label, snapshot, bad checksum)."""


class StorageUnavailable(KubejobsError):
    """S3 could not be reached or answered with a server error; retrying may help."""


@dataclass(frozen=True)
class RemoteFile:
    """The latest revision of one file under a label."""

    label: str
    name: str
    size: int
    checksum: str  # SHA-256, hex
    s3_object: str
    bucket: str = ""
    fileid: str = ""


@dataclass(frozen=True)
class Snapshot:
    snapshotid: str
    label: str
    name: str
    fileids: tuple[str, ...]


def normalize_label(label: str) -> str:
    """'/a/b' form: one leading slash, no trailing slash ('/' stays '/')."""
    return "/" + label.strip("/")


def is_under(label: str, root: str) -> bool:
    root = normalize_label(root)
    return label == root or root == "/" or label.startswith(root + "/")


class CfsClient:
    """CFS metadata RPCs for one colony, through a ColoniesClient (its key signs them)."""

    def __init__(self, client: ColoniesClient, colony: str) -> None:
        self.client = client
        self.colony = colony

    def labels_under(self, label: str) -> list[str]:
        """`label` and every sub-label that holds files, sorted."""
        root = normalize_label(label)
        reply = (
            self.client.rpc(
                {
                    "msgtype": "getfilelabelsmsg",
                    "colonyname": self.colony,
                    "name": root,
                    "exact": False,
                }
            )
            or []
        )
        names = {str(item.get("name", "")) for item in reply}
        return sorted(n for n in names if is_under(n, root))

    def files(self, label: str) -> list[RemoteFile]:
        """The latest revision of each file directly under `label` (no sub-labels)."""
        label = normalize_label(label)
        reply = (
            self.client.rpc({"msgtype": "getfilesmsg", "colonyname": self.colony, "label": label})
            or []
        )
        return sorted(
            (
                RemoteFile(
                    label=label,
                    name=str(d["name"]),
                    size=int(d.get("size", 0)),
                    checksum=str(d.get("checksum", "")),
                    s3_object=str(d.get("s3filename", "")),
                )
                for d in reply
            ),
            key=lambda f: f.name,
        )

    def file_by_id(self, fileid: str) -> RemoteFile:
        try:
            reply = self.client.rpc(
                {
                    "msgtype": "getfilemsg",
                    "colonyname": self.colony,
                    "fileid": fileid,
                    "label": "",
                    "name": "",
                    "latest": True,
                }
            )
        except ColoniesError as err:
            if isinstance(err, ColoniesUnavailable):
                raise
            raise CfsError(f"file {fileid} not found: {err}") from None
        if not reply:
            raise CfsError(f"file {fileid} not found")
        return _remote_file(reply[0])

    def snapshot(self, snapshotid: str = "", name: str = "") -> Snapshot:
        """A snapshot by id (preferred) or by name; CfsError when the server has none."""
        try:
            reply = self.client.rpc(
                {
                    "msgtype": "getsnapshotmsg",
                    "colonyname": self.colony,
                    "snapshotid": snapshotid,
                    "name": "" if snapshotid else name,
                }
            )
        except ColoniesError as err:
            if isinstance(err, ColoniesUnavailable) or "not found" not in str(err).lower():
                raise
            raise CfsError(
                f"snapshot {snapshotid or name!r} not found in colony {self.colony!r}"
            ) from None
        return Snapshot(
            snapshotid=str(reply["snapshotid"]),
            label=normalize_label(str(reply["label"])),
            name=str(reply.get("name", "")),
            fileids=tuple(reply.get("fileids") or ()),
        )

    def create_snapshot(self, label: str, name: str) -> Snapshot:
        """The server records `label` and its sub-labels only when `label` itself holds
        files, and nothing for "/" (it trims the trailing slash); names are unique."""
        reply = self.client.rpc(
            {
                "msgtype": "createsnapshotmsg",
                "colonyname": self.colony,
                "label": normalize_label(label),
                "name": name,
            }
        )
        return Snapshot(
            snapshotid=str(reply["snapshotid"]),
            label=str(reply["label"]),
            name=str(reply.get("name", "")),
            fileids=tuple(reply.get("fileids") or ()),
        )

    def remove_snapshot(self, snapshotid: str) -> None:
        self.client.rpc(
            {
                "msgtype": "removesnapshotmsg",
                "colonyname": self.colony,
                "snapshotid": snapshotid,
                "name": "",
            }
        )

    def add_file(
        self, label: str, name: str, size: int, checksum: str, s3_object: str, store: S3Store
    ) -> RemoteFile:
        """Record a file whose body is already in S3 as the newest revision of label/name."""
        file = {
            "fileid": "",
            "colonyname": self.colony,
            "label": normalize_label(label),
            "name": name,
            "size": size,
            "sequencenr": 1,
            "checksum": checksum,
            "checksumalg": "SHA256",
            # No credentials in metadata: every reader brings its own (unlike the Go client).
            "ref": {
                "protocol": "s3",
                "s3object": {
                    "server": store.endpoint,
                    "port": -1,
                    "tls": store.tls,
                    "accesskey": "",
                    "secretkey": "",
                    "region": store.region,
                    "encryptionkey": "",
                    "encryptionalg": "",
                    "object": s3_object,
                    "bucket": store.bucket,
                },
            },
        }
        reply = self.client.rpc({"msgtype": "addfilemsg", "file": file})
        return _remote_file(reply)


def _remote_file(data: Mapping[str, Any]) -> RemoteFile:
    s3 = data.get("ref", {}).get("s3object", {})
    return RemoteFile(
        label=normalize_label(str(data["label"])),
        name=str(data["name"]),
        size=int(data.get("size", 0)),
        checksum=str(data.get("checksum", "")),
        s3_object=str(s3.get("object", "")),
        bucket=str(s3.get("bucket", "")),
        fileid=str(data.get("fileid", "")),
    )


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class S3Store:
    """File bodies in one S3 bucket, configured like every Colonies client (AWS_S3_* variables)."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "",
        tls: bool = False,
        skip_verify: bool = False,
        timeout: float = 30.0,
    ) -> None:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.tls = tls
        url = endpoint if "://" in endpoint else f"{'https' if tls else 'http'}://{endpoint}"
        self._s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region or "us-east-1",
            verify=not skip_verify,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )
        self._bucket_checked = False

    def __repr__(self) -> str:
        return f"S3Store({self.endpoint!r}, bucket={self.bucket!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Store:
        missing = [k for k in ("AWS_S3_ENDPOINT", "AWS_S3_BUCKET") if not environ.get(k)]
        if missing:
            raise CfsError(f"S3 is not configured: {', '.join(missing)} not set")
        return cls(
            environ["AWS_S3_ENDPOINT"],
            environ["AWS_S3_BUCKET"],
            environ.get("AWS_S3_ACCESSKEY", ""),
            environ.get("AWS_S3_SECRETKEY", ""),
            environ.get("AWS_S3_REGION", ""),
            _true(environ.get("AWS_S3_TLS")),
            _true(environ.get("AWS_S3_SKIPVERIFY")),
        )

    def download(
        self, file: RemoteFile, target: BinaryIO, progress: Callable[[int], None] | None = None
    ) -> str:
        """Write the body of `file` to `target`; the SHA-256 of what was written."""
        digest = hashlib.sha256()
        if file.size == 0:  # empty files have no S3 body (the Go client never uploads one)
            return digest.hexdigest()
        with _s3_errors(f"download s3://{file.bucket or self.bucket}/{file.s3_object}"):
            body = self._s3.get_object(Bucket=file.bucket or self.bucket, Key=file.s3_object)[
                "Body"
            ]
            try:
                for chunk in iter(lambda: body.read(CHUNK), b""):
                    digest.update(chunk)
                    target.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            finally:
                body.close()
        return digest.hexdigest()

    def upload(self, path: Path) -> str:
        """Put `path` under a fresh random object name; that name."""
        object_name = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        with _s3_errors(f"upload {path.name}"):
            self._ensure_bucket()
            self._s3.upload_file(os.fspath(path), self.bucket, object_name)
        return object_name

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket"):
                raise
            self._s3.create_bucket(Bucket=self.bucket)
        self._bucket_checked = True


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Map botocore errors: connection problems and 5xx -> StorageUnavailable, the rest -> CfsError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            raise StorageUnavailable(f"{what}: S3 answered {code or status}") from None
        raise CfsError(f"{what}: S3 answered {code or status}") from None
    except BotoCoreError as err:
        raise StorageUnavailable(f"{what}: S3 unreachable ({type(err).__name__})") from None
