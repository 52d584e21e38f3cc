"""The day's cycle shared by processes: one `job_run` row per day, each enrollment evaluated once,
a process that stops or dies taken over (services/runs.py). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, JobRun
from monitor.protocols import Library, packaged_library
from monitor.services import daily, patients, runs
from tests.functional.cli import run
from tests.processes import all_at_once

PROTOCOL = "aih-azathioprine"
DAY = date(2026, 3, 2)
AT_0630 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)


class Ticking:
    """A clock for a service: each reading a second after the one before, from `start`."""

    def __init__(self, start: datetime) -> None:
        self.start, self.readings = start, 0

    def __call__(self) -> datetime:
        self.readings += 1
        return self.start + timedelta(seconds=self.readings)


def a_clinic(engine: Engine, n: int = 2) -> Library:
    """`n` enrolled patients, due for review."""
    library = packaged_library()
    with Session(engine, expire_on_commit=False) as s:
        for i in range(n):
            request = patients.EnrollmentRequest(mrn=f"J{i + 1}", protocol=PROTOCOL, start_on=date(2026, 1, 5),
                                                 weight_kg=70, tpmt="normal", nudt15="normal")
            patients.enroll(s, library, request, today=DAY, now=AT_0630, actor="test")
        s.commit()
    return library


def day_rows(engine: Engine) -> list[JobRun]:
    with Session(engine) as s:
        return list(s.exec(select(JobRun).order_by(col(JobRun.id))).all())


def enrollments(engine: Engine) -> list[Enrollment]:
    with Session(engine) as s:
        return list(s.exec(select(Enrollment).order_by(col(Enrollment.id))).all())


def run_at(engine: Engine, library: Library, at: datetime, **kw: Any) -> daily.RunReport:
    with Session(engine, expire_on_commit=False) as s:
        return daily.run_daily(s, library, today=DAY, now=at, clock=Ticking(at), **kw)


def dies_holding(engine: Engine, at: datetime, n: int) -> None:
    """A process joined the day, claimed `n` enrollments and was killed (kill -9, power cut)."""
    with Session(engine) as s:
        runs.join(s, "daily", DAY.isoformat(), now=at, by="dead:1")
        assert len(runs.claim(s, today=DAY, now=at, by="dead:1", lease=runs.LEASE, after=0, limit=n)) == n
        s.commit()


def test_the_daily_run_records_when_it_really_finished(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    run_at(engine, a_clinic(engine), AT_0630)
    [row] = day_rows(engine)
    assert (row.status, row.run_key, row.started_at) == ("done", DAY.isoformat(), AT_0630)
    assert row.finished_at is not None and row.finished_at > row.started_at
    assert run(capsys, "run", "--date", "2026-03-03").code == 0  # the real clock, through the entry point
    [_, today] = day_rows(engine)
    assert today.finished_at is not None and today.finished_at > today.started_at


def test_what_a_dead_process_claimed_waits_for_its_lease_then_another_takes_it_over_in_the_same_row(
        engine: Engine) -> None:
    library = a_clinic(engine, 3)
    dies_holding(engine, AT_0630, 2)
    within = run_at(engine, library, AT_0630 + timedelta(minutes=5))  # the claims are alive: only J3 is free
    assert (within.evaluated, within.done, within.left) == (1, False, 2)
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"]) == ("running", 1)

    later = AT_0630 + runs.LEASE + timedelta(minutes=1)
    after = run_at(engine, library, later)
    assert (after.evaluated, after.done, after.left) == (2, True, 0)
    [row] = day_rows(engine)
    assert (row.status, row.run_key, row.started_at, row.owner) == ("done", DAY.isoformat(), AT_0630, "dead:1")
    assert row.stats["evaluated"] == 3 and sum(row.stats["by"].values()) == 3
    assert "resumed" not in row.stats  # the day's row was kept alive by the run at 06:35
    assert all(e.claimed_by is None and e.last_evaluated_on == DAY for e in enrollments(engine))


def test_a_day_whose_only_process_died_is_resumed_by_the_next_run_with_a_note(engine: Engine) -> None:
    library = a_clinic(engine, 2)
    dies_holding(engine, AT_0630, 2)
    later = AT_0630 + runs.LEASE + timedelta(minutes=1)
    assert run_at(engine, library, later).evaluated == 2
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"]) == ("done", 2)
    [resumed] = row.stats["resumed"]
    assert (resumed["was"], resumed["at"]) == ("lapsed", later.isoformat())
    assert "no process renewed it" in resumed["reason"]


def test_a_run_stopped_by_an_error_says_so_and_the_next_run_resumes_the_same_row_without_redoing_its_work(
        engine: Engine) -> None:
    library = a_clinic(engine, 3)

    def interrupted(done: int, total: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first batch

    with pytest.raises(KeyboardInterrupt):
        run_at(engine, library, AT_0630, progress=interrupted, batch=1)
    [row] = day_rows(engine)
    assert (row.status, row.stats["reason"], row.stats["evaluated"]) == ("failed", "stopped by KeyboardInterrupt", 1)
    assert row.finished_at is not None and row.finished_at > row.started_at
    assert [e.claimed_by for e in enrollments(engine)] == [None] * 3  # released at once, not after the lease

    again = run_at(engine, library, AT_0630 + timedelta(minutes=5))
    assert (again.evaluated, again.done) == (2, True)  # the first one, committed, is not evaluated again
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"]) == ("done", 3) and "reason" not in row.stats
    assert [(n["was"], n["reason"]) for n in row.stats["resumed"]] == [("failed", "stopped by KeyboardInterrupt")]


def test_a_process_told_to_stop_leaves_after_its_batch_and_the_next_finishes_the_day(engine: Engine) -> None:
    library = a_clinic(engine, 3)
    asked: list[int] = []
    stopped = run_at(engine, library, AT_0630, batch=2, stop=lambda: len(asked) > 0,
                     progress=lambda done, total: asked.append(done))
    assert (stopped.evaluated, stopped.stopped, stopped.done) == (2, True, False)
    [row] = day_rows(engine)
    assert row.status == "stopped" and "told to stop" in row.stats["reason"]
    finished = run_at(engine, library, AT_0630 + timedelta(minutes=1))
    assert (finished.evaluated, finished.done) == (1, True)
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"], row.stats["resumed"][0]["was"]) == ("done", 3, "stopped")


def test_an_enrollment_that_fails_is_counted_once_and_the_day_completes_without_it(engine: Engine) -> None:
    library = a_clinic(engine, 2)
    with Session(engine) as s:
        s.execute(update(Enrollment).where(col(Enrollment.id) == 1).values(start_on=date(1, 1, 1)))  # cannot load
        s.commit()
    first = run_at(engine, library, AT_0630)
    assert (first.evaluated, first.failed, first.done) == (1, 1, True)
    second = run_at(engine, library, AT_0630 + timedelta(minutes=1))  # a daemon's next tick: not again today
    assert (second.evaluated, second.failed, second.done) == (0, 0, True)
    by_hand = run_at(engine, library, AT_0630 + timedelta(minutes=2), retry_failed=True)  # `monitor run`
    assert (by_hand.evaluated, by_hand.failed) == (0, 1)
    [row] = day_rows(engine)
    assert (row.status, row.stats["failed"], row.stats["failed_enrollments"]) == ("done", 1, [1])
    assert [e.failed_on for e in enrollments(engine)] == [DAY, None]


def test_two_processes_sharing_a_day_evaluate_each_enrollment_once(engine: Engine) -> None:
    # Interleaved by hand: A claims a batch, B claims the next, both write, both close.
    library = a_clinic(engine, 4)
    with Session(engine, expire_on_commit=False) as a, Session(engine, expire_on_commit=False) as b:
        for s, by in ((a, "a:1"), (b, "b:1")):
            runs.join(s, "daily", DAY.isoformat(), now=AT_0630, by=by)
            s.commit()
        mine = runs.claim(a, today=DAY, now=AT_0630, by="a:1", lease=runs.LEASE, after=0, limit=2)
        a.commit()
        theirs = runs.claim(b, today=DAY, now=AT_0630, by="b:1", lease=runs.LEASE, after=0, limit=10)
        b.commit()
        assert (mine, theirs) == ([1, 2], [3, 4])
    report_b = run_at(engine, library, AT_0630, by="b:1")
    assert (report_b.evaluated, report_b.done, report_b.left) == (2, False, 2)
    report_a = run_at(engine, library, AT_0630, by="a:1")
    assert (report_a.evaluated, report_a.done) == (2, True)
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"], row.stats["by"]) == ("done", 4, {"a:1": 2, "b:1": 2})


def test_two_full_runs_started_together_both_succeed_and_never_evaluate_an_enrollment_at_once(
        db_url: str, engine: Engine, tmp_path: Path) -> None:
    # Before the claims: one of two `monitor run --full` died with an IntegrityError (6 of 6 trials).
    # Each `--full` makes every active enrollment due when it starts, so one that starts after the
    # other has evaluated a batch evaluates it again (the same rows): between 40 and 80, never two
    # processes on one enrollment at once, every count on the day's one row.
    a_clinic(engine, 40)
    done = all_at_once(db_url, tmp_path, [["run", "--date", DAY.isoformat(), "--full", "--workers", "1"]] * 2)
    assert [(p.returncode, p.stderr) for p in done] == [(0, "")] * 2
    [row] = day_rows(engine)
    assert (row.status, row.stats["failed"]) == ("done", 0) and 40 <= row.stats["evaluated"] <= 80
    assert sum(row.stats["by"].values()) == row.stats["evaluated"]
    assert {e.last_evaluated_on for e in enrollments(engine)} == {DAY}


def test_monitor_run_with_helpers_stopped_by_sigterm_commits_its_batches_releases_every_claim_and_exits_1(
        db_url: str, engine: Engine, tmp_path: Path) -> None:
    a_clinic(engine, 800)
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_DAEMON__BATCH_SIZE": "1"}
    with subprocess.Popen([sys.executable, "-m", "monitor", "run", "--date", DAY.isoformat(), "--full",
                           "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as p:
        deadline = time.monotonic() + 120
        while len(working(engine)) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)  # until the process and its helper have each committed a batch
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "stopped by a signal after the batch in hand" in err
    [row] = day_rows(engine)
    done = [e for e in enrollments(engine) if e.last_evaluated_on == DAY]
    assert row.status == "stopped" and row.stats["evaluated"] == len(done) < 800
    assert len(row.stats["by"]) == 2  # the process and its helper, each stopped after its batch
    assert sum(row.stats["by"].values()) == len(done)
    assert [e.id for e in enrollments(engine) if e.claimed_by is not None] == []


def working(engine: Engine) -> dict[str, int]:
    """What each process has evaluated of the day so far."""
    with Session(engine) as s:
        row = s.exec(select(JobRun)).first()
        return {} if row is None else dict(row.stats.get("by", {}))


def test_helpers_log_as_the_process_that_started_them(db_url: str, engine: Engine) -> None:
    # A daemon logging JSON (or `monitor run --log-format json`) starts helpers: their lines on the
    # same stderr are JSON too, so a log shipper parses every line of the day.
    a_clinic(engine, 800)
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_DAEMON__BATCH_SIZE": "1"}
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--date", DAY.isoformat(), "--workers", "2",
                           "--log-format", "json", "--log-level", "debug"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is one JSON object
    batches = [line for line in lines if line.get("event") == "batch"]
    assert sum(len(b["enrollment_ids"]) for b in batches) == 800
    assert len({b["by"] for b in batches}) == 2  # the process and its helper
