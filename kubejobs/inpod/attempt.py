"""Whether the log shipper's attempt is still the process's: a taken-back attempt ships nothing more.

The server takes a process back at maxexectime and may assign it to the same
executor at once; the earlier attempt's pod is then still stopping (its grace
period) while the next attempt runs, and its shipper signs with the same
executor key, so Colonies would accept its late lines into the process log of
the next attempt. The shipper knows its attempt (`KUBEJOBS_ATTEMPT`, absent
means 1; the server's process has `retries` = attempt - 1 while in it) and asks
the server before it sends a batch, sets the output or syncs results:

- once, before the first batch: that read gives the attempt's deadline;
- near or past the attempt's maxexectime (the server's `starttime` +
  `maxexectime`, less `margin` for the clocks) before every batch, so the
  window is one round trip between the check and the send; but only when
  another attempt can follow this one (maxexectime set, retries left): in the
  last attempt the server fails the process at the deadline, and refuses its
  lines from then on by itself;
- always before the output and the onclose sync.

Far from the deadline nothing is asked: only maxexectime makes a next attempt
(an executor removed and given the process back keeps the attempt number, so
no read could tell; the server refuses a removed executor's lines meanwhile),
so a pod costs the server two or three reads, not one every few seconds.

Once the attempt is over it stays over: the shipper stops shipping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from kubejobs.adapters.colonies import (
    RUNNING,
    ColoniesError,
    ColoniesUnavailable,
    assignment_deadline,
)

GONE_STATUSES = (403, 404)  # the process was removed, or this executor is no longer a member
STATES = {0: "WAITING", 1: "RUNNING", 2: "SUCCESS", 3: "FAILED"}


def in_attempt(process: dict[str, Any], attempt: int) -> bool:
    return process.get("state") == RUNNING and process.get("retries") == attempt - 1


def another_may_follow(process: dict[str, Any]) -> bool:
    """Whether a take-back of this assignment would give the process another attempt
    (maxretries -1 means no limit); otherwise the server fails it at the deadline."""
    limit = (process.get("spec") or {}).get("maxretries", -1)
    retries = process.get("retries")
    if not isinstance(limit, int) or not isinstance(retries, int):
        return True  # cannot tell: keep asking
    return limit < 0 or retries < limit


class AttemptGuard:
    """Asks the server whether the process is still RUNNING in this pod's attempt."""

    def __init__(
        self,
        read: Callable[[], dict[str, Any]],
        attempt: int,
        recheck: float = math.inf,
        margin: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read = read
        self.attempt = attempt
        self.recheck = recheck
        self.margin = margin
        self.clock = clock
        self.over = ""
        """Why the attempt is over ('' while it is not)."""
        self._confirmed = -math.inf
        self._deadline = math.inf
        self.lookups = 0

    def current(self, fresh: bool = False) -> bool:
        """False once the attempt is over; ColoniesUnavailable when the server cannot say."""
        if self.over:
            return False
        now = self.clock()
        if (
            not fresh
            and now - self._confirmed < self.recheck
            and now < self._deadline - self.margin
        ):
            return True
        self.lookups += 1
        try:
            process = self.read()
        except ColoniesUnavailable:
            raise
        except ColoniesError as err:
            if err.status in GONE_STATUSES:
                self.over = f"the server no longer gives this executor the process ({err})"
                return False
            raise ColoniesUnavailable(str(err)) from None  # says nothing: retried
        if not in_attempt(process, self.attempt):
            retries = process.get("retries")
            state = process.get("state")
            self.over = f"attempt {self.attempt} is over: the process is " + (
                f"in attempt {retries + 1}"
                if isinstance(retries, int) and state == RUNNING
                else f"{STATES.get(state, state) if isinstance(state, int) else state} "
                f"after {retries} retries"
            )
            return False
        self._confirmed = now
        self._deadline = assignment_deadline(process) if another_may_follow(process) else math.inf
        return True
