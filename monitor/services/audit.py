"""The audit trail: who did what, by internal id only (architecture decision 9), each event chained
to the one before it by a hash (`monitor.domain.audit`), and the check of that chain
(`monitor audit verify`).

Chain order is id order, so ids and hashes must be handed out in the same order when several
transactions write events at once:

- PostgreSQL: a transaction-scoped advisory lock (`CHAIN_LOCK_KEY`) is taken before the event is
  inserted and held until commit, so the next writer waits, then reads the newest committed hash
  (READ COMMITTED, the default: each statement sees what committed before it) and gets the next id.
- SQLite: the event is inserted first. Python's sqlite3 opens the transaction (a deferred BEGIN)
  just before the first INSERT, UPDATE or DELETE, and that INSERT takes the database's write
  lock, which no other connection can take until this transaction ends. Only then is the previous
  row's hash read and both columns set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, Text, cast, text, type_coerce
from sqlalchemy import select as select_rows
from sqlmodel import Session, col, select

from monitor.db.tables import AuditEvent
from monitor.db.upsert import driver
from monitor.domain.audit import event_hash

#: The actor of what the product does by itself (a daily run, a lab file ingested by a job).
SYSTEM = "monitor"

#: pg_advisory_xact_lock key: audit events are appended by one transaction at a time.
CHAIN_LOCK_KEY = 0x6D6F6E6175646974  # "monaudit"

#: Events read per query by `verify_chain`: a trail of millions is never in memory at once.
BATCH = 10_000

ALTERED, AFTER_GAP, UNSEALED = "altered", "after_gap", "unsealed"


def audit(session: Session, *, actor: str, action: str, entity: str, entity_id: int | None,
          now: datetime, **detail: Any) -> None:
    """Record who did what, by internal id only (never names, MRNs or values), chained to the
    newest event. Written (flushed) at once, in the caller's transaction; on PostgreSQL the chain
    stays locked until that transaction ends."""
    event = AuditEvent(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                       detail=json.loads(json.dumps(detail)))  # hashed as it reads back
    _, sqlite_ = driver(session)
    if sqlite_:
        session.add(event)
        session.flush()  # the INSERT takes the write lock: nobody else appends until commit
        _seal(event, _hash_before(session, event.id))
    else:
        lock_chain(session)
        _seal(event, _hash_before(session, None))
        session.add(event)
    session.flush()


def lock_chain(session: Session) -> None:
    """On PostgreSQL, hold the chain for this transaction: other writers of audit events wait."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY})


def chain_head(session: Session) -> str | None:
    """The hash the next events chain to, for a writer that inserts many at once, with the chain
    held until this transaction ends. On PostgreSQL the advisory lock is taken first. On SQLite
    the transaction must hold the write lock already, because it has written (sqlite3 begins a
    transaction only before a write, so being in one means the lock is held): otherwise another
    connection could append between this read and the insert, and that is a bug here."""
    raw, sqlite_ = driver(session)
    if not sqlite_:
        lock_chain(session)
    elif not raw.in_transaction:
        raise RuntimeError("chain_head on SQLite needs a transaction that has written already")
    return _hash_before(session, None)


def _seal(event: AuditEvent, prev_hash: str | None) -> None:
    event.prev_hash = prev_hash
    event.hash = event_hash(prev_hash, event.at, event.actor, event.action, event.entity, event.entity_id,
                            event.detail)


def _hash_before(session: Session, below: int | None) -> str | None:
    """The hash of the event with the greatest id (below `below`); None when there is none."""
    query = select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)
    if below is not None:
        query = query.where(col(AuditEvent.id) < below)
    return session.exec(query).first()


@dataclass(frozen=True)
class Break:
    """The first event where the chain does not hold: its id, action and time, never its content."""

    id: int
    action: str
    at: datetime | None  # None when the stored time itself cannot be read
    kind: str  # ALTERED, AFTER_GAP or UNSEALED
    previous_id: int | None  # the event before it in id order


@dataclass(frozen=True)
class ChainCheck:
    events: int  # read, up to and including the first break
    first_break: Break | None
    #: The id and hash of the newest event when the chain is intact. Deleting the newest events
    #: leaves an intact chain: only these, kept elsewhere from an earlier check, show it.
    newest: tuple[int, str] | None = None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify_chain(session: Session, *, batch: int = BATCH) -> ChainCheck:
    """Walk every audit event in id order, a batch at a time, and stop at the first that is not
    what was written: content that no longer matches its hash (ALTERED), a prev_hash that is not
    the hash of the event before it (AFTER_GAP: that one was deleted or altered), no hash at all
    (UNSEALED)."""
    events, previous, previous_id = 0, None, None
    for row in _events(session, batch):
        events += 1
        id_, at, _, action, _, _, _, _, hashed = row
        kind = _fault(row, previous)
        if kind is not None:
            return ChainCheck(events, Break(id_, action, _instant(at), kind, previous_id))
        previous, previous_id = hashed, id_
    return ChainCheck(events, None, None if previous_id is None or previous is None else (previous_id, previous))


def _events(session: Session, batch: int) -> Iterator[Sequence[Any]]:
    """Every event in id order, `batch` per query (keyset: id above the last one read). The time
    and the detail come as stored text, so a row edited into nonsense reads as altered."""
    e = AuditEvent
    columns = select_rows(col(e.id), type_coerce(e.at, String).label("at"), col(e.actor), col(e.action),
                          col(e.entity), col(e.entity_id), cast(col(e.detail), Text).label("detail"),
                          col(e.prev_hash), col(e.hash)).order_by(col(e.id)).limit(batch)
    last = None
    while True:
        query = columns if last is None else columns.where(col(e.id) > last)
        rows = session.connection().execute(query).all()  # Core rows: no ORM work per row
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1].id


def _fault(row: Sequence[Any], previous: str | None) -> str | None:
    """What is wrong with one event, given the hash of the one before it; None when nothing is.
    Content first: an event whose own prev_hash was edited is ALTERED, not AFTER_GAP."""
    _, at, actor, action, entity, entity_id, detail, prev_hash, hashed = row
    if hashed is None:
        return UNSEALED
    instant = _instant(at)
    try:  # on SQLite a column can be edited into any type: anything unreadable is altered
        content = None if instant is None else event_hash(
            prev_hash, instant, actor, action, entity, entity_id, None if detail is None else json.loads(detail))
    except (TypeError, ValueError):
        content = None
    if content != hashed:
        return ALTERED
    return AFTER_GAP if prev_hash != previous else None


def _instant(raw: Any) -> datetime | None:
    """A stored time as UTCDateTime reads it (SQLite: UTC wall-clock text; PostgreSQL: an aware
    datetime); None when it is not a time any more."""
    if isinstance(raw, datetime):
        return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC) if isinstance(raw, str) else None
    except ValueError:
        return None
