"""A throwaway PostgreSQL 15 cluster on loopback, for one Colonies server.

The Colonies server keeps everything in PostgreSQL's fixed database
``postgres``, so each server gets a cluster of its own. PostgreSQL refuses to
run as root: initdb and the server run as the ``postgres`` user, in a data dir
of their own under the system temp dir (pytest's temp dirs are private to
root). fsync is off: the data only has to outlive a restart of the server
process, never a machine crash.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from testenv._proc import Service, TestEnvError, free_port, port_open, wait_until

USER = "postgres"
_SEARCH = ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")


def postgres_bin(name: str) -> str:
    """Path of a PostgreSQL program (initdb, postgres): the image's or Debian's package."""
    for directory in _SEARCH:
        path = Path(directory) / name
        if os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise TestEnvError(
        f"PostgreSQL's {name} not found: run testenv/install.sh (installs postgresql)"
    )


class PostgresServer:
    def __init__(self, log_dir: Path) -> None:
        try:
            account = pwd.getpwnam(USER)
        except KeyError:
            raise TestEnvError(
                f"no {USER!r} user: run testenv/install.sh (installs postgresql)"
            ) from None
        self.datadir = Path(tempfile.mkdtemp(prefix="kubejobs-pg-"))
        os.chown(self.datadir, account.pw_uid, account.pw_gid)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.password = "kubejobs-test"  # trust auth: any value is accepted
        self.service = Service(
            "postgres",
            [
                postgres_bin("postgres"),
                "-D",
                str(self.datadir / "data"),
                "-p",
                str(self.port),
                "-k",
                str(self.datadir),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            log_dir,
            user=USER,
        )
        self._initialised = False

    def _initdb(self) -> None:
        argv = [
            "runuser",
            "-u",
            USER,
            "--",
            postgres_bin("initdb"),
            "-D",
            str(self.datadir / "data"),
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise TestEnvError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        self._initialised = True

    def start(self) -> PostgresServer:
        if not self._initialised:
            self._initdb()
        self.service.start()
        wait_until(
            lambda: port_open(self.port), 60, "PostgreSQL", interval=0.1, service=self.service
        )
        return self

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client
        self.service.stop(timeout=30, sig=signal.SIGINT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
