"""The incremental daily cycle writes the same plan rows as evaluating every enrollment every day.

ARCHITECTURE.md decision 3: `monitor run` evaluates only enrollments whose `next_review_on` has
come; `monitor run --full` evaluates all of them; both must give the same rows. Two databases
receive the same four months of clinic life (enrollments, results arriving on time, late and
corrected, doses, weights, phase changes); one runs incrementally, the other in full, and their
due_draw, overdue_panel, dose_step and flag rows, as they read that day, are compared after every
daily run (on PostgreSQL the first two months only: it adds dialect paths, not engine logic, and a
round trip costs ~1 ms there).
The last test keeps the smallest cases found that way, each a few days of one patient.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from monitor.db.migrate import upgrade_to_head
from monitor.db.session import make_engine
from monitor.db.tables import Enrollment, JobRun
from monitor.domain.protocol import Phase
from monitor.ingest import csv_reader
from monitor.protocols import Library, packaged_library
from monitor.services import patients
from monitor.services.daily import run_daily
from monitor.services.ingest import ingest_records
from tests.conftest import create_database, drop_database, server_url
from tests.functional.cli import run
from tests.functional.scenario import Clinic as ScenarioClinic
from tests.functional.scenario import d, moment
from tests.functional.scenario import plan_rows as scenario_plan_rows
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")
PROTOCOL = "aih-azathioprine"
FIRST_DAY = date(2026, 1, 5)
DAYS = 120
SEED = 20260105

# (mrn, phase at enrollment, start day offset from FIRST_DAY, weight kg); each is enrolled on
# max(FIRST_DAY, start), I06 a week before its start.
COHORT = [
    ("I01", Phase.INDUCTION, -20, 58), ("I02", Phase.INDUCTION, -5, 72), ("I03", Phase.INDUCTION, 0, 95),
    ("I04", Phase.INDUCTION, 10, 48), ("I05", Phase.INDUCTION, 25, 66), ("I06", Phase.INDUCTION, 40, 81),
    ("I07", Phase.INDUCTION, 61, 70), ("I08", Phase.INDUCTION, -60, 63),
    ("M01", Phase.MAINTENANCE, -670, 77), ("M02", Phase.MAINTENANCE, -413, 60),
    ("M03", Phase.MAINTENANCE, -329, 85), ("M04", Phase.MAINTENANCE, -238, 54),
    ("M05", Phase.MAINTENANCE, -154, 69), ("M06", Phase.MAINTENANCE, -70, 90),
    ("R01", Phase.REINDUCTION, -10, 74), ("L01", Phase.LIFELONG_MAINTENANCE, -945, 62),
    ("W01", Phase.WITHDRAWAL, -35, 71), ("O01", Phase.OFF_TREATMENT, -217, 67),
    ("B01", Phase.BASELINE, 3, 59), ("B02", Phase.BASELINE, -2, 83),
]

# (mrn, day offset the clinician acts, day offset the phase starts, new phase)
PHASE_CHANGES = [
    ("M02", 30, 30, Phase.WITHDRAWAL), ("W01", 50, 50, Phase.REINDUCTION),
    ("I01", 70, 70, Phase.MAINTENANCE), ("M04", 60, 57, Phase.WITHDRAWAL),  # recorded 3 days late
    ("O01", 80, 80, Phase.REINDUCTION), ("B01", 12, 12, Phase.INDUCTION),
    ("B02", 14, 14, Phase.INDUCTION),  # confirmed ahead of its date
    ("I08", 45, 45, Phase.MAINTENANCE), ("M02", 90, 90, Phase.OFF_TREATMENT),
]

CBC = [("6690-2", "WBC"), ("777-3", "PLT"), ("751-8", "NEUT"), ("787-2", "MCV")]
LFT = [("1742-6", "ALT"), ("1975-2", "BILI"), ("1751-7", "ALB")]
RENAL = [("2160-0", "CREAT")]


def value_for(analyte: str, rng: random.Random) -> tuple[str, str]:
    """A plausible value and unit; now and then one that breaches a threshold or a CTCAE grade."""
    roll = rng.random()
    match analyte:
        case "WBC":
            v = (rng.uniform(1.2, 1.9) if roll < 0.04 else rng.uniform(3.0, 3.4) if roll < 0.14
                 else rng.uniform(4, 9))
            return f"{v:.1f}", rng.choice(["10*9/L", "10*3/uL"])
        case "PLT":
            v = (rng.uniform(30, 49) if roll < 0.02 else rng.uniform(100, 139) if roll < 0.08
                 else rng.uniform(150, 380))
            return f"{v:.0f}", "10*9/L"
        case "NEUT":
            return f"{rng.uniform(0.8, 1.5) if roll < 0.06 else rng.uniform(2, 6):.2f}", "10*9/L"
        case "LYMPH":
            return f"{rng.uniform(0.3, 0.49) if roll < 0.04 else rng.uniform(1, 3):.2f}", "10*9/L"
        case "HGB":
            return f"{rng.uniform(11, 16):.1f}", "g/dL"
        case "MCV":
            return f"{rng.uniform(106, 110) if roll < 0.05 else rng.uniform(82, 98):.1f}", "fL"
        case "ALT" | "AST":
            v = (rng.uniform(210, 400) if roll < 0.03 else rng.uniform(101, 150) if roll < 0.08
                 else rng.uniform(12, 45))
            return f"{v:.0f}", "U/L"
        case "ALP":
            return f"{rng.uniform(40, 120):.0f}", "U/L"
        case "BILI":
            return f"{rng.uniform(0.3, 1.1):.2f}", "mg/dL"
        case "ALB":
            return f"{rng.uniform(2.6, 2.9) if roll < 0.05 else rng.uniform(3.5, 4.6):.1f}", "g/dL"
        case _:
            return f"{rng.uniform(55, 105):.0f}", "umol/L"


@dataclass
class Enroll:
    request: patients.EnrollmentRequest


@dataclass
class Record:
    mrn: str
    on: date
    events: patients.Events


@dataclass
class ChangePhase:
    mrn: str
    on: date
    to: Phase


@dataclass
class Ingest:
    rows: list[str]
    early: bool  # delivered before that day's daily run (otherwise after it)


Event = Enroll | Record | ChangePhase | Ingest


@dataclass
class Scenario:
    events: dict[date, list[Event]] = field(default_factory=dict)

    def add(self, day: date, event: Event) -> None:
        self.events.setdefault(day, []).append(event)


def scenario(group: int) -> Scenario:
    """Four months of one clinic, the same on every run of the test. The cohort is dealt into two
    groups (each with every phase) that run as two tests, in parallel under xdist."""
    rng = random.Random(SEED + group)
    cohort = COHORT[group::2]
    s = Scenario()
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    starts: dict[str, date] = {}
    enrolled_on: dict[str, date] = {}
    for mrn, phase, offset, kg in cohort:
        start = FIRST_DAY + timedelta(days=offset)
        starts[mrn] = start
        enrolled_on[mrn] = max(FIRST_DAY, start - timedelta(days=7 if mrn == "I06" else 0))  # I06: early
        s.add(enrolled_on[mrn], Enroll(patients.EnrollmentRequest(
            mrn=mrn, protocol=PROTOCOL, start_on=start, weight_kg=kg, phase=phase,
            tpmt=rng.choice([None, "normal", "intermediate"]), coordinator=f"nurse{offset % 3}@example.org",
            site=rng.choice(["north", "south"]))))
    for mrn, acted, begins, phase in PHASE_CHANGES:
        if mrn not in starts:
            continue
        s.add(FIRST_DAY + timedelta(days=acted), ChangePhase(mrn, FIRST_DAY + timedelta(days=begins), phase))

    delivered: list[tuple[str, str, str, str]] = []  # (mrn, collected_at, code, analyte) to correct
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        early: list[str] = []
        late: list[str] = []
        for mrn, *_ in cohort:
            if enrolled_on[mrn] - timedelta(days=7) > day:
                continue
            enrolled = enrolled_on[mrn] <= day  # results a week before enrollment are held, then attached
            if rng.random() < 0.08:  # a blood draw, delivered on time, a little late or very late
                lag = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 7, 15, 40, 95])
                drawn = day - timedelta(days=lag)
                at = datetime.combine(drawn, time(rng.randint(7, 16), rng.choice([0, 15, 30, 45])))
                panels = CBC + LFT + (RENAL if rng.random() < 0.6 else [])
                if rng.random() < 0.15:
                    panels = CBC  # a count only
                target = early if rng.random() < 0.3 else late
                for code, analyte in panels:
                    value, unit = value_for(analyte, rng)
                    target.append(f"{mrn},{at.isoformat(timespec='minutes')},{code},{value},{unit},F")
                    delivered.append((mrn, at.isoformat(timespec="minutes"), code, analyte))
            if enrolled and rng.random() < 0.012:
                s.add(day, Record(mrn, day, patients.Events(weight_kg=round(rng.uniform(45, 100), 1))))
            if enrolled and rng.random() < 0.02:
                mg = rng.choice([0, 50, 75, 100, 125])
                on = day - timedelta(days=rng.choice([0, 0, 1, 4]))
                s.add(day, Record(mrn, on, patients.Events(doses=(("azathioprine", mg),))))
        for mrn in ("I02", "I03", "I04", "I05", "R01", "B01"):  # doses recorded near the induction steps
            if mrn not in starts:
                continue
            start = starts[mrn] if mrn != "B01" else FIRST_DAY + timedelta(days=12)
            for week, mg in ((3, 50), (5, 100)):
                if day == start + timedelta(weeks=week - 1, days=rng.choice([-2, 0, 0, 1])):
                    s.add(day, Record(mrn, day, patients.Events(doses=(("azathioprine", mg),))))
        if delivered and rng.random() < 0.08:  # a correction of an earlier result
            mrn, at_text, code, analyte = rng.choice(delivered)
            value, unit = value_for(analyte, rng)
            if analyte not in ("WBC", "HGB"):  # keep the unit of the first delivery
                late.append(f"{mrn},{at_text},{code},{value},{unit},C")
        interacting = "I03" if "I03" in starts else "I02"
        if offset == 20:
            s.add(day, Record(interacting, day, patients.Events(med_start=("allopurinol",))))
        if offset == 60:
            stop = patients.Events(med_stop=("allopurinol",), tpmt="intermediate")
            s.add(day, Record(interacting, day, stop))
        if early:
            s.add(day, Ingest(early, early=True))
        if late:
            s.add(day, Ingest(late, early=False))
    assert max(s.events) <= last
    return s


class Clinic:
    """One database living through the scenario, evaluated incrementally or in full."""

    def __init__(self, engine: Engine, library: Library, *, full: bool) -> None:
        self.engine, self.library, self.full = engine, library, full

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def apply(self, day: date, event: Event, now: datetime) -> None:
        with self.session() as s:
            match event:
                case Enroll(request):
                    patients.enroll(s, self.library, request, today=day, now=now, actor="test")
                case Record(mrn, on, events):
                    patients.record(s, self.library, mrn, events, on=on, today=day, now=now, actor="test")
                case ChangePhase(mrn, on, to):
                    patients.change_phase(s, mrn, to, on=on, reason="clinic review", by="dr.test", today=day, now=now)
                case Ingest(rows):
                    text = "mrn,collected_at,code,value,unit,status\n" + "\n".join(rows) + "\n"
                    records = csv_reader.read(io.StringIO(text), f"{day}.csv", LONDON, self.library.catalog)
                    ctx = ingest_context(now, library=self.library)
                    report = ingest_records(s, records, ctx)
                    assert report.quarantined == 0, report.reasons
            s.commit()

    def run(self, day: date) -> None:
        with self.session() as s:
            report = run_daily(s, self.library, today=day, now=moment(day, 6, 30), full=self.full)
        assert report.failed == 0

    def rows(self, day: date) -> dict[str, set[tuple[Any, ...]]]:
        return scenario_plan_rows(self.engine, day)


@pytest.fixture
def twin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second migrated database of the same kind as `db_url` (SQLite file or PostgreSQL)."""
    if os.environ.get("MONITOR_TEST_DATABASE_URL"):
        server = server_url()
        if server is None:
            pytest.fail("MONITOR_TEST_DATABASE_URL is set but PostgreSQL is not reachable")
        url, admin = create_database(server)
    else:
        url, admin = f"sqlite:///{tmp_path_factory.mktemp('twin') / 'full.db'}", None
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    yield url
    if admin is not None:
        drop_database(admin, url)


