"""Views for the CLI and (later) the web app, in the JSON shapes of CLI.md. They change nothing,
except that a view of a patient record leaves an audit row (architecture decision 9)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func
from sqlmodel import Session, col, select

from monitor.db.snapshots import load_snapshots
from monitor.db.tables import Enrollment, FlagRow, JobRun, LabResult, OverduePanelRow, Patient, Quarantine
from monitor.domain.digest import problem
from monitor.domain.errors import UserError
from monitor.domain.items import FlagStatus, OverduePanel
from monitor.domain.plan import evaluate, standing
from monitor.domain.protocol import MOST_SEVERE_FIRST, MonitoringProtocol
from monitor.domain.snapshot import Result, Snapshot
from monitor.domain.thresholds import Baselines, ctcae_grade
from monitor.protocols import Library
from monitor.services.audit import audit
from monitor.services.lookup import active_enrollment, find_patient
from monitor.services.plans import lapse_holds
from monitor.services.quarantine_rows import raw_texts

RESULTS_SHOWN = timedelta(days=366)
#: A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """A text cell as a spreadsheet shows it as text: one that starts like a formula gets a leading
    single quote (OWASP). Numbers are left alone: a number we write is never a formula. (Every CSV
    export: the CLI's and the web app's.)"""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


#: The overdue review's CSV columns (`monitor overdue --format csv`, the web app's export; docs/CLI.md).
OVERDUE_COLUMNS = ["mrn", "panel", "due_on", "days_overdue", "draws_unmet", "last_result_on", "days_without_result",
                   "phase", "coordinator", "site"]


def last_daily_run(session: Session) -> dict[str, Any] | None:
    """The latest completed daily cycle (the plan that overdue, flags and digests show comes from it)."""
    run = session.exec(select(JobRun).where(JobRun.job_name == "daily", JobRun.status == "done")
                       .order_by(col(JobRun.run_key).desc())).first()
    if run is None:
        return None
    return {"date": run.run_key, "finished_at": None if run.finished_at is None else run.finished_at.isoformat()}


def flag_view(f: FlagRow) -> dict[str, Any]:
    return {"id": f.id, "kind": f.kind, "severity": f.severity, "status": f.status, "analyte": f.analyte,
            "problem": problem(f.kind, f.analyte, f.rule_id),
            "value": f.value, "unit": f.unit, "observed_on": f.observed_on.isoformat(),
            "rule_id": f.rule_id, "why": f.why, "raised_at": f.raised_at.isoformat(),
            "acknowledged_by": f.acknowledged_by, "ack_reason": f.ack_reason,
            "resolved_at": None if f.resolved_at is None else f.resolved_at.isoformat(), "resolution": f.resolution}


def medication_view(snapshot: Snapshot, protocol: MonitoringProtocol) -> list[dict[str, Any]]:
    """The patient's drugs, latest start first, with the interaction rules each one meets. `checked`
    is false for a name the drug list does not know (recorded with --unlisted): no rule can match it."""
    return [{"drug": protocol.drug_list.generic(m.drug), "started_on": m.started_on.isoformat(),
             "stopped_on": m.stopped_on.isoformat() if m.stopped_on else None,
             "checked": protocol.drug_list.canonical(m.drug) is not None,
             "interactions": [x.id for x in protocol.interactions if protocol.interacts(m.drug, x)]}
            for m in sorted(snapshot.medications, key=lambda m: (m.started_on, m.drug), reverse=True)]


def patient_view(session: Session, library: Library, mrn: str, *, today: date, now: datetime,
                 actor: str) -> dict[str, Any]:
    """One patient as of `today`: the plan evaluated now, open flags and recent results."""
    patient = find_patient(session, mrn)
    return patient_record(session, library, patient, active_enrollment(session, patient), today=today, now=now,
                          actor=actor)[0]


def patient_record(session: Session, library: Library, patient: Patient, enrollment: Enrollment, *, today: date,
                   now: datetime, actor: str) -> tuple[dict[str, Any], Snapshot, MonitoringProtocol]:
    """`patient_view`, with the snapshot and protocol it was worked out from (the web page draws
    the course from them)."""
    snapshot = load_snapshots(session, [enrollment], today=today)[enrollment.id or 0]
    protocol = library.get(enrollment.protocol_id).for_sex(snapshot.sex)  # grades below use the patient's ranges
    plan = evaluate(snapshot, protocol, today=today)
    current = standing(snapshot, protocol, today=today)
    phase = current.snapshot.phase_on(today)
    flags = session.exec(select(FlagRow)
                         .where(FlagRow.enrollment_id == enrollment.id, FlagRow.status == FlagStatus.OPEN)
                         .order_by(col(FlagRow.observed_on).desc(), col(FlagRow.id).desc())).all()
    rows = session.exec(select(LabResult).where(
        LabResult.patient_id == patient.id, col(LabResult.observed_on) >= today - RESULTS_SHOWN,
        col(LabResult.observed_on) <= today).order_by(col(LabResult.observed_at).desc(),
                                                      col(LabResult.analyte))).all()
    base = Baselines(current.snapshot, protocol, current.exposure)
    results = []
    for r in rows:
        result = Result(r.id or 0, r.analyte, r.value, r.observed_on, r.status, r.ref_low, r.ref_high, r.observed_at)
        grade = ctcae_grade(result, protocol, base.of(result))
        results.append({
            "analyte": r.analyte, "code": r.code, "value": r.value, "unit": r.unit,
            "observed_on": r.observed_on.isoformat(), "status": r.status,
            "ref_low": r.ref_low, "ref_high": r.ref_high, "ctcae_grade": grade,
            "ctcae_version": protocol.grading.version if grade is not None else None,
        })
    audit(session, actor=actor, action="view", entity="patient", entity_id=patient.id, now=now)
    session.commit()
    return {
        "daily_run": last_daily_run(session),
        "mrn": patient.mrn,
        "protocol": protocol.id,
        "protocol_version": enrollment.protocol_version,
        "phase": phase.phase.value,
        "phase_since": phase.started_on.isoformat(),
        "as_of": today.isoformat(),
        "coordinator": enrollment.coordinator,
        "site": enrollment.site,
        "due": [{"panel": d.panel, "due_on": d.due_on.isoformat(), "status": d.status,
                 "rule_id": d.rule_id, "why": d.why} for d in plan.draws],
        "overdue": [overdue_view(o, today=today) for o in plan.overdue],
        "dose_steps": [{"drug": d.drug, "dose_mg": d.dose_mg, "on": d.on.isoformat(), "status": d.status,
                        "rule_id": d.rule_id, "why": d.why} for d in plan.dose_steps],
        "flags": [flag_view(f) for f in flags],
        "proposals": [{"to_phase": p.to_phase, "rule_id": p.rule_id, "why": p.why} for p in plan.proposals],
        "medications": medication_view(snapshot, protocol),
        "results": results,
    }, snapshot, protocol


def overdue_view(o: OverduePanel | OverduePanelRow, *, today: date) -> dict[str, Any]:
    """One panel whose most recent required draw is unmet: since when, and how long without a result."""
    return {"panel": o.panel, "due_on": o.since.isoformat(), "days_overdue": (today - o.since).days,
            "draws_unmet": o.draws_unmet,
            "last_result_on": None if o.last_result_on is None else o.last_result_on.isoformat(),
            "days_without_result": None if o.last_result_on is None else (today - o.last_result_on).days,
            "rule_id": o.rule_id, "why": o.why}


def overdue(session: Session, *, today: date, site: str | None = None,
            coordinator: str | None = None) -> list[dict[str, Any]]:
    """Every patient and panel whose most recent required draw is unmet (overdue or missed), as of
    the plans the daily cycle stored, worst first: unmet for longest, then longest without a result."""
    query = (select(OverduePanelRow, Enrollment, Patient)
             .join(Enrollment, col(Enrollment.id) == OverduePanelRow.enrollment_id)
             .join(Patient, col(Patient.id) == Enrollment.patient_id)
             .where(Enrollment.status == "active", lapse_holds(today)))
    if site:
        query = query.where(Enrollment.site == site)
    if coordinator:
        query = query.where(Enrollment.coordinator == coordinator)
    rows = session.exec(query.order_by(col(OverduePanelRow.since), col(OverduePanelRow.last_result_on),
                                       col(Patient.mrn), col(OverduePanelRow.panel))).all()
    return [{"mrn": p.mrn, **overdue_view(o, today=today), "phase": e.phase, "coordinator": e.coordinator,
             "site": e.site} for o, e, p in rows]


def site_of() -> ColumnElement[str]:
    """An enrollment's site as lists and filters name it ("" for none)."""
    return func.coalesce(col(Enrollment.site), "")


