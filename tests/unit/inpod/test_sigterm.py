"""SIGTERM caught from the first moment and replayed to whoever registers later."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from kubejobs.inpod import sigterm


@pytest.fixture
def fresh() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    sigterm.received.clear()
    sigterm._callbacks.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        sigterm.received.clear()
        sigterm._callbacks.clear()


def test_a_sigterm_before_anyone_registered_is_replayed_at_registration(fresh: None) -> None:
    sigterm.install()
    os.kill(os.getpid(), signal.SIGTERM)  # the process survives: the handler is there
    assert sigterm.received.is_set()
    calls: list[str] = []
    sigterm.on_sigterm(lambda: calls.append("late"))
    assert calls == ["late"]


def test_registered_callbacks_run_on_sigterm(fresh: None) -> None:
    sigterm.install()
    calls: list[str] = []
    sigterm.on_sigterm(lambda: calls.append("shipper"))
    assert calls == []
    os.kill(os.getpid(), signal.SIGTERM)
    assert calls == ["shipper"]
