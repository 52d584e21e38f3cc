"""Each daemon's heartbeat row: who runs, since when, doing what, last seen when."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from monitor.db.tables import DaemonHeartbeat
from monitor.db.upsert import upsert

KEPT = timedelta(days=7)  # a stopped daemon's row is shown this long, then removed


def beat(session: Session, owner: str, *, started_at: datetime, now: datetime, state: str,
         mllp_port: int | None) -> None:
    upsert(session, DaemonHeartbeat, [{"owner": owner, "started_at": started_at, "beat_at": now, "state": state,
                                       "mllp_port": mllp_port}], ["owner"])
    session.execute(delete(DaemonHeartbeat).where(col(DaemonHeartbeat.beat_at) < now - KEPT))
