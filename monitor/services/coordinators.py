"""Nurse coordinators: the addresses enrollments name, with a display name and an escalation
address for critical alerts left unacknowledged (services/alerts.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.db.tables import Coordinator, Enrollment
from monitor.domain.errors import UserError
from monitor.services.audit import audit
from monitor.services.checks import ADDRESS, ADDRESS_CHARS, NAME_CHARS, check_text


def _address(value: str, option: str) -> str:
    if len(value) > ADDRESS_CHARS or not ADDRESS.fullmatch(value):
        raise UserError(f"{option} {value!r} is not an e-mail address of at most {ADDRESS_CHARS} characters "
                        "(like a.nurse@hospital.example)")
    return value


def listing(session: Session) -> list[dict[str, Any]]:
    """Every coordinator an active enrollment names or the table holds, with its patient count."""
    counts = dict(session.exec(select(Enrollment.coordinator, func.count()).where(col(Enrollment.status) == "active")
                               .group_by(col(Enrollment.coordinator))).all())
    known = {c.address: c for c in session.exec(select(Coordinator)).all()}
    rows = []
    for address in sorted({a for a in counts if a is not None} | set(known)):
        c = known.get(address)
        rows.append({"address": address, "name": c.name if c else None,
                     "escalation_address": c.escalation_address if c else None,
                     "active_enrollments": int(counts.get(address, 0))})
    if counts.get(None):
        rows.append({"address": None, "name": "(no coordinator: digest.unassigned_to)", "escalation_address": None,
                     "active_enrollments": int(counts[None])})
    return rows


def set_coordinator(session: Session, address: str, *, name: str | None, escalation: str | None, by: str,
                    now: datetime) -> Coordinator:
    """Add or change a coordinator (`escalation` "": none)."""
    _address(address, "ADDRESS")
    row = session.get(Coordinator, address) or Coordinator(address=address, updated_at=now)
    if name is not None:
        check_text(name, "--name", NAME_CHARS)
        row.name = name
    if escalation is not None:
        row.escalation_address = _address(escalation, "--escalate-to") if escalation else None
        if row.escalation_address == address:
            raise UserError("--escalate-to must be someone else: an escalation goes to a second person")
    row.updated_at = now
    session.add(row)
    audit(session, actor=by, action="set", entity="coordinator", entity_id=None, now=now, address=address)
    return row
