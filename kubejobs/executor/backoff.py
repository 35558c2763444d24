"""Exponential backoff with jitter, for retrying servers that are down or overloaded."""

from __future__ import annotations

import random
import threading


class Backoff:
    """Delays doubling from `first` to `cap` seconds; reset() after a success."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        value = self._next
        self._next = min(self.cap, self._next * 2)
        return value * random.uniform(0.8, 1.2)

    def wait(self, stop: threading.Event) -> bool:
        """Sleep one delay; True when `stop` was set meanwhile."""
        return stop.wait(self.delay())
