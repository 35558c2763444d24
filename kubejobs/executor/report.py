"""Telling the Colonies server how a process ended, and telling a refusal from an outage.

When the server refuses a close or fail, the process is looked up: if it is no
longer RUNNING on this executor (maxexectime passed, closed already before a
restart, removed) the refusal is final and the Job is only cleaned up; if it is
still ours, the report is retried.

An outcome that names its attempt (the reconciler does so near or past the
attempt's maxexectime, and for Jobs found after a restart) is first checked
against the server: the result of an attempt the server has taken back is never
reported, since the server may already have given this executor the next
attempt of the same process, which a close would end with the old result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubejobs.adapters.colonies import ColoniesClient, ColoniesError, ColoniesUnavailable
from kubejobs.executor.attempts import is_current
from kubejobs.executor.metrics import Metrics
from kubejobs.executor.outcome import Outcome

log = logging.getLogger(__name__)

GONE_STATUSES = (403, 404)


def still_ours(
    colonies: ColoniesClient,
    process_id: str,
    executor_id: str,
    seen: Callable[[dict[str, Any]], None] | None = None,
    attempt: int | None = None,
) -> bool | None:
    """True while the process is RUNNING on this executor (in `attempt`, when given); None
    when the server cannot say.

    ``seen`` gets the process document when the server sent one.
    """
    try:
        process = colonies.get_process(process_id)
    except ColoniesUnavailable:
        return None
    except ColoniesError as err:
        # 404: removed; 403: this executor is no longer a member (unregistered).
        # Anything else (the server's database errors are 400/500 too) says nothing.
        return False if err.status in GONE_STATUSES else None
    if seen is not None:
        seen(process)
    return is_current(process, executor_id, attempt)


def report(
    colonies: ColoniesClient, executor_id: str, metrics: Metrics, process_id: str, outcome: Outcome
) -> tuple[Any, ...]:
    """('reported', pid, accepted) or ('retry', pid)."""
    if outcome.attempt:
        current = still_ours(colonies, process_id, executor_id, attempt=outcome.attempt)
        if current is None:
            return ("retry", process_id)
        if not current:
            log.info(
                "process %s: attempt %d is over on the server; its result is not reported",
                process_id,
                outcome.attempt,
            )
            return ("reported", process_id, False)
    try:
        if outcome.notes:
            add_notes(colonies, process_id, outcome.notes)
        if outcome.success:
            colonies.close(process_id, list(outcome.output))
        else:
            colonies.fail(process_id, list(outcome.errors))
    except ColoniesUnavailable as err:
        metrics.api_errors.labels(api="colonies").inc()
        log.warning("process %s: cannot report yet: %s", process_id, err)
        return ("retry", process_id)
    except ColoniesError as err:
        ours = still_ours(colonies, process_id, executor_id)
        if ours is None or ours:
            metrics.api_errors.labels(api="colonies").inc()
            log.warning("process %s: report refused, will retry: %s", process_id, err)
            return ("retry", process_id)
        log.info("process %s is no longer running on this executor (%s)", process_id, err)
        return ("reported", process_id, False)
    log.info(
        "process %s %s",
        process_id,
        "closed" if outcome.success else "failed: " + "; ".join(outcome.errors)[:500],
    )
    return ("reported", process_id, True)


def add_notes(
    colonies: ColoniesClient, process_id: str, notes: list[str], announce: bool = True
) -> None:
    """Lines for the process log (best effort: a refusal is only logged; an outage raises).
    `announce`: log them here too (not again when they are tried again)."""
    for note in notes if announce else ():
        log.info("process %s: %s", process_id, note)
    try:
        colonies.add_log(process_id, "".join(note + "\n" for note in notes))
    except ColoniesUnavailable:
        raise
    except ColoniesError as err:
        log.warning("process %s: could not add the notes to its log: %s", process_id, err)
