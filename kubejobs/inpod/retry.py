"""Retrying calls to servers that may be away for a while, with backoff and a clear end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kubejobs.adapters.cfs import StorageUnavailable
from kubejobs.adapters.colonies import ColoniesCertificateError, ColoniesUnavailable
from kubejobs.errors import KubejobsError

T = TypeVar("T")
log = logging.getLogger(__name__)
TRANSIENT: tuple[type[Exception], ...] = (ColoniesUnavailable, StorageUnavailable)


class Unreachable(KubejobsError):
    """A server stayed unreachable for the whole retry budget."""


class Retrier:
    """Retries transient failures with exponential backoff until `budget` seconds have passed."""

    def __init__(
        self,
        budget: float = 120.0,
        first_delay: float = 0.5,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock

    def __call__(self, call: Callable[[], T], what: str) -> T:
        start = self.clock()
        delay = self.first_delay
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except ColoniesCertificateError:
                raise  # a certificate does not verify by waiting: say so now, not in 300 s
            except TRANSIENT as err:
                waited = self.clock() - start
                if waited + delay > self.budget:
                    raise Unreachable(
                        f"{what}: {err} (gave up after {attempt} attempts in {waited:.0f} s)"
                    ) from None
                log.warning("%s: %s; retrying in %.1f s", what, err, delay)
                self.sleep(delay)
                delay = min(delay * 2, self.max_delay)