@pytest.fixture
def twin(twin_url: str) -> Iterator[Engine]:
    engine = make_engine(twin_url)
    yield engine
    engine.dispose()


def difference(day: date, incremental: dict[str, set[tuple[Any, ...]]],
               full: dict[str, set[tuple[Any, ...]]]) -> str:
    lines = [f"incremental and --full differ after the daily run of {day}:"]
    for table in incremental:
        for row in sorted(incremental[table] - full[table], key=repr)[:5]:
            lines.append(f"  {table} only incremental: {row}")
        for row in sorted(full[table] - incremental[table], key=repr)[:5]:
            lines.append(f"  {table} only full:        {row}")
    return "\n".join(lines)


@pytest.mark.parametrize("group", [0, 1], ids=["first-half", "second-half"])
def test_the_incremental_daily_cycle_writes_the_same_rows_as_a_full_one_every_day(
        engine: Engine, twin: Engine, group: int) -> None:
    library = packaged_library()
    incremental, full = Clinic(engine, library, full=False), Clinic(twin, library, full=True)
    events = scenario(group).events
    # PostgreSQL lives the first two months only (see the module docstring).
    days = DAYS if engine.dialect.name == "sqlite" else DAYS // 2
    statuses: set[str] = set()
    lapses = 0
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        todays = events.get(day, [])
        for i, early in enumerate(e for e in todays if isinstance(e, Ingest) and e.early):
            for clinic in (incremental, full):
                clinic.apply(day, early, moment(day, 5, i))
        for clinic in (incremental, full):
            clinic.run(day)
        got, want = incremental.rows(day), full.rows(day)
        assert got == want, difference(day, got, want)
        statuses |= {r[3] for r in want["due_draw"]}
        lapses += len(want["overdue_panel"])
        for i, event in enumerate(e for e in todays if not (isinstance(e, Ingest) and e.early)):
            for clinic in (incremental, full):
                clinic.apply(day, event, moment(day, 14, i))

    # The scenario exercised what it is meant to: every status, flags of every severity.
    assert statuses >= {"upcoming", "due", "overdue", "missed"}
    assert lapses
    rows = full.rows(day)
    assert {r[4] for r in rows["dose_step"]} >= {"upcoming", "due", "done"}
    assert {r[4] for r in rows["flag"]} >= {"action", "critical"}


