"""A full executor stays registered: the Colonies server unregisters executors that stop assigning.

The server counts only assign requests as signs of life and, every cleanup
interval, unregisters executors silent for longer than the stale duration,
putting their RUNNING processes back to WAITING (the take-back check would then
delete their Jobs). Here those durations are seconds instead of 600 s / 60 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testenv.colonies import ColoniesServer
from tests.integration import test_executor_e2e as e2e
from tests.integration.test_executor_e2e import RUNNING, ExecutorRun, spec

pytestmark = pytest.mark.integration
STALE_SECONDS = 4
executor = e2e.executor  # the same executor fixture, against this module's server


def stale_server(workdir: Path, stale_seconds: int) -> Iterator[ColoniesServer]:
    """A real Colonies server that unregisters executors silent for `stale_seconds`
    (instead of 600 s), checking every second."""
    server = ColoniesServer(
        workdir,
        server_env={
            "COLONIES_STALE_EXECUTOR_DURATION": str(stale_seconds),
            "COLONIES_CLEANUP_INTERVAL": "1",
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def colonies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColoniesServer]:
    yield from stale_server(tmp_path_factory.mktemp("colonies-stale"), STALE_SECONDS)


def test_full_executor_keeps_its_running_process(
    executor: Callable[..., ExecutorRun], colonies: Any
) -> None:
    run = executor({"kwok.test/run-forever": "true"}, max_jobs=1, keepalive_seconds=1)
    pid = run.submit(spec(run.type))
    deadline = time.monotonic() + 60
    while not run.jobs():
        assert time.monotonic() < deadline, run.log()
        time.sleep(0.2)
    # Full (max_jobs=1) for three stale durations: only keep-alive assigns are sent.
    time.sleep(3 * STALE_SECONDS)
    process = colonies.get_process(pid)
    assert process["state"] == RUNNING, run.log()
    assert len(run.jobs()) == 1
    assert "keep-alive assign failed" not in run.log()
