"""An executor's note reaches the process log through a Colonies server restart, against the
real server (ServerActions.note; the logic's cases: tests/unit/executor/test_notes.py).

The notes say why a program ran again (Kueue stopped run N) and where a process waits;
the soak showed them dropped when they met a restart of the server."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kubejobs.adapters.colonies import ColoniesClient, ColoniesUnavailable
from kubejobs.executor.loop import ServerActions
from kubejobs.executor.metrics import Metrics
from testenv.colonies import ColoniesServer
from tests.integration.test_colonies_server import Executor

pytestmark = pytest.mark.integration
DOWN = 3.0


def running_process(colonies: ColoniesServer) -> tuple[Executor, str]:
    ex = Executor(colonies)
    pid = ex.submit()
    assigned = ex.client.assign(colonies.colony_name, 5)
    assert assigned is not None and assigned["processid"] == pid
    return ex, pid


def actions(client: ColoniesClient, patience: float) -> ServerActions:
    return ServerActions(client, None, "ns", "me", Metrics(), note_patience=patience)  # type: ignore[arg-type]


def test_a_note_added_while_the_server_restarts_reaches_the_log(colonies: ColoniesServer) -> None:
    ex, pid = running_process(colonies)
    done: list[Any] = []
    colonies.stop()
    try:
        noting = threading.Thread(
            target=lambda: done.append(actions(ex.client, 60.0).note(pid, "kubejobs: a note"))
        )
        noting.start()
        time.sleep(DOWN)  # the server stays away while the note is tried
        assert not done
    finally:
        colonies.start()
    noting.join(30)
    assert done == [("noted", pid)]
    assert colonies.log_text(pid).splitlines() == ["kubejobs: a note"]
    ex.close()


def test_past_its_patience_a_note_gives_up(colonies: ColoniesServer) -> None:
    ex, pid = running_process(colonies)
    colonies.stop()
    try:
        with pytest.raises(ColoniesUnavailable):
            actions(ex.client, 1.0).note(pid, "kubejobs: lost")
    finally:
        colonies.start()
    assert colonies.log_text(pid) == ""
    ex.close()
