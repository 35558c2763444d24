"""The soak's checker (benchmarks/soak/checks.py) on hand-made histories: it must see what it
is there to see, and accept what a fault or Kueue legitimately causes."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.soak.checks import check_log, check_reported_once, check_rss_flat, violations
from benchmarks.soak.history import FaultRecord, History, ProcessRecord
from benchmarks.soak.mix import SUCCESS, Expect
from kubejobs.executor.outcome import NEVER_STARTED

EXPECT = Expect(SUCCESS, streams={"": ["1", "2", "3"]}).as_dict()
STOPPED = "kubejobs: Kueue stopped run 1 (Preempted: ...); the process runs again from the start"


def record(log: list[str], **extra: object) -> ProcessRecord:
    base = ProcessRecord("p" * 64, "numbered", "m1", "python", 100.0, EXPECT, state=SUCCESS)
    fields: dict[str, object] = {"reports": 1, "end_time": 110.0, "submission_time": 100.0}
    return replace(base, log=log, **{**fields, **extra})


def history(*processes: ProcessRecord) -> History:
    h = History(1, 60.0, started=90.0, ended=200.0, processes=list(processes))
    h.faults = [FaultRecord("kubelet", "kubelet", 104.0, 108.0)]
    return h


def run(run_id: str, *texts: str) -> list[str]:
    return [f"{run_id} m1 {t}" for t in texts]


def test_one_whole_run_is_right() -> None:
    p = record(["kubejobs: admitted by Kueue", *run("aaaaaaaa", "1", "2", "3")])
    assert violations(history(p)) == []


def test_a_preempted_run_cut_short_then_a_whole_one_is_right_even_with_a_late_line() -> None:
    log = [*run("aaaaaaaa", "1"), STOPPED, *run("aaaaaaaa", "2"), *run("bbbbbbbb", "1", "2", "3")]
    assert check_log(history(), record(log)) == []


def test_a_second_run_no_note_explains_names_the_process_and_the_faults() -> None:
    log = [*run("aaaaaaaa", "1"), *run("bbbbbbbb", "1", "2", "3")]
    (found,) = check_log(history(), record(log))
    assert found.subject == "numbered " + "p" * 64
    assert "2 runs, 0 explained" in found.message
    assert found.faults == ("kubelet(kubelet) at +14s for 4s",)


def test_a_duplicated_a_missing_and_a_foreign_line_are_each_seen() -> None:
    assert (
        "first difference at line 2"
        in check_log(history(), record(run("aaaaaaaa", "1", "1", "2", "3")))[0].message
    )
    assert "2 of 3 lines" in check_log(history(), record(run("aaaaaaaa", "1", "2")))[0].message
    foreign = record([*run("aaaaaaaa", "1", "2", "3"), "bbbbbbbb m2 1"])
    assert "not its program's" in check_log(history(), foreign)[0].message


def test_reported_once_allows_a_report_whose_answer_was_lost() -> None:
    assert check_reported_once(history(), record([], reports=2))
    assert check_reported_once(history(), record([], reports=0))
    assert check_reported_once(history(), record([], reports=0, unanswered_reports=1)) == []


def test_rss_that_keeps_growing_is_a_violation_and_a_flat_one_is_not() -> None:
    h = history()
    h.rss = {
        "flat": [(float(t), 1, 60_000 + (t % 3) * 500) for t in range(0, 300, 5)],
        "leak": [(float(t), 2, 60_000 + t * 400) for t in range(0, 300, 5)],
    }
    assert [v.subject for v in check_rss_flat(h)] == ["replica leak (pid 2)"]


def test_an_admission_or_a_stop_told_twice_is_a_violation() -> None:
    admitted = "kubejobs: admitted by Kueue to ClusterQueue cq after 0.1 s"
    twice = record([admitted, *run("aaaaaaaa", "1", "2"), admitted, *run("aaaaaaaa", "3")])
    assert "2 notes of Kueue's admission for 1 runs" in check_log(history(), twice)[0].message
    stops = record([STOPPED, STOPPED, *run("aaaaaaaa", "1", "2", "3")])
    assert "a stop noted twice" in check_log(history(), stops)[0].message


def test_a_restarted_executors_count_of_earlier_runs_explains_them() -> None:
    found = "kubejobs: executor e found the Job in run 2 after a restart; Kueue stopped 1 earlier run(s)"
    log = [*run("aaaaaaaa", "1"), found, *run("bbbbbbbb", "1", "2", "3")]
    assert check_log(history(), record(log)) == []
    # one stop told before the restart and counted again by it: still one rerun
    assert check_log(history(), record([STOPPED, *log])) == []


def test_no_line_is_right_only_when_the_walltime_came_before_the_program_ran() -> None:
    failed = Expect(3, streams={"": ["started"]}).as_dict()
    silent = record(
        [],
        expect=failed,
        state=3,
        errors=["walltime exceeded: ... (Kubernetes reason DeadlineExceeded)"],
    )
    assert "none of its 1 lines" in check_log(history(), silent)[0].message
    never = f"walltime exceeded: ... (Kubernetes reason DeadlineExceeded); {NEVER_STARTED} (...)"
    assert check_log(history(), replace(silent, errors=[never])) == []
