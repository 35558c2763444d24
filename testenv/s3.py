"""An S3 endpoint on loopback: moto's server (moto[server] from PyPI)."""

from __future__ import annotations

import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testenv._proc import Service, free_port, wait_until


@dataclass
class S3Config:
    endpoint: str  # host:port, no scheme (the Colonies AWS_S3_ENDPOINT form)
    accesskey: str
    secretkey: str
    bucket: str
    region: str = "us-east-1"
    tls: bool = False
    skipverify: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def env(self) -> dict[str, str]:
        """The AWS_S3_* variables Colonies clients read."""
        return {
            "AWS_S3_ENDPOINT": self.endpoint,
            "AWS_S3_ACCESSKEY": self.accesskey,
            "AWS_S3_SECRETKEY": self.secretkey,
            "AWS_S3_BUCKET": self.bucket,
            "AWS_S3_REGION": self.region,
            "AWS_S3_TLS": "true" if self.tls else "false",
            "AWS_S3_SKIPVERIFY": "true" if self.skipverify else "false",
        }


class S3Server:
    def __init__(self, workdir: Path | None = None, bucket: str = "kubejobs-test") -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubejobs-s3-"))
        self.port = free_port()
        self.config = S3Config(
            endpoint=f"127.0.0.1:{self.port}",
            accesskey="testenvaccesskey",
            secretkey="testenvsecretkey",
            bucket=bucket,
        )
        self.service = Service(
            "moto-s3",
            # every address: the real node's pods reach it on testenv.podnet.HOST_IP
            [sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", str(self.port)],
            self.workdir / "logs",
            env={
                "AWS_ACCESS_KEY_ID": self.config.accesskey,
                "AWS_SECRET_ACCESS_KEY": self.config.secretkey,
                "MOTO_ALLOW_NONEXISTENT_REGION": "true",
            },
        )

    def start(self) -> S3Server:
        self.service.start()

        def up() -> bool:
            with urllib.request.urlopen(f"{self.config.url}/moto-api/", timeout=2) as r:
                return bool(r.status == 200)

        wait_until(up, 60, "moto S3 server", interval=0.2, service=self.service)
        self.client().create_bucket(Bucket=self.config.bucket)
        return self

    def stop(self) -> None:
        self.service.stop()

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.config.url,
            aws_access_key_id=self.config.accesskey,
            aws_secret_access_key=self.config.secretkey,
            region_name=self.config.region,
        )
