"""The audit trail: who did what, by internal id only (architecture decision 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor.db.tables import AuditEvent

#: The actor of what the product does by itself (a daily run, a lab file ingested by a job).
SYSTEM = "monitor"


def audit(session: Session, *, actor: str, action: str, entity: str, entity_id: int | None,
          now: datetime, **detail: Any) -> None:
    """Record who did what, by internal id only (never names, MRNs or values)."""
    session.add(AuditEvent(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                           detail=detail))