def test_a_full_cycle_shared_by_three_processes_writes_the_rows_of_one_process(
        engine: Engine, twin: Engine, twin_url: str) -> None:
    # Two months of the scenario's clinic life in both databases, no cycle run; then the day's
    # full cycle by one process in one, and by `monitor run --workers 3` (batches of 3) in the other.
    library = packaged_library()
    serial, shared = Clinic(engine, library, full=True), Clinic(twin, library, full=True)
    events = scenario(0).events
    last = FIRST_DAY + timedelta(days=60)
    for offset in range(61):
        day = FIRST_DAY + timedelta(days=offset)
        for i, event in enumerate(events.get(day, [])):
            for clinic in (serial, shared):
                clinic.apply(day, event, moment(day, 9, i))
    serial.run(last)
    env = {**os.environ, "MONITOR_DATABASE_URL": twin_url, "MONITOR_DAEMON__BATCH_SIZE": "3"}
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--date", last.isoformat(), "--full",
                           "--workers", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (0, "")
    got, want = shared.rows(last), serial.rows(last)
    assert got == want, difference(last, want, got)
    with Session(twin) as s:
        [row] = s.exec(select(JobRun)).all()
        active = len(s.exec(select(Enrollment.id).where(Enrollment.status == "active")).all())
    assert (row.status, row.stats["evaluated"], sum(row.stats["by"].values())) == ("done", active, active)
    assert f"daily cycle {last}: {active} evaluated, 0 failed" in done.stdout


