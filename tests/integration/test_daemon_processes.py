"""`monitor daemon` as real processes on the real clock: signals, a kill -9 mid-cycle, several
daemons sharing a day on PostgreSQL (one per SQLite file), the MLLP listener inside it.

Each daemon logs JSON lines with `--log-level debug`: every committed batch is an event naming
its enrollments, which is how "evaluated exactly once" is counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hl7.client import MLLPClient
from sqlalchemy import Engine, func
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from monitor import clock
from monitor.db.tables import DueDrawRow, Enrollment, JobRun
from monitor.protocols import packaged_library
from monitor.services import outbox, patients
from tests.integration.smtp_sink import Server, Sink

LONDON = "Europe/London"


def today() -> date:
    from zoneinfo import ZoneInfo

    return clock.today(ZoneInfo(LONDON))


def cohort(engine: Engine, n: int) -> list[int]:
    """`n` patients on maintenance, all due for review today; their enrollment ids."""
    library, day = packaged_library(), today()
    with Session(engine, expire_on_commit=False) as s:
        for i in range(n):
            request = patients.EnrollmentRequest(mrn=f"P{i:05d}", protocol="aih-azathioprine",
                                                 start_on=day - timedelta(days=90), weight_kg=70, tpmt="normal",
                                                 nudt15="normal", coordinator="nurse@example.org")
            patients.enroll(s, library, request, today=day, now=datetime.now(UTC), actor="test")
        s.commit()
        return sorted(i for i in s.exec(select(Enrollment.id)).all() if i is not None)


class Daemon:
    """One `monitor daemon` process, its JSON log in a file."""

    def __init__(self, url: str, folder: Path, name: str, **settings: Any) -> None:
        self.log = folder / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        # One process each (no helper processes): the tests count what each daemon evaluated.
        env |= {"MONITOR_DATABASE_URL": url, "MONITOR_DAEMON__RUN_AT": "00:00", "MONITOR_CLINIC__TIMEZONE": LONDON,
                "MONITOR_DAEMON__WORKERS": "1", "MONITOR_OUTBOX__TRANSPORT": "file",
                "MONITOR_OUTBOX__DIRECTORY": str(folder / "outbox")}
        env |= {f"MONITOR_{key.upper()}": str(value) for key, value in settings.items()}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "monitor", "daemon", "--log-format", "json",
                                             "--log-level", "debug"], cwd=folder, env=env, stderr=log,
                                            stdout=subprocess.DEVNULL)

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, event: str, *, count: int = 1, timeout: float = 120,
                 where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The `count`th `event` (that `where` accepts) the daemon logs, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = [e for e in self.events() if e.get("event") == event and where(e)]
            if len(seen) >= count:
                return seen[count - 1]
            if self.process.poll() is not None:
                pytest.fail(f"the daemon exited ({self.process.returncode}) before {event}:\n{self.text()[-3000:]}")
            time.sleep(0.02)
        pytest.fail(f"no {event} within {timeout} s:\n{self.text()[-3000:]}")

    def batches(self) -> list[int]:
        """Every enrollment this daemon committed an evaluation of, in order."""
        return [i for e in self.events() if e.get("event") == "batch" for i in e["enrollment_ids"]]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Started daemons, killed at the end whatever happened."""
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.process.poll() is None:
            d.process.kill()
            d.process.wait()


def day_rows(engine: Engine) -> list[JobRun]:
    with Session(engine) as s:
        return list(s.exec(select(JobRun)).all())


def all_evaluated_once(engine: Engine, ids: list[int]) -> None:
    """The day is done, in one row, with every enrollment evaluated, counted once, claims gone and
    no duplicated plan row."""
    [row] = day_rows(engine)
    assert (row.run_key, row.status, row.stats["evaluated"], row.stats["failed"]) == (
        today().isoformat(), "done", len(ids), 0)
    with Session(engine) as s:
        rows = s.exec(select(Enrollment)).all()
        assert sorted((e.id, e.last_evaluated_on, e.claimed_by) for e in rows) == [(i, today(), None) for i in ids]
        keys = s.exec(select(func.count()).select_from(
            select(col(DueDrawRow.enrollment_id), col(DueDrawRow.panel), col(DueDrawRow.due_on)).distinct()
            .subquery())).one()
        assert s.exec(select(func.count()).select_from(DueDrawRow)).one() == keys > 0