def most_severe_first(severity: Any) -> Any:
    """A severity column's place, most severe first (MOST_SEVERE_FIRST in SQL; an unknown one last)."""
    return case(*((severity == name, rank) for name, rank in MOST_SEVERE_FIRST.items()), else_=1)


def flags(session: Session, *, status: str = "open", sites: tuple[str, ...] | None = None,
          limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Flags with their patient's MRN, most severe first, then the latest; of the enrollments at
    `sites` (None: all); `limit` of them after `offset` (sorted and cut in the database)."""
    if status not in (*FlagStatus, "all"):
        raise UserError(f"--status {status!r} must be open, acknowledged, resolved or all")
    query = (select(FlagRow, Patient.mrn).join(Enrollment, col(Enrollment.id) == FlagRow.enrollment_id)
             .join(Patient, col(Patient.id) == Enrollment.patient_id))
    if sites is not None:
        query = query.where(site_of().in_(list(sites)))
    if status != "all":
        query = query.where(FlagRow.status == status)
    query = query.order_by(most_severe_first(col(FlagRow.severity)), col(FlagRow.observed_on).desc(),
                           col(FlagRow.id)).offset(offset)
    rows = session.exec(query if limit is None else query.limit(limit)).all()
    return [{**flag_view(f), "mrn": mrn} for f, mrn in rows]


def by_problem(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flags one per patient and problem: the most severe severity, the latest result's id, value,
    date and why, and how many results the problem covers."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for f in sorted(flags, key=lambda f: MOST_SEVERE_FIRST.get(f["severity"], 1)):
        key = (f.get("mrn", ""), f["problem"])
        if key not in grouped:
            grouped[key] = {**f, "results": 0, "first_observed_on": f["observed_on"]}
        g = grouped[key]
        g["results"] += 1
        g["first_observed_on"] = min(g["first_observed_on"], f["observed_on"])
        if (f["observed_on"], f["id"]) > (g["observed_on"], g["id"]):
            g.update(id=f["id"], value=f["value"], unit=f["unit"], observed_on=f["observed_on"], why=f["why"])
    return list(grouped.values())


def quarantine_list(session: Session, *, status: str = "open") -> list[dict[str, Any]]:
    query = select(Quarantine).order_by(col(Quarantine.id))
    if status != "all":
        query = query.where(Quarantine.status == status)
    rows = session.exec(query).all()
    return [{"id": q.id, "format": q.format, "origin": q.origin, "reason": q.reason, "status": q.status,
             "created_at": q.created_at.isoformat(), "attempts": q.attempts,
             "last_tried_at": q.last_tried_at.isoformat(), "raw": raw}
            for q, raw in zip(rows, raw_texts(session, rows), strict=True)]
