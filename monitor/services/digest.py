"""Coordinator digests: what each nurse coordinator needs to do today, from the stored plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from monitor.db.tables import DoseStepRow, DueDrawRow, Enrollment, FlagRow, OverduePanelRow, Patient
from monitor.domain.protocol import MOST_SEVERE_FIRST

UNASSIGNED = "unassigned"


@dataclass
class Digest:
    coordinator: str
    day: date
    flags: list[dict[str, Any]] = field(default_factory=list)
    overdue: list[dict[str, Any]] = field(default_factory=list)
    due: list[dict[str, Any]] = field(default_factory=list)
    dose_steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def critical_count(self) -> int:
        return sum(f["severity"] == "critical" for f in self.flags)

    @property
    def key(self) -> str:
        return f"digest|{self.coordinator}|{self.day.isoformat()}"


def build_digests(session: Session, *, today: date) -> list[Digest]:
    """One digest per coordinator with active enrollments, from the rows of the last daily run."""
    digests: dict[str, Digest] = {}

    def for_(coordinator: str | None) -> Digest:
        name = coordinator or UNASSIGNED
        return digests.setdefault(name, Digest(coordinator=name, day=today))

    people = (select(Enrollment.coordinator, Patient.mrn, Enrollment.phase, Enrollment.id)
              .join(Patient, col(Patient.id) == Enrollment.patient_id).where(Enrollment.status == "active"))
    who: dict[int, tuple[str | None, str, str]] = {}
    for coordinator, mrn, phase, eid in session.exec(people).all():
        assert eid is not None
        who[eid] = (coordinator, mrn, phase)
        for_(coordinator)
    for f in session.exec(select(FlagRow).where(FlagRow.status == "open")).all():
        coordinator, mrn, _ = who.get(f.enrollment_id, (None, "?", ""))
        for_(coordinator).flags.append({"id": f.id, "mrn": mrn, "severity": f.severity, "kind": f.kind,
                                        "value": f"{f.value:g}" if f.value is not None else "",
                                        "unit": f.unit or "", "observed_on": f.observed_on, "why": f.why})
    for o in session.exec(select(OverduePanelRow).order_by(col(OverduePanelRow.since))).all():
        coordinator, mrn, phase = who.get(o.enrollment_id, (None, "?", ""))
        for_(coordinator).overdue.append({"mrn": mrn, "panel": o.panel, "due_on": o.since, "phase": phase,
                                          "days_overdue": (today - o.since).days, "draws_unmet": o.draws_unmet,
                                          "last_result_on": o.last_result_on})
    for d in session.exec(select(DueDrawRow).where(DueDrawRow.status == "due").order_by(col(DueDrawRow.due_on))).all():
        coordinator, mrn, phase = who.get(d.enrollment_id, (None, "?", ""))
        for_(coordinator).due.append({"mrn": mrn, "panel": d.panel, "due_on": d.due_on, "phase": phase})
    for s in session.exec(select(DoseStepRow).where(DoseStepRow.status == "due")
                          .order_by(col(DoseStepRow.on))).all():
        coordinator, mrn, _ = who.get(s.enrollment_id, (None, "?", ""))
        for_(coordinator).dose_steps.append({"mrn": mrn, "drug": s.drug, "dose_mg": f"{s.dose_mg:g}",
                                             "on": s.on})
    for digest in digests.values():
        digest.flags.sort(key=lambda f: (MOST_SEVERE_FIRST.get(f["severity"], 1), f["mrn"]))
    return sorted(digests.values(), key=lambda d: d.coordinator)
