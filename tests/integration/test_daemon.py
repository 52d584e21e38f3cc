"""`monitor daemon` in process, under freezegun (the entry point's clock, monitor/clock.py): the
catch-up after downtime, DST nights, the alarm clock's wiring, a failing enrollment, the
dead-man's-switch ping, protocol reloads and `monitor status`. Real processes: test_daemon_processes.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine, text, update
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from monitor import logs
from monitor.app import App
from monitor.config import Database
from monitor.daemon import Daemon, due_at
from monitor.db.session import make_engine
from monitor.db.tables import Enrollment, JobRun
from monitor.domain.protocol import Phase
from monitor.services import heartbeat
from tests.functional.cli import run
from tests.functional.scenario import Clinic, d
from tests.functional.scenario import plan_rows as stored_plan
from tests.integration import dump_tables

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


def an_app(url: str, *, zone: str = "Europe/London", **daemon: Any) -> App:
    """The composition root a `monitor daemon` process builds, on `url`, with these settings."""
    a = App()
    s = a.settings
    a.settings = s.model_copy(update={"database": Database(url=url),
                                      "clinic": s.clinic.model_copy(update={"timezone": zone}),
                                      "daemon": s.daemon.model_copy(update=daemon)})
    return a


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    a = an_app(db_url)
    yield a
    a.close()


def local(day: str, hh_mm: str, zone: ZoneInfo = LONDON) -> datetime:
    return datetime.combine(d(day), time.fromisoformat(hh_mm), tzinfo=zone)


def daily_rows(engine: Engine) -> list[JobRun]:
    with Session(engine) as s:
        return list(s.exec(select(JobRun).order_by(col(JobRun.run_key))).all())


# --- catch-up ---------------------------------------------------------------------------------

def events(clinic: Clinic, day: date) -> None:
    """What happens at the clinic on each day of the week, whether or not a daemon runs."""
    if day == d("2026-03-02"):
        clinic.enroll("D1", start=day, phase=Phase.INDUCTION)
        clinic.record("D1", day, doses={"azathioprine": 50})
        clinic.normal_labs("D1", day)
        clinic.enroll("D2", start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=day)
        clinic.record("D2", day, doses={"azathioprine": 100})
        clinic.normal_labs("D2", day)
    elif day == d("2026-03-03"):
        clinic.labs("D2", day, WBC=3.0, NEUT=2.1, PLT=200)  # BSR 2017: WBC < 3.5, an action flag
    elif day == d("2026-03-04"):
        clinic.record("D1", day, doses={"azathioprine": 100})
        clinic.normal_labs("D1", day)


def plan_rows(engine: Engine, day: date) -> dict[str, Any]:
    """The plan as it reads on `day`, and the phase history, without ids and instants (a flag raised
    on Tuesday by a daily run, or on Thursday by the catch-up, is the same flag)."""
    phases = sorted(tuple(v for v in row[1:] if not isinstance(v, datetime))
                    for row in dump_tables(engine)["phase_episode"])
    return {**stored_plan(engine, day), "phase_episode": phases}


def test_a_daemon_down_three_days_runs_once_for_today_at_start_and_the_plan_is_the_daily_runs_one(
        engine: Engine, second_url: str) -> None:
    week = [d("2026-03-02") + timedelta(days=n) for n in range(4)]
    daily, down = Clinic(engine), Clinic(make_engine(second_url))
    for day in week:
        events(daily, day)
        daily.run(day)
    events(down, week[0])
    down.run(week[0])
    for day in week[1:]:
        events(down, day)  # results arrive and doses are recorded; no daemon runs

    a = an_app(second_url)
    with freeze_time(local("2026-03-05", "09:12")):
        report = Daemon(a).tick()
    assert report is not None and report.done
    assert [(r.run_key, r.status) for r in daily_rows(down.engine)] == [("2026-03-02", "done"), ("2026-03-05", "done")]
    assert plan_rows(down.engine, week[-1]) == plan_rows(engine, week[-1])
    assert any("leukopenia" in row for row in plan_rows(engine, week[-1])["flag"])  # the week's news is in it
    with freeze_time(local("2026-03-05", "09:13")):
        assert Daemon(a).tick() is None  # done: the next minute's tick does nothing
    a.close()
    down.engine.dispose()


def test_before_run_at_the_daemon_waits_and_the_cycle_is_not_run(app: App, engine: Engine) -> None:
    with freeze_time(local("2026-03-05", "06:29")):
        assert Daemon(app).tick() is None
    assert daily_rows(engine) == []
    with freeze_time(local("2026-03-05", "06:30")):
        assert Daemon(app).tick() is not None
    assert [r.run_key for r in daily_rows(engine)] == ["2026-03-05"]


# --- DST --------------------------------------------------------------------------------------

NIGHTS = [  # zone, the night the clocks change, when a 01:30 run_at is due
    (LONDON, "2026-03-29", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),  # 01:00 GMT -> 02:00 BST: 02:30 BST
    (LONDON, "2026-10-25", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # 01:30 BST, the first of two
    (NEW_YORK, "2026-03-08", datetime(2026, 3, 8, 6, 30, tzinfo=UTC)),  # 01:30 EST, before the gap at 02:00
    (NEW_YORK, "2026-11-01", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # 01:30 EDT, the first of two
]


@pytest.mark.parametrize(("zone", "night", "due"), NIGHTS, ids=[f"{z.key}-{n}" for z, n, _ in NIGHTS])
def test_a_run_at_inside_a_dst_change_runs_exactly_once_that_night(
        db_url: str, engine: Engine, zone: ZoneInfo, night: str, due: datetime) -> None:
    from apscheduler.triggers.cron import CronTrigger

    assert due_at(d(night), "01:30", zone) == due
    midnight = datetime.combine(d(night), time(0), tzinfo=zone)
    # APScheduler's alarm rings first at the same instant (and on a fall-back night, once more).
    assert CronTrigger(hour=1, minute=30, timezone=zone).get_next_fire_time(None, midnight).astimezone(UTC) == due
    a = an_app(db_url, zone=zone.key, run_at="01:30")
    daemon, ran = Daemon(a), []
    minute = midnight.astimezone(UTC)
    with freeze_time(minute) as clock:
        while minute < midnight.astimezone(UTC) + timedelta(hours=5):  # every minute, both 01:30s included
            clock.move_to(minute)
            if daemon.tick() is not None:
                ran.append(minute)
            minute += timedelta(minutes=1)
    assert ran == [due]
    [row] = daily_rows(engine)
    assert (row.run_key, row.status, row.started_at) == (night, "done", due)
    a.close()


# --- the alarm clock --------------------------------------------------------------------------

def test_the_alarm_rings_at_run_at_local_time_and_wakes_the_daemon(app: App) -> None:
    daemon = Daemon(app)
    with freeze_time(local("2026-03-05", "06:29:59")) as clock:
        scheduler = daemon.scheduler()
        scheduler.start()
        try:
            assert not daemon.wake.is_set()
            clock.move_to(local("2026-03-05", "06:30:01"))
            scheduler.wakeup()  # the scheduler thread sleeps on a real-time wait (ECOSYSTEM.md gotcha 19)
            assert daemon.wake.wait(10)
            assert scheduler.get_job("daily-cycle").next_run_time == local("2026-03-06", "06:30")
            assert scheduler.get_job("minute").next_run_time > local("2026-03-05", "06:30")
        finally:
            scheduler.shutdown()


# --- one bad enrollment, the ping, the log ----------------------------------------------------

class Pings(http.server.BaseHTTPRequestHandler):
    """A local dead-man's-switch service (healthchecks.io's ping API): records each path."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pings() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pings)
    seen: list[str] = []
    Pings.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping/abc", seen
    server.shutdown()
    server.server_close()


