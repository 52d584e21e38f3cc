"""The daily cycle: evaluate enrollments due for review and write their plans idempotently."""

from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from monitor.db.snapshots import load_snapshots
from monitor.db.tables import (
    DoseStepRow,
    DueDrawRow,
    Enrollment,
    FlagRow,
    HeldResult,
    JobRun,
    PhaseEpisode,
    Quarantine,
)
from monitor.db.upsert import insert_ignore
from monitor.domain.plan import Plan, evaluate
from monitor.ingest.records import record_key
from monitor.protocols import Library

log = logging.getLogger(__name__)

BATCH = 500
AUTOMATIC = "monitor (automatic rule)"
LEASE = timedelta(minutes=30)


@dataclass
class RunReport:
    run_on: date
    evaluated: int = 0
    failed: int = 0
    flags_raised: int = 0
    rows_changed: int = 0
    held_expired: int = 0
    new_flag_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.run_on.isoformat(), "evaluated": self.evaluated, "failed": self.failed,
                "flags_raised": self.flags_raised, "rows_changed": self.rows_changed,
                "held_expired": self.held_expired}


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sync(session: Session, model: Any, eid: int, rows: Sequence[Any], key: Callable[[Any], tuple[Any, ...]],
          wanted: dict[tuple[Any, ...], dict[str, Any]]) -> int:
    """Make one enrollment's stored `rows` of `model` equal `wanted` (by natural key); count changes."""
    changed = 0
    for row in rows:
        values = wanted.pop(key(row), None)
        if values is None:
            session.delete(row)
            changed += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed += 1
    for values in wanted.values():
        session.add(model(enrollment_id=eid, **values))
        changed += 1
    return changed


def _stored(session: Session, model: Any, ids: Sequence[int]) -> dict[int, list[Any]]:
    """A batch's rows of a plan table, by enrollment: one query for the batch, not one each."""
    by_enrollment: dict[int, list[Any]] = defaultdict(list)
    for row in session.exec(select(model).where(col(model.enrollment_id).in_(ids))).all():
        by_enrollment[row.enrollment_id].append(row)
    return by_enrollment


def apply_plan(session: Session, enrollment: Enrollment, plan: Plan, *, now: datetime,
               stored_draws: Sequence[DueDrawRow], stored_steps: Sequence[DoseStepRow]) -> tuple[int, list[int]]:
    """Write one plan: due draws and dose steps replaced by key, flags added once. Returns
    (rows changed, ids of flags raised now)."""
    eid = enrollment.id
    assert eid is not None
    draws = {(d.panel, d.due_on): {"panel": d.panel, "due_on": d.due_on, "status": d.status,
                                   "rule_id": d.rule_id, "why": d.why} for d in plan.draws}
    steps = {(d.drug, d.on): {"drug": d.drug, "on": d.on, "dose_mg": d.dose_mg, "status": d.status,
                              "rule_id": d.rule_id, "why": d.why} for d in plan.dose_steps}
    changed = 0
    for change in plan.phase_changes:  # automatic transitions become part of the history
        session.add(PhaseEpisode(enrollment_id=eid, phase=change.to_phase.value, started_on=change.on,
                                 reason=change.why, confirmed_by=AUTOMATIC))
        enrollment.phase, enrollment.phase_since = change.to_phase.value, change.on
        changed += 1
    changed += _sync(session, DueDrawRow, eid, stored_draws, lambda r: (r.panel, r.due_on), draws)
    changed += _sync(session, DoseStepRow, eid, stored_steps, lambda r: (r.drug, r.on), steps)
    flags = [{"enrollment_id": eid, "key": f.key, "kind": f.kind, "severity": f.severity,
              "analyte": f.analyte, "value": f.value, "unit": f.unit, "observed_on": f.observed_on,
              "result_id": f.result_id, "rule_id": f.rule_id, "why": f.why, "status": "open",
              "raised_at": now} for f in plan.flags]
    raised = insert_ignore(session, FlagRow, flags, ["enrollment_id", "key"])
    changed += len(raised)
    if enrollment.next_review_on != plan.next_review_on or enrollment.last_evaluated_on != plan.as_of:
        enrollment.next_review_on, enrollment.last_evaluated_on = plan.next_review_on, plan.as_of
    return changed, raised


