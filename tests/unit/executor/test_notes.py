"""The executor's notes in a process log ride out a short Colonies outage (ServerActions.note):
tried again while the server is away, up to NOTE_PATIENCE from the first note that met the
outage; a refusal is not tried again. Against the real server: tests/integration/test_notes_real.py."""

from __future__ import annotations

from typing import Any

import pytest

from kubejobs.adapters.colonies import ColoniesError, ColoniesUnavailable
from kubejobs.executor import loop
from kubejobs.executor.loop import ServerActions
from kubejobs.executor.metrics import Metrics


class Colonies:
    """add_log: the server is away for the first `away` calls."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.calls = 0
        self.logged: list[tuple[str, str]] = []

    def add_log(self, pid: str, message: str) -> None:
        self.calls += 1
        if self.calls <= self.away:
            raise ColoniesUnavailable("Colonies server unreachable: ConnectionError")
        self.logged.append((pid, message))


def actions(colonies: Any, patience: float = 60.0) -> ServerActions:
    return ServerActions(colonies, None, "ns", "me", Metrics(), note_patience=patience)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop.Backoff, "wait", lambda self, stop: stop.is_set())


def test_a_note_is_added_once_the_server_is_back() -> None:
    colonies = Colonies(away=3)
    assert actions(colonies).note("p", "kubejobs: Kueue stopped run 1") == ("noted", "p")
    assert colonies.logged == [("p", "kubejobs: Kueue stopped run 1\n")]
    assert colonies.calls == 4


def test_an_outage_longer_than_the_patience_gives_each_note_one_try() -> None:
    colonies = Colonies(away=100)
    slow = actions(colonies, patience=0.0)
    with pytest.raises(ColoniesUnavailable):
        slow.note("p", "kubejobs: one")
    with pytest.raises(ColoniesUnavailable):
        slow.note("q", "kubejobs: two")
    assert colonies.calls == 2
    colonies.away = 0  # back: the next note goes at once, and the outage clock is reset
    assert slow.note("r", "kubejobs: three") == ("noted", "r")
    assert slow._away_since is None


def test_a_stopping_executor_does_not_wait_for_the_server() -> None:
    colonies = Colonies(away=100)
    stopping = actions(colonies)
    stopping.stop.set()
    with pytest.raises(ColoniesUnavailable):
        stopping.note("p", "kubejobs: one")
    assert colonies.calls == 1


def test_a_refused_note_is_not_tried_again() -> None:
    class Refusing(Colonies):
        def add_log(self, pid: str, message: str) -> None:
            self.calls += 1
            raise ColoniesError("process is not running", 400)

    colonies = Refusing(away=0)
    assert actions(colonies).note("p", "kubejobs: one") == ("noted", "p")
    assert colonies.calls == 1