# --- the smallest cases: one patient, a few days ------------------------------------------------

ENROLL = ("enroll", "--protocol", PROTOCOL, "--tpmt", "normal", "--nudt15", "normal", "--mrn", "P1")
SMALL_CASES = {
    # ARCHITECTURE.md §3: dose and phase edits set next_review_on to *today*; an event dated
    # ahead must not postpone the re-evaluation to its date, because today's plan already
    # changes (the anchor drug's first dose, hence every due draw, moves).
    "phase-change-confirmed-ahead": (
        [(*ENROLL, "--start", "2026-01-05", "--weight-kg", "70", "--phase", "baseline")],
        {"2026-01-14": [("phase", "P1", "--to", "induction", "--date", "2026-01-19",
                         "--reason", "starts on Monday")]},
        "2026-01-14", "2026-01-15"),
    "dose-recorded-ahead": (
        [(*ENROLL, "--start", "2026-01-05", "--weight-kg", "70", "--phase", "baseline")],
        {"2026-01-14": [("record", "P1", "--date", "2026-01-19", "--dose", "azathioprine=50")]},
        "2026-01-14", "2026-01-15"),
    # Azathioprine started two days before the induction phase: on 02-18 the disease clock's
    # draw joins the safety draw of 02-26 ("also: ... after induction start"), a date the plan
    # did not name as a change.
    "azathioprine-started-before-the-induction": (
        [(*ENROLL, "--start", "2026-02-14", "--weight-kg", "81")],
        {"2026-02-12": [("record", "P1", "--date", "2026-02-12", "--dose", "azathioprine=75")]},
        "2026-02-12", "2026-02-18"),
    # A critical WBC adds a repeat draw within 3 days; once its window opens (01-23) the
    # overdue 12-weekly draw of 01-07 is `missed`, a date the plan did not name as a change.
    "critical-result-adds-a-repeat-draw": (
        [(*ENROLL, "--start", "2024-03-06", "--weight-kg", "77", "--phase", "maintenance")],
        {"2026-01-22": [("ingest", "{labs}")]},
        "2026-01-20", "2026-01-23"),
    # A critical WBC holds azathioprine; the hold and the repeat draw end when the result leaves
    # the 90-day flag look-back (03-01), a date the plan did not name as a change.
    "critical-hold-ends-after-the-look-back": (
        [(*ENROLL, "--start", "2024-03-06", "--weight-kg", "77", "--phase", "maintenance")],
        {"2026-02-25": [("ingest", "{late_labs}")]},
        "2026-02-25", "2026-03-01"),
}


