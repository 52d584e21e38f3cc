"""Critical alerts: a critical flag raised (by ingestion or by the cycle) is e-mailed to its
coordinator at once, once per flag, in the transaction that raised it; still open (not
acknowledged, not resolved) `escalate_after` later, once to the coordinator's escalation address."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select as select_rows
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from monitor.db.tables import Coordinator, Enrollment, FlagRow, OutboxMessage, Patient
from monitor.domain.digest import Who, patient_label
from monitor.domain.items import FlagStatus
from monitor.notify.mail import Mail
from monitor.notify.render import render
from monitor.services.outbox import Letter, enqueue

CRITICAL = "critical"


def _who(mail: Mail, mrn: str, name: str | None, patient_id: int | None) -> Who:
    base = mail.base_url.rstrip("/")
    return Who(patient_label(mrn, name, minimal=mail.minimal_phi), f"{base}/patients/{patient_id}" if base else "")


def queue_alerts(session: Session, flag_ids: Sequence[int], *, mail: Mail, now: datetime) -> int:
    """An alert for each of these flags that is critical and open (in the caller's transaction);
    how many were new."""
    if not flag_ids:
        return 0
    rows = session.execute(select_rows(FlagRow, col(Enrollment.coordinator), col(Patient.mrn), col(Patient.name),
                                       col(Patient.id))
                        .join(Enrollment, col(Enrollment.id) == FlagRow.enrollment_id)
                        .join(Patient, col(Patient.id) == Enrollment.patient_id)
                        .where(col(FlagRow.id).in_(list(flag_ids)), col(FlagRow.severity) == CRITICAL,
                               col(FlagRow.status) == FlagStatus.OPEN)).all()
    out = []
    for flag, coordinator, mrn, name, pid in rows:
        r = render("alert", flag=flag, who=_who(mail, mrn, name, pid))
        out.append(Letter(f"alert|{flag.id}", "alert", coordinator or mail.unassigned_to, r.subject, r.text, r.html,
                          flag.id))
    return enqueue(session, out, sender=mail.sender, now=now)


def queue_escalations(session: Session, *, mail: Mail, now: datetime) -> int:
    """Escalate the alerts older than `escalate_after` whose flag is still open, to the
    coordinator's escalation address (committed); how many were new."""
    earlier = aliased(OutboxMessage)
    escalated = select_rows(col(earlier.flag_id)).where(col(earlier.kind) == "escalation",
                                                        col(earlier.flag_id).is_not(None))
    rows = session.execute(
        select_rows(FlagRow, col(OutboxMessage.created_at), col(Coordinator.escalation_address),
                    col(Coordinator.address), col(Patient.mrn), col(Patient.name), col(Patient.id))
        .join(FlagRow, col(FlagRow.id) == OutboxMessage.flag_id)
        .join(Enrollment, col(Enrollment.id) == FlagRow.enrollment_id)
        .join(Patient, col(Patient.id) == Enrollment.patient_id)
        .join(Coordinator, col(Coordinator.address) == Enrollment.coordinator)
        .where(col(OutboxMessage.kind) == "alert", col(OutboxMessage.created_at) <= now - mail.escalate_after,
               col(FlagRow.status) == FlagStatus.OPEN, col(Coordinator.escalation_address).is_not(None),
               col(FlagRow.id).not_in(escalated))).all()
    out = []
    for flag, alerted_at, to, coordinator, mrn, name, pid in rows:
        hours = (now - alerted_at).total_seconds() / 3600
        r = render("escalation", flag=flag, who=_who(mail, mrn, name, pid), hours=f"{hours:.0f}",
                   coordinator=coordinator)
        out.append(Letter(f"escalation|{flag.id}", "escalation", to, r.subject, r.text, r.html, flag.id))
    queued = enqueue(session, out, sender=mail.sender, now=now)
    session.commit()
    return queued
