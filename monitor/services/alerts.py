"""Critical alerts: a critical flag raised (by ingestion or by the cycle) is e-mailed to its
coordinator at once, once per flag, in the transaction that raised it; still open (not
acknowledged, not resolved) `escalate_after` later, once to the coordinator's escalation address."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select as select_rows
from sqlmodel import Session, col, select

from monitor.db.tables import Coordinator, Enrollment, FlagRow, OutboxMessage, Patient
from monitor.domain.items import FlagStatus
from monitor.notify.mail import Mail
from monitor.notify.render import render
from monitor.services.digest import who
from monitor.services.outbox import Letter, enqueue

CRITICAL = "critical"


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
        r = render("alert", flag=flag, who=who(mail, mrn, name, pid))
        out.append(Letter(alert_key(flag), "alert", coordinator or mail.unassigned_to, r.subject, r.text, r.html,
                          flag.id))
    return enqueue(session, out, sender=mail.sender, now=now)


def queue_escalations(session: Session, *, mail: Mail, now: datetime) -> int:
    """Escalate the alerts older than `escalate_after` whose flag is still open (and raised when
    they were: a flag re-opened has its own alert), to the coordinator's escalation address
    in the caller's transaction; how many were new."""
    rows = session.execute(
        select_rows(FlagRow, col(OutboxMessage.key), col(OutboxMessage.created_at),
                    col(Coordinator.escalation_address), col(Coordinator.address), col(Patient.mrn),
                    col(Patient.name), col(Patient.id))
        .join(FlagRow, col(FlagRow.id) == OutboxMessage.flag_id)
        .join(Enrollment, col(Enrollment.id) == FlagRow.enrollment_id)
        .join(Patient, col(Patient.id) == Enrollment.patient_id)
        .join(Coordinator, col(Coordinator.address) == Enrollment.coordinator)
        .where(col(OutboxMessage.kind) == "alert", col(OutboxMessage.created_at) <= now - mail.escalate_after,
               col(FlagRow.status) == FlagStatus.OPEN, col(Coordinator.escalation_address).is_not(None))).all()
    wanted = {f"escalation|{key.removeprefix('alert|')}": row for row in rows
              if (key := row[1]) == alert_key(row[0])}
    if not wanted:
        return 0
    done = set(session.exec(select(OutboxMessage.key).where(col(OutboxMessage.key).in_(list(wanted)))).all())
    out = []
    for key, (flag, _, alerted_at, to, coordinator, mrn, name, pid) in wanted.items():
        if key in done:
            continue
        hours = (now - alerted_at).total_seconds() / 3600
        r = render("escalation", flag=flag, who=who(mail, mrn, name, pid), hours=f"{hours:.0f}",
                   coordinator=coordinator, by="", note="")  # (by and note: an escalation by hand, worklists.py)
        out.append(Letter(key, "escalation", to, r.subject, r.text, r.html, flag.id))
    return enqueue(session, out, sender=mail.sender, now=now)


def alert_key(flag: FlagRow) -> str:
    """One alert per flag and raising: a flag resolved and met again (its result corrected back) is
    alerted again."""
    return f"alert|{flag.id}|{flag.raised_at.astimezone(UTC).isoformat(timespec='seconds')}"