@pytest.mark.parametrize(("setup", "events", "first", "check"), list(SMALL_CASES.values()),
                         ids=list(SMALL_CASES))
def test_a_daily_run_leaves_the_rows_a_full_run_of_the_same_day_would_write(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path, setup: list[tuple[str, ...]],
        events: dict[str, list[tuple[str, ...]]], first: str, check: str) -> None:
    files = {"labs": tmp_path / "labs.csv", "late_labs": tmp_path / "late.csv"}
    files["labs"].write_text("mrn,collected_at,code,value,unit\nP1,2026-01-22T15:00,6690-2,1.5,10*9/L\n")
    files["late_labs"].write_text("mrn,collected_at,code,value,unit\nP1,2025-11-30T10:30,6690-2,1.2,10*9/L\n")

    def cli(day: date, *args: str) -> None:
        with freeze_time(datetime.combine(day, time(12), LONDON)):  # the clinic's clock reads that day
            done = run(capsys, *(a.format(**{k: str(v) for k, v in files.items()}) for a in args))
        assert done.code == 0, (args, done.err)

    day, last = date.fromisoformat(first), date.fromisoformat(check)
    for command in setup:
        cli(day, *command)
    while True:
        cli(day, "run", "--date", day.isoformat())
        if day == last:
            break
        for command in events.get(day.isoformat(), []):
            cli(day, *command)
        day += timedelta(days=1)
    incremental = scenario_plan_rows(engine, day)
    cli(day, "run", "--date", day.isoformat(), "--full")
    full = scenario_plan_rows(engine, day)
    assert full == incremental, difference(day, {t: set(v) for t, v in incremental.items()},
                                           {t: set(v) for t, v in full.items()})


# --- the stored plan, read in SQL, says what a fresh evaluation says, every day until its review ----------

@pytest.mark.parametrize(("protocol", "phase", "start"), [
    ("aih-azathioprine", Phase.INDUCTION, "2026-01-05"),
    ("ibd-azathioprine", Phase.MAINTENANCE, "2024-03-06"),
    ("rheum-azathioprine", Phase.BASELINE, "2026-01-12"),
], ids=["aih-induction", "ibd-maintenance-overdue", "rheum-baseline-never-drawn"])
def test_the_stored_plan_read_for_a_day_is_what_evaluating_that_day_gives(
        engine: Engine, protocol: str, phase: Phase, start: str) -> None:
    # services/plans.py derives a draw's status, whether it is listed, and which panel lapse holds,
    # in SQL, from the dates the daily cycle stored; monitor patient evaluates afresh. For 150 days,
    # the cycle running only on the enrollment's review days, the two agree every day.
    clinic, first = ScenarioClinic(engine), d("2026-01-12")
    clinic.enroll("S1", start=d(start), protocol=protocol, phase=phase, on=first)
    clinic.normal_labs("S1", first - timedelta(days=40))
    seen: set[str] = set()
    review, runs = first, 0
    for n in range(150):
        day = first + timedelta(days=n)
        if day >= review:
            clinic.run(day)
            runs += 1
            with Session(engine) as s:
                [review] = s.exec(select(col(Enrollment.next_review_on))).all()
        stored = scenario_plan_rows(engine, day)
        view = clinic.view("S1", day)
        assert {(r[1], r[2].isoformat(), r[3]) for r in stored["due_draw"]} == \
            {(v["panel"], v["due_on"], v["status"]) for v in view["due"]}, day
        assert {(r[1], r[2].isoformat(), r[3]) for r in stored["overdue_panel"]} == \
            {(v["panel"], v["due_on"], v["draws_unmet"]) for v in view["overdue"]}, day
        seen |= {r[3] for r in stored["due_draw"]}
    assert len(seen) >= 2, seen  # statuses changed between reviews
    assert runs < 30, runs
