"""SIGTERM for a program that runs as PID 1 of its container, caught from its first moment.

The kernel drops a signal that PID 1 has no handler for: the default action
(terminate) does not apply to a namespace's init process. A quick program can
end, and the kubelet send SIGTERM to the injected containers, while they are
still importing; a dropped SIGTERM then costs the whole termination grace
period. So the entry point (kubejobs/inpod/entry.py) installs this handler
before it imports anything slow, and the programs register what SIGTERM means
to them once they exist; a SIGTERM that came before that is replayed at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

received = threading.Event()
_callbacks: list[Callable[[], None]] = []


def install() -> None:
    signal.signal(signal.SIGTERM, _handle)


def on_sigterm(callback: Callable[[], None]) -> None:
    """Run `callback` (in the main thread) on SIGTERM; at once if it already came."""
    _callbacks.append(callback)
    if received.is_set():
        callback()


def _handle(signum: int, frame: FrameType | None) -> None:
    received.set()
    for callback in list(_callbacks):
        callback()
