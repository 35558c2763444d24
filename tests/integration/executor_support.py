"""Shared by the tests that run the executor as a subprocess."""

from __future__ import annotations

import subprocess
import urllib.request


def executor_ready(proc: subprocess.Popen[bytes], port: int | str, log: str) -> bool:
    """Whether the executor answers /readyz; an AssertionError with its log if it died."""
    if proc.poll() is not None:
        raise AssertionError(f"executor exited with {proc.returncode}:\n{log}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False
