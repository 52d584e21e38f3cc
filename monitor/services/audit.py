"""The audit trail: who did what, by internal id only (architecture decision 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor.db.tables import AuditEvent


def audit(session: Session, *, actor: str, action: str, entity: str, entity_id: int | None,
          now: datetime, **detail: Any) -> None:
    """Record who did what, by internal id only (never names, MRNs or values)."""
    session.add(AuditEvent(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                           detail=detail))