def held(engine: Engine) -> int:
    """Enrollments a daemon holds a claim on."""
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(Enrollment).where(col(Enrollment.claimed_by).is_not(None))).one()


def postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


# --- signals ----------------------------------------------------------------------------------

def test_sigterm_during_a_cycle_commits_the_batch_exits_0_within_10_s_and_the_next_start_finishes_the_day(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    ids = cohort(engine, 400)
    first = Daemon(db_url, tmp_path, "first", daemon__batch_size=5)
    daemons.append(first)
    first.wait_for("batch", count=3)
    asked = time.monotonic()
    assert first.stop(signal.SIGTERM) == 0
    assert time.monotonic() - asked < 10
    committed = first.batches()
    assert 0 < len(committed) < len(ids)
    [row] = day_rows(engine)
    assert (row.status, row.stats["evaluated"]) == ("stopped", len(committed))  # every batch it logged, committed
    assert first.wait_for("stopped")["by"]

    second = Daemon(db_url, tmp_path, "second", daemon__batch_size=50)
    daemons.append(second)
    finished = second.wait_for("cycle_finished")
    assert finished["done"] and finished["evaluated"] == len(ids) - len(committed)
    assert not set(committed) & set(second.batches())
    assert second.stop(signal.SIGINT) == 0
    all_evaluated_once(engine, ids)
    [row] = day_rows(engine)
    assert row.stats["resumed"][0]["was"] == "stopped"


def test_a_daemon_killed_mid_cycle_is_taken_over_after_its_lease_with_nothing_committed_evaluated_twice(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    ids = cohort(engine, 400)
    killed = Daemon(db_url, tmp_path, "killed", daemon__batch_size=5, daemon__claim_lease_seconds=5)
    daemons.append(killed)
    killed.wait_for("batch", count=3)
    while True:  # caught holding a claim (not between two batches), then killed: no cleanup at all
        killed.process.send_signal(signal.SIGSTOP)
        if held(engine):
            break
        killed.process.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    killed.stop(signal.SIGKILL)
    assert held(engine)

    heir = Daemon(db_url, tmp_path, "heir", daemon__batch_size=50, daemon__claim_lease_seconds=5)
    daemons.append(heir)
    # Its own part, then the dead one's batch as soon as that claim lapses (not at the next minute's tick).
    heir.wait_for("cycle_finished", where=lambda e: e["done"], timeout=50)
    assert heir.stop() == 0
    all_evaluated_once(engine, ids)  # each committed evaluation counted once: nothing was evaluated twice
    assert not set(killed.batches()) & set(heir.batches())


# --- several daemons --------------------------------------------------------------------------

def test_several_daemons_share_a_day_on_postgresql_and_a_second_one_on_a_sqlite_file_exits_2(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    if not postgres(db_url):
        cohort(engine, 50)
        first = Daemon(db_url, tmp_path, "first")
        daemons.append(first)
        first.wait_for("started")
        second = Daemon(db_url, tmp_path, "second")
        assert second.process.wait(60) == 2
        assert "another monitor daemon" in second.text() and "SQLite has one writer" in second.text()
        first.wait_for("cycle_finished")
        assert first.stop() == 0
        return
    ids = cohort(engine, 2000)
    three = [Daemon(db_url, tmp_path, f"d{n}", daemon__batch_size=25) for n in range(3)]
    daemons.extend(three)
    for d in three:
        d.wait_for("cycle_finished", timeout=180)
    time.sleep(0.5)
    for d in three:
        assert d.stop() == 0
    evaluated = [i for d in three for i in d.batches()]
    assert sorted(evaluated) == ids  # every enrollment once, by exactly one daemon
    all_evaluated_once(engine, ids)
    [row] = day_rows(engine)
    assert sum(row.stats["by"].values()) == len(ids)
    assert sum(1 for d in three if d.wait_for("cycle_finished")["done"]) >= 1


# --- the MLLP listener inside the daemon ------------------------------------------------------

def oru(n: int) -> str:
    return (f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|{today():%Y%m%d}083000||ORU^R01|CTRL{n}|P|2.5.1\r"
            f"PID|1||HELD{n}^^^HOSP^MR\r"
            f"OBR|1||ORD{n}|57021-8^CBC^LN|||{today():%Y%m%d}0800\r"
            f"OBX|1|NM|6690-2^Leukocytes^LN||5.{n % 10}|10*9/L|||||F\r")


def test_the_mllp_listener_inside_the_daemon_acks_every_message_while_a_long_cycle_runs(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    cohort(engine, 1000)
    daemon = Daemon(db_url, tmp_path, "mllp", daemon__batch_size=5, mllp__enabled="true", mllp__port=0)
    daemons.append(daemon)
    port = daemon.wait_for("started")["mllp_port"]
    daemon.wait_for("cycle_started")
    acks: list[str] = []
    with MLLPClient("127.0.0.1", port) as client:  # python-hl7's client, as a lab's interface engine
        while not any(e.get("event") == "cycle_finished" for e in daemon.events()):
            acks.append(client.send_message(oru(len(acks))).decode())
    assert len(acks) >= 10, "too few messages were sent while the cycle ran: make the cohort larger"
    assert all(f"MSA|AA|CTRL{n}" in a for n, a in enumerate(acks)), acks[:2]
    assert daemon.stop() == 0
    assert "HELD1" not in daemon.text()  # no MRN in the log


# --- monitor status beside a real daemon --------------------------------------------------------

def status(url: str, *, read: int | None = None) -> tuple[int, str]:
    """`monitor status`'s exit code and output; `read`: the reader takes that many bytes and leaves
    (`monitor status | head -1`)."""
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    with subprocess.Popen([sys.executable, "-m", "monitor", "status"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        got = p.stdout.read(read) if read is not None else p.stdout.read()
        p.stdout.close()
        code, errors = p.wait(30), p.stderr.read().decode()
    assert errors == ""
    return code, got.decode()


def test_status_is_healthy_beside_a_working_daemon_even_when_its_reader_leaves_early_and_not_once_it_stops(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    cohort(engine, 3)
    daemons.append(d := Daemon(db_url, tmp_path, "a"))
    d.wait_for("cycle_finished")
    assert status(db_url)[0] == 0
    assert [status(db_url, read=7) for _ in range(3)] == [(0, "healthy")] * 3
    assert d.stop() == 0
    code, out = status(db_url)
    assert code == 1 and out.startswith("UNHEALTHY: ") and "stopped" in out.splitlines()[0]


def test_a_daemon_emails_the_days_digest_when_the_day_closes_and_what_is_queued_later_within_a_minute(
        db_url: str, engine: Engine, tmp_path: Path, daemons: list[Daemon]) -> None:
    cohort(engine, 3)  # one coordinator: nurse@example.org
    sink = Sink()
    server = Server(sink).start()
    try:
        daemons.append(d := Daemon(db_url, tmp_path, "a", outbox__transport="smtp", smtp__host="127.0.0.1",
                                   smtp__port=server.port))
        d.wait_for("outbox_delivered")
        [digest] = sink.to("nurse@example.org")
        assert str(digest["Subject"]).startswith(f"monitor digest {today()}")
        # A critical result arrives in a lab file while the daemon runs: `monitor ingest` sends its alert.
        labs = tmp_path / "wbc.csv"
        labs.write_text(f"mrn,collected_at,code,value,unit\nP00000,{today()}T08:00:00,6690-2,1.0,10*9/L\n")
        env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_OUTBOX__TRANSPORT": "smtp",
               "MONITOR_SMTP__HOST": "127.0.0.1", "MONITOR_SMTP__PORT": str(server.port)}
        ingested = subprocess.run([sys.executable, "-m", "monitor", "ingest", str(labs)], env=env,
                                  capture_output=True, text=True, timeout=60)
        assert ingested.returncode == 0, ingested.stderr
        [alert] = [m for m in sink.to("nurse@example.org") if "CRITICAL" in str(m["Subject"])]
        assert "P00000" not in str(alert["Subject"])
        # What another process queues and leaves (an MLLP listener alone, say) the daemon sends within a minute.
        with Session(engine) as s:
            outbox.enqueue(s, [outbox.Letter("test|later", "alert", "lead@example.org", "queued later", "body\n")],
                           sender="monitor@localhost", now=datetime.now(UTC))
            s.commit()
        d.wait_for("outbox_delivered", count=2, timeout=90)
        assert len(sink.to("lead@example.org")) == 1
        assert d.stop() == 0
    finally:
        server.stop()
