"""A simulated clinic for long scenario tests: the real services, driven on named dates.

Every service is handed the scenario's own `today`/`now` (monitor/clock.py is never read), so a
scenario can live through years in a second. Lab results go through the CSV reader and the real
ingestion path (codes, units, critical screening at ingestion), doses and genotypes through
`patients.record`, clinician decisions through `patients.change_phase` and `flags.acknowledge`,
and the daily cycle through `run_daily` (incremental unless `full`).
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from monitor.db.snapshots import load_snapshots
from monitor.db.tables import (
    DoseStepRow,
    DueDrawRow,
    Enrollment,
    FlagRow,
    LabResult,
    OverduePanelRow,
    Patient,
    PhaseEpisode,
)
from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import Phase
from monitor.ingest import csv_reader
from monitor.protocols import Library, packaged_library
from monitor.services import flags, lookup, patients, plans, views
from monitor.services.daily import RunReport, run_daily
from monitor.services.ingest import ingest_records
from monitor.services.prepare import IngestReport
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")

#: Analyte -> (LOINC code, unit sent by the lab). Canonical units of config/analytes.toml, except
#: bilirubin and creatinine, which UK labs send in umol/L (converted and stored canonically).
LOINC = {
    "WBC": ("6690-2", "10*9/L"),
    "NEUT": ("751-8", "10*9/L"),
    "PLT": ("777-3", "10*9/L"),
    "HGB": ("718-7", "g/L"),
    "ALT": ("1742-6", "U/L"),
    "AST": ("1920-8", "U/L"),
    "IGG": ("2465-3", "g/L"),
    "BILI": ("1975-2", "umol/L"),
    "CREAT": ("2160-0", "umol/L"),
    "ALB": ("1751-7", "g/L"),
    "ALP": ("6768-6", "U/L"),
    "EGFR": ("98979-8", "mL/min/{1.73_m2}"),
}

#: A normal full set of bloods (every panel: CBC, LFT, IGG, RENAL), well inside the fallback ranges.
NORMAL = {"WBC": 6.5, "NEUT": 4.0, "PLT": 250, "ALT": 25, "AST": 24, "IGG": 12.0, "BILI": 10, "ALB": 42,
          "CREAT": 80}


def d(text: str) -> date:
    return date.fromisoformat(text)


def moment(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """An aware UTC instant at a local clinic time on `day`."""
    return datetime.combine(day, time(hour, minute), LONDON).astimezone(UTC)


def lab_csv(mrn: str, on: date, values: dict[str, float], *, hour: int = 9, minute: int = 0) -> str:
    """One blood draw as a lab CSV (the `monitor ingest` format of CLI.md)."""
    at = datetime.combine(on, time(hour, minute)).isoformat(timespec="minutes")
    lines = ["mrn,collected_at,code,value,unit"]
    for analyte, value in values.items():
        code, unit = LOINC[analyte]
        lines.append(f"{mrn},{at},{code},{value:g},{unit}")
    return "\n".join(lines) + "\n"


class Clinic:
    """One database living through a scenario."""

    def __init__(self, engine: Engine, library: Library | None = None) -> None:
        self.engine = engine
        self.library = library or packaged_library()
        self.ingested: list[IngestReport] = []

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- clinician and lab events -----------------------------------------------------------

    def enroll(self, mrn: str, *, start: date, protocol: str = "aih-azathioprine", weight_kg: float = 60,
               tpmt: str | None = "normal", nudt15: str | None = "normal", phase: Phase = Phase.BASELINE,
               on: date | None = None, sex: str | None = None) -> None:
        req = patients.EnrollmentRequest(mrn=mrn, protocol=protocol, start_on=start, weight_kg=weight_kg,
                                         phase=phase, tpmt=tpmt, nudt15=nudt15, sex=sex,
                                         coordinator="nurse@example.org", site="north")
        day = on or start
        with self.session() as s:
            patients.enroll(s, self.library, req, today=day, now=moment(day, 9), actor="test")
            s.commit()

    def record(self, mrn: str, on: date, *, doses: dict[str, float] | None = None, weight_kg: float | None = None,
               med_start: tuple[str, ...] = (), med_stop: tuple[str, ...] = (), tpmt: str | None = None,
               nudt15: str | None = None, today: date | None = None) -> list[str]:
        """Events dated `on`, recorded on `today` (default: that same day)."""
        events = patients.Events(doses=tuple((doses or {}).items()), weight_kg=weight_kg, med_start=med_start,
                                 med_stop=med_stop, tpmt=tpmt, nudt15=nudt15)
        with self.session() as s:
            done = patients.record(s, self.library, mrn, events, on=on, today=today or on, now=moment(today or on, 10),
                                   actor="dr.test")
            s.commit()
        return done

    def labs(self, mrn: str, on: date, *, hour: int = 9, minute: int = 0, received: date | None = None,
             **values: float) -> IngestReport:
        """One blood draw on `on` (results received the same afternoon unless `received`)."""
        return self.draw(mrn, on, values, hour=hour, minute=minute, received=received)

    def draw(self, mrn: str, on: date, values: dict[str, float], *, hour: int = 9, minute: int = 0,
             received: date | None = None) -> IngestReport:
        arrive = received or on
        ctx = ingest_context(moment(arrive, 15), library=self.library)
        with self.session() as s:
            text = lab_csv(mrn, on, values, hour=hour, minute=minute)
            records = csv_reader.read(io.StringIO(text), f"labs-{on}.csv", LONDON, self.library.catalog)
            report = ingest_records(s, records, ctx)
            s.commit()
        assert report.quarantined == 0, report.reasons
        self.ingested.append(report)
        return report

    def normal_labs(self, mrn: str, on: date, **changes: float) -> IngestReport:
        return self.draw(mrn, on, NORMAL | changes)

    def phase(self, mrn: str, to: Phase, on: date, reason: str = "clinic review", *, today: date | None = None) -> None:
        """A clinician confirms, on `today` (default: `on`), a phase starting on `on`."""
        with self.session() as s:
            patients.change_phase(s, mrn, to, on=on, reason=reason, by="dr.test", today=today or on,
                                  now=moment(today or on, 11))
            s.commit()

    def ack(self, flag_id: int, on: date, reason: str = "reviewed, repeat booked") -> None:
        with self.session() as s:
            flags.acknowledge(s, flag_id, reason=reason, by="dr.test", today=on, now=moment(on, 13))
            s.commit()

    # --- the daily cycle and what it shows ----------------------------------------------------

    def run(self, day: date, *, full: bool = False) -> RunReport:
        self.day = day
        with self.session() as s:
            report = run_daily(s, self.library, today=day, now=moment(day, 6, 30), full=full)
        assert report.failed == 0, f"the daily cycle of {day} failed for {report.failed} enrollments"
        return report

    def follow(self, mrn: str, since: date, until: date, **changes: float) -> list[date]:
        """The clinic follows the plan: a full normal set of bloods on each next due date (the
        earliest open draw), and the daily cycle that day, until the next one falls after `until`.
        Returns the draw dates."""
        day, drawn = since, list[date]()
        while True:
            pending = [x.due_on for x in self.plan(mrn, day).draws if x.status in ("upcoming", "due")]
            if not pending:
                return drawn
            day = max(min(pending), day + timedelta(days=1))
            if day > until:
                return drawn
            self.normal_labs(mrn, day, **changes)
            self.run(day)
            drawn.append(day)

    def plan(self, mrn: str, day: date) -> Plan:
        """The engine's plan for the patient as of `day` (what `monitor patient` shows, without the
        results listing and the audit row)."""
        with self.session() as s:
            enrollment = lookup.active_enrollment(s, lookup.find_patient(s, mrn))
            snapshot = load_snapshots(s, [enrollment], today=day)[enrollment.id or 0]
            return evaluate(snapshot, self.library.get(enrollment.protocol_id), today=day)

    def view(self, mrn: str, day: date) -> dict[str, Any]:
        with self.session() as s:
            return views.patient_view(s, self.library, mrn, today=day, now=moment(day, 14), actor="test")

    def stored_phase(self, mrn: str) -> tuple[str, date]:
        """The phase the database holds (what the daily cycle persisted), not the live view."""
        with self.session() as s:
            patient = lookup.find_patient(s, mrn)
            e = lookup.active_enrollment(s, patient)
            return e.phase, e.phase_since

    def history(self, mrn: str) -> list[tuple[str, date, str, str | None]]:
        """The stored phase episodes: (phase, started_on, reason, confirmed_by), in date order."""
        with self.session() as s:
            e = lookup.active_enrollment(s, lookup.find_patient(s, mrn))
            rows = s.exec(select(PhaseEpisode).where(PhaseEpisode.enrollment_id == e.id)
                          .order_by(col(PhaseEpisode.started_on), col(PhaseEpisode.id))).all()
            return [(r.phase, r.started_on, r.reason, r.confirmed_by) for r in rows]

    def flags(self, mrn: str | None = None, *, status: str = "all") -> list[dict[str, Any]]:
        with self.session() as s:
            listed = views.flags(s, status=status)
        return [f for f in listed if mrn is None or f["mrn"] == mrn]

    def plan_rows(self, day: date | None = None) -> dict[str, set[tuple[Any, ...]]]:
        """The stored plan as it reads on `day` (by default, that of the last `run`)."""
        return plan_rows(self.engine, day or self.day)


def plan_rows(engine: Engine, day: date) -> dict[str, set[tuple[Any, ...]]]:
    """The stored plan as it reads on `day`, by natural content: enrollments by MRN, results by
    source key, no ids or times; draws with their status that day, the panel lapses that hold."""
    e, p, r = Enrollment.__table__, Patient.__table__, LabResult.__table__  # type: ignore[attr-defined]
    dd, st, f, op = (DueDrawRow.__table__, DoseStepRow.__table__,  # type: ignore[attr-defined]
                     FlagRow.__table__, OverduePanelRow.__table__)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        mrn: dict[int, str] = {i: m for i, m in conn.execute(sa_select(e.c.id, p.c.mrn).join(p))}
        source: dict[int, str] = {i: k for i, k in conn.execute(sa_select(r.c.id, r.c.source_key))}
        draws = {(mrn[row[0]], *row[1:]) for row in conn.execute(
            sa_select(dd.c.enrollment_id, dd.c.panel, dd.c.due_on, plans.draw_status(day), dd.c.rule_id, dd.c.why)
            .where(plans.draw_listed(day)))}
        lapses = {(mrn[row[0]], *row[1:]) for row in conn.execute(
            sa_select(op.c.enrollment_id, op.c.panel, op.c.since, op.c.draws_unmet, op.c.last_result_on, op.c.rule_id,
                      op.c.why).where(plans.lapse_holds(day)))}
        steps = {(mrn[row[0]], *row[1:]) for row in conn.execute(
            sa_select(st.c.enrollment_id, st.c.drug, st.c.on, st.c.dose_mg, st.c.status, st.c.rule_id,
                      st.c.why))}
        flags = {(mrn[row[0]], source.get(row[1]), *row[2:]) for row in conn.execute(
            sa_select(f.c.enrollment_id, f.c.result_id, f.c.rule_id, f.c.kind, f.c.severity, f.c.analyte,
                      f.c.value, f.c.unit, f.c.observed_on, f.c.status, f.c.why))}
    return {"due_draw": draws, "overdue_panel": lapses, "dose_step": steps, "flag": flags}


# --- reading a patient view -------------------------------------------------------------------

def due(view: dict[str, Any], panel: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    return [x for x in view["due"] if (panel is None or x["panel"] == panel)
            and (status is None or x["status"] == status)]


def due_dates(view: dict[str, Any], panel: str) -> list[str]:
    return [x["due_on"] for x in due(view, panel)]


def next_due(view: dict[str, Any]) -> dict[str, str]:
    """Panel -> the date of its earliest open (upcoming or due) draw."""
    found: dict[str, str] = {}
    for x in sorted(view["due"], key=lambda x: x["due_on"]):
        if x["status"] in ("upcoming", "due"):
            found.setdefault(x["panel"], x["due_on"])
    return found


def steps(view: dict[str, Any], drug: str = "azathioprine") -> list[tuple[str, float, str]]:
    """(from, mg/day, status) of the drug's dose steps, in date order."""
    return sorted((s["on"], s["dose_mg"], s["status"]) for s in view["dose_steps"] if s["drug"] == drug)


def kinds(view: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in view["flags"]}


def open_flags(view: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in view["flags"] if f["kind"] == kind]


def proposals(view: dict[str, Any]) -> list[str]:
    return [p["to_phase"] for p in view["proposals"]]


def wipe(engine: Engine) -> None:
    """Empty every table (a fresh clinic on the same migrated database)."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
