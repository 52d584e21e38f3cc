"""Coordinator digests: what each nurse coordinator needs to do today, from the stored plan."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from monitor.db.tables import DoseStepRow, DueDrawRow, Enrollment, FlagRow, OverduePanelRow, Patient
from monitor.domain.digest import UNASSIGNED, Digest, DueLine, FlagLine, OverdueLine, StepLine
from monitor.domain.items import FlagStatus
from monitor.services.plans import draw_due, lapse_holds


def build_digests(session: Session, *, today: date) -> list[Digest]:
    """One digest per coordinator with active enrollments, from the rows of the last daily run."""
    digests: dict[str, Digest] = {}

    def of(coordinator: str | None) -> Digest:
        name = coordinator or UNASSIGNED
        return digests.setdefault(name, Digest(coordinator=name, day=today))

    people = (select(Enrollment.coordinator, Patient.mrn, Enrollment.phase, Enrollment.id)
              .join(Patient, col(Patient.id) == Enrollment.patient_id).where(Enrollment.status == "active"))
    who: dict[int, tuple[str | None, str, str]] = {}
    for coordinator, mrn, phase, eid in session.exec(people).all():
        assert eid is not None
        who[eid] = (coordinator, mrn, phase)
        of(coordinator)
    for f in session.exec(select(FlagRow).where(FlagRow.status == FlagStatus.OPEN)).all():
        coordinator, mrn, _ = who.get(f.enrollment_id, (None, "?", ""))
        assert f.id is not None
        of(coordinator).flags.append(FlagLine(f.id, mrn, f.severity, f.kind, "" if f.value is None else f"{f.value:g}",
                                              f.unit or "", f.observed_on, f.why))
    for o in session.exec(select(OverduePanelRow).where(lapse_holds(today))
                          .order_by(col(OverduePanelRow.since))).all():
        coordinator, mrn, phase = who.get(o.enrollment_id, (None, "?", ""))
        of(coordinator).overdue.append(OverdueLine(mrn, o.panel, o.since, phase, (today - o.since).days,
                                                   o.draws_unmet, o.last_result_on))
    for d in session.exec(select(DueDrawRow).where(draw_due(today)).order_by(col(DueDrawRow.due_on))).all():
        coordinator, mrn, phase = who.get(d.enrollment_id, (None, "?", ""))
        of(coordinator).due.append(DueLine(mrn, d.panel, d.due_on, phase))
    for s in session.exec(select(DoseStepRow).where(DoseStepRow.status == "due")
                          .order_by(col(DoseStepRow.on))).all():
        coordinator, mrn, _ = who.get(s.enrollment_id, (None, "?", ""))
        of(coordinator).dose_steps.append(StepLine(mrn, s.drug, f"{s.dose_mg:g}", s.on))
    for digest in digests.values():
        digest.sort()
    return sorted(digests.values(), key=lambda d: d.coordinator)