def two_patients_one_broken(engine: Engine) -> None:
    clinic = Clinic(engine)
    for mrn in ("B1", "B2"):
        clinic.enroll(mrn, start=d("2026-03-02"), phase=Phase.MAINTENANCE)
    with Session(engine) as s:  # stored before dates were checked: loading it raises
        s.execute(update(Enrollment).where(col(Enrollment.id) == 1).values(start_on=date(1, 1, 1)))
        s.commit()


def test_an_enrollment_that_raises_is_logged_by_id_counted_skipped_and_shown_by_status_and_the_ping(
        db_url: str, engine: Engine, pings: tuple[str, list[str]], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    url, seen = pings
    two_patients_one_broken(engine)
    a = an_app(db_url, ping_url=url)
    with freeze_time(local("2026-03-05", "06:31")):
        report = Daemon(a).tick()
        assert report is not None and (report.evaluated, report.failed, report.done) == (1, 1, True)
        assert seen == ["/ping/abc/start", "/ping/abc/fail?evaluated=1&failed=1"]
        assert "enrollment 1 could not be evaluated: OverflowError" in caplog.text
        assert "B1" not in caplog.text
        status = run(capsys, "status", "--format", "json")
    [day] = status.json()["runs"]
    assert (day["status"], day["evaluated"], day["failed"]) == ("done", 1, 1)
    with freeze_time(local("2026-03-05", "06:32")):
        assert Daemon(a).tick() is None  # not tried again today: no run, no ping
    assert len(seen) == 2
    a.close()


def test_a_clean_run_pings_start_then_success_and_an_unreachable_ping_service_is_only_a_warning(
        db_url: str, engine: Engine, pings: tuple[str, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    url, seen = pings
    Clinic(engine).enroll("P1", start=d("2026-03-02"), phase=Phase.MAINTENANCE)
    a = an_app(db_url, ping_url=url)
    with freeze_time(local("2026-03-05", "06:31")):
        assert Daemon(a).tick() is not None
    assert seen == ["/ping/abc/start", "/ping/abc?evaluated=1&failed=0"]
    b = an_app(db_url, ping_url="http://127.0.0.1:9/nothing-listens")
    with freeze_time(local("2026-03-06", "06:31")):
        report = Daemon(b).tick()
    assert report is not None and report.done
    assert "ping start not sent" in caplog.text
    a.close()
    b.close()


def test_json_logs_are_one_object_per_line_with_counts_and_never_an_mrn(
        app: App, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    Clinic(engine).enroll("SECRET-MRN-77", start=d("2026-03-02"), phase=Phase.MAINTENANCE)
    logs.configure("json", "debug")
    try:
        with freeze_time(local("2026-03-05", "06:31")):
            Daemon(app).tick()
    finally:
        logs.configure("text", "warning")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finished = next(line for line in lines if line.get("event") == "cycle_finished")
    assert (finished["date"], finished["evaluated"], finished["failed"], finished["done"]) == (
        "2026-03-05", 1, 0, True)
    assert {"at", "level", "logger", "message"} <= set(finished)
    assert "SECRET-MRN-77" not in json.dumps(lines)


# --- SIGHUP: protocol files reloaded, validated first -----------------------------------------

def site_protocols(tmp_path: Path) -> Path:
    from monitor.paths import config_dir

    site = tmp_path / "site-config"
    shutil.copytree(config_dir(), site)
    return site


def test_a_reload_takes_valid_protocol_files_and_refuses_a_bad_one_keeping_those_in_use(
        app: App, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Clinic(engine).enroll("R1", start=d("2026-03-02"), phase=Phase.MAINTENANCE)
    site = site_protocols(tmp_path)
    app.settings = app.settings.model_copy(update={"protocols": app.settings.protocols.model_copy(
        update={"directory": str(site)})})
    daemon = Daemon(app)
    in_use = app.library
    protocol = site / "protocols" / "aih-azathioprine.toml"
    good = protocol.read_text()
    protocol.write_text(good.replace("[protocol]", "[protocol", 1))  # a typo: not TOML any more
    assert not daemon.reload()
    assert app.library is in_use and "aih-azathioprine.toml" in caplog.text
    protocol.unlink()  # valid files, but without the protocol R1 follows
    assert not daemon.reload()
    assert app.library is in_use and "have active enrollments" in caplog.text
    protocol.write_text(good)
    assert daemon.reload()
    assert app.library is not in_use and "aih-azathioprine" in app.library.ids()


# --- monitor status ---------------------------------------------------------------------------

def test_status_exits_0_when_healthy_and_1_for_a_stale_run_or_a_silent_daemon(
        app: App, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    with freeze_time(local("2026-03-05", "08:00")):
        never = run(capsys, "status")
    assert never.code == 1 and "no daily cycle has completed" in never.out

    with freeze_time(local("2026-03-05", "07:00")):
        Daemon(app).tick()
    with Session(engine) as s:
        heartbeat.beat(s, "host:1", started_at=local("2026-03-05", "06:00"), now=local("2026-03-06", "08:27"),
                       state="idle", mllp_port=2575)
        s.commit()
    with freeze_time(local("2026-03-06", "08:30")):
        healthy = run(capsys, "status")  # the run 25.5 hours ago, a heartbeat 3 minutes ago
        as_json = run(capsys, "status", "--format", "json")
    assert (healthy.code, healthy.out.splitlines()[0]) == (0, "healthy")
    view = as_json.json()
    assert (view["healthy"], view["daemons"][0]["owner"], view["daemons"][0]["mllp_port"]) == (True, "host:1", 2575)

    with freeze_time(local("2026-03-06", "08:33")):
        silent = run(capsys, "status")
    assert silent.code == 1 and silent.out.splitlines()[0] == (
        "UNHEALTHY: no daemon heartbeat for 6 minutes (the last: host:1 at 2026-03-06T08:27:00+00:00): "
        "it was killed or hangs")
    with Session(engine) as s:
        heartbeat.beat(s, "host:1", started_at=local("2026-03-05", "06:00"), now=local("2026-03-06", "09:04"),
                       state="idle", mllp_port=None)
        s.commit()
    with freeze_time(local("2026-03-06", "09:05")):
        stale = run(capsys, "status")
    assert stale.code == 1 and stale.out.splitlines()[0] == (
        "UNHEALTHY: the last completed daily cycle (2026-03-05) finished 26 hours ago")


@contextlib.contextmanager
def unreachable(a: App) -> Iterator[None]:
    """The daemon's database cannot be used for a while: PostgreSQL refuses connections to it (its
    open ones cut), a SQLite file is replaced by one that is not a database."""
    url = make_url(a.settings.database.url)
    if url.get_backend_name() == "postgresql":
        admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
        name = url.database
        def allow(on: bool) -> None:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}'))
                if not on:
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        allow(False)
        try:
            yield
        finally:
            allow(True)
            admin.dispose()
    else:
        path = Path(str(url.database))
        kept = path.with_name(path.name + ".kept")
        a.engine.dispose()
        path.rename(kept)
        path.write_bytes(b"not a database " * 512)
        try:
            yield
        finally:
            kept.replace(path)
    a.engine.dispose()


def test_a_database_that_cannot_be_reached_is_logged_and_the_daemon_carries_on_when_it_is_back(
        db_url: str, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    Clinic(engine).enroll("P1", start=d("2026-03-02"), phase=Phase.MAINTENANCE)
    a = an_app(db_url)
    daemon = Daemon(a)
    with freeze_time(local("2026-03-05", "06:31")):
        daemon.beat("idle")  # the database migrated and open, as in a daemon that has been running
        with unreachable(a):
            assert daemon.look() is None
            daemon.beat("idle")
        assert "could not look at today's cycle" in caplog.text
        assert "heartbeat not written" in caplog.text
        report = daemon.look()
    assert report is not None and (report.done, report.evaluated) == (True, 1)
    a.close()
