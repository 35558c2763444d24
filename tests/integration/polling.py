"""Waiting for a condition in the integration tests: bounded, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(check: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
    """The first truthy value of `check()`, polled every 0.2 s; AssertionError after `timeout` s.

    The timeout only bounds a hung test; it asserts nothing about speed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)