def evaluate_batch(session: Session, library: Library, enrollments: Sequence[Enrollment], report: RunReport,
                   *, today: date, now: datetime) -> None:
    snapshots = load_snapshots(session, enrollments, today=today)
    ids = [e.id for e in enrollments if e.id is not None]
    draws, steps = _stored(session, DueDrawRow, ids), _stored(session, DoseStepRow, ids)
    for enrollment in enrollments:
        assert enrollment.id is not None
        try:
            plan = evaluate(snapshots[enrollment.id], library.get(enrollment.protocol_id), today=today)
        except Exception:
            # One bad enrollment must not stop the cycle; it is retried tomorrow.
            log.exception("evaluation failed for enrollment %s", enrollment.id)
            report.failed += 1
            continue
        changed, raised = apply_plan(session, enrollment, plan, now=now, stored_draws=draws[enrollment.id],
                                     stored_steps=steps[enrollment.id])
        report.evaluated += 1
        report.rows_changed += changed
        report.flags_raised += len(raised)
        report.new_flag_ids += raised


def evaluate_patients(session: Session, library: Library, patient_ids: Iterable[int], *, today: date,
                      now: datetime) -> int:
    """Evaluate these patients' active enrollments now; return how many critical flags were raised."""
    enrollments = session.exec(select(Enrollment).where(col(Enrollment.patient_id).in_(list(patient_ids)),
                                                        Enrollment.status == "active")).all()
    report = RunReport(run_on=today)
    evaluate_batch(session, library, enrollments, report, today=today, now=now)
    if not report.new_flag_ids:
        return 0
    return len(session.exec(select(FlagRow.id).where(col(FlagRow.id).in_(report.new_flag_ids),
                                                     FlagRow.severity == "critical")).all())


def expire_held(session: Session, *, today: date, now: datetime) -> int:
    """Held results past their hold move to quarantine (with the reason), never silently away."""
    expired = session.exec(select(HeldResult).where(col(HeldResult.expires_on) < today)).all()
    rows = [{"record_key": record_key("held", h.source_key), "format": "held", "origin": h.source_key[:255],
             "raw": h.model_dump_json(exclude={"id"}), "status": "open", "created_at": now,
             "reason": f"held until {h.expires_on} and no enrollment arrived for this MRN; "
                       "enroll the patient, then replay"} for h in expired]
    insert_ignore(session, Quarantine, rows, ["record_key"])
    if expired:
        session.execute(delete(HeldResult).where(col(HeldResult.id).in_([h.id for h in expired])))
    return len(expired)


def claim(session: Session, job: str, key: str, *, now: datetime) -> bool:
    """Take the (job, day) slot: True for the one caller that got it, or took over a dead run."""
    if insert_ignore(session, JobRun, [{"job_name": job, "run_key": key, "owner": owner(),
                                        "status": "running", "started_at": now, "lease_until": now + LEASE,
                                        "stats": {}}], ["job_name", "run_key"]):
        return True
    taken = session.execute(
        update(JobRun).where(col(JobRun.job_name) == job, col(JobRun.run_key) == key,
                             (col(JobRun.status) == "failed")
                             | ((col(JobRun.status) == "running") & (col(JobRun.lease_until) < now)))
        .values(owner=owner(), status="running", started_at=now, lease_until=now + LEASE))
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def run_daily(session: Session, library: Library, *, today: date, now: datetime, full: bool = False,
              progress: Callable[[int, int], None] | None = None) -> RunReport:
    """Evaluate every active enrollment whose review date has come (`full`: all of them).

    Idempotent: a second run the same day finds nothing due and changes no row.
    """
    report = RunReport(run_on=today)
    query = select(Enrollment.id).where(Enrollment.status == "active")
    if not full:
        # Due for review, or last evaluated for a later day than this run's (a backdated run).
        query = query.where(or_(col(Enrollment.next_review_on) <= today, col(Enrollment.last_evaluated_on) > today))
    ids = list(session.exec(query.order_by(col(Enrollment.id))).all())
    first = claim(session, "daily", today.isoformat(), now=now)
    session.commit()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        enrollments = session.exec(select(Enrollment).where(col(Enrollment.id).in_(chunk))
                                   .order_by(col(Enrollment.id))).all()
        evaluate_batch(session, library, enrollments, report, today=today, now=now)
        session.commit()
        if progress is not None:
            progress(min(start + BATCH, len(ids)), len(ids))
    report.held_expired = expire_held(session, today=today, now=now)
    if first:
        session.execute(update(JobRun).where(col(JobRun.job_name) == "daily",
                                             col(JobRun.run_key) == today.isoformat())
                        .values(status="done", finished_at=now, stats=report.as_dict()))
    session.commit()
    return report
