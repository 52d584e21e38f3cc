"""Messages from live feeds, a group at a time: every message of a group is stored, ingested and
marked in one transaction, and its ACK is built only once that transaction is committed.

One commit for a group of messages (group commit) instead of one per message is what lets the
MLLP listener keep up with a busy lab: the commit, synced to disk, is the slow step. Each message
has its own savepoint, so one that fails is rolled back alone and kept as `failed` (AR) while the
others of its group are stored; a group that cannot be committed at all is stored again one
message at a time. The same message sent twice in a group is two rows, its results stored once,
exactly as when it is sent twice one after the other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from monitor.db.tables import InboundMessage
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.mllp import NOT_STORED, SEGMENT_SEQUENCE, ack, control_id
from monitor.ingest.records import Unreadable, storable_text
from monitor.services.daily import evaluate_patients
from monitor.services.ingest import stage_records
from monitor.services.prepare import Context
from monitor.services.review import mark_patients

log = logging.getLogger(__name__)

#: A message stored but not (or not successfully) processed yet: sent again, it is the same row,
#: and the listener processes it at its start (`reconcile`).
UNFINISHED = ("received", "failed")
CONTROL_ID_MAX = 64  # InboundMessage.control_id
#: How often a group waits for SQLite's write lock (each wait is the busy timeout, 30 s) before
#: its messages are answered AR: a daily cycle's batch holds the lock for seconds, not minutes.
LOCK_TRIES = 10

# Statements built once (a group runs them for every message): Core, on the session's connection.
_TABLE = InboundMessage.__table__  # type: ignore[attr-defined]
_NEW = {dialect: insert(_TABLE).on_conflict_do_nothing(index_elements=["digest"]).returning(_TABLE.c.id)
        for dialect, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}
_SAME = select(_TABLE.c.id).where(_TABLE.c.digest == bindparam("digest"))
_MARK = (update(_TABLE).where(_TABLE.c.id == bindparam("message_id"))
         .values(status=bindparam("status"), ack_code=bindparam("ack_code"), detail=bindparam("detail")))
#: A finished message no longer holds its digest: sent again, it is a new row.
_FINISH = _MARK.values(digest=None)


@dataclass(frozen=True)
class _Message:
    id: int
    channel: str
    raw: str


@dataclass
class _Handled:
    """A message handled in its group's transaction: its ACK, and the patients with a critical
    result, to evaluate once the group is committed."""

    reply: str
    message: _Message | None = None
    critical: set[int] = field(default_factory=set)
    detail: dict[str, Any] = field(default_factory=dict)
    touched: dict[int, date] = field(default_factory=dict)  # patients with new input, from which day


class StillLocked(Exception):
    """SQLite's write lock stayed with another process for `LOCK_TRIES` busy timeouts."""


def receive_messages(session: Session, texts: Sequence[str], *, ctx: Context, channel: str) -> list[str]:
    """Store, ingest and acknowledge HL7 v2 messages in one transaction; their ACK texts, in order.

    AA: every record was stored, held, ignored or quarantined. AE: the message could not be read
    as a result message at all (it is kept, with the reason, for review). AR: an empty frame or a
    header alone (nothing to read), or processing failed (the message is kept as `failed` and
    processed again when it is sent again or the listener starts), or it could not be stored at
    all (nothing kept: the sender sends it again). No ACK is built before the commit that made its
    message durable, and a critical result's patient is evaluated before it, as for a lone message.
    If the group cannot be committed, each of its messages is stored alone.
    """
    replies: list[str] = []  # of the messages committed so far
    try:
        _in_transactions(session, [_receiving(text, ctx, channel) for text in texts], ctx, replies)
        return replies
    except StillLocked:
        session.rollback()
        log.error("the database stayed locked; %s inbound messages answered AR", len(texts) - len(replies))
    except Exception as e:
        session.rollback()
        rest = texts[len(replies):]
        if len(rest) > 1:
            log.warning("%s inbound messages could not be committed together (%s); each is stored alone",
                        len(rest), type(e).__name__)
            return replies + [reply for text in rest for reply in receive_messages(session, [text], ctx=ctx,
                                                                                      channel=channel)]
        log.error("an inbound message could not be stored (%s); answered AR", type(e).__name__)
    return replies + [ack(text, "AR", NOT_STORED, now=ctx.now) for text in texts[len(replies):]]


_Step = Callable[[Session, dict[int, date]], "_Handled"]


def _receiving(text: str, ctx: Context, channel: str) -> _Step:
    """How one message is handled inside its group's transaction: stored, then processed."""

    def step(session: Session, touched: dict[int, date]) -> _Handled:
        if problem := _nothing_to_read(text):
            if text.strip():
                _store(session, text, ctx, channel, status="rejected", ack_code="AR")
            return _Handled(ack(text, "AR", problem, now=ctx.now, error=SEGMENT_SEQUENCE))
        return _process(session, touched, message=_store(session, text, ctx, channel), ctx=ctx)

    return step


def _process(session: Session, touched: dict[int, date], *, message: _Message, ctx: Context) -> _Handled:
    """Ingest a stored message in its own savepoint. If that fails, what it did is rolled back,
    the message is kept as `failed` (AR), and the rest of its group goes on."""
    _savepoint(session, "SAVEPOINT message")
    try:
        handled = _ingest(session, message, ctx)
        session.flush()  # a retracted result's row
        _savepoint(session, "RELEASE SAVEPOINT message")
    except Exception as e:  # one message's failure must not stop the feed: kept, tried again, answered
        _savepoint(session, "ROLLBACK TO SAVEPOINT message")
        session.expire_all()  # rows it read are read again
        log.error("inbound message %s could not be processed (%s); kept as failed", message.id, type(e).__name__)
        _mark(session, message, "failed", "AR", {"error": type(e).__name__})
        return _Handled(ack(message.raw, "AR", f"internal error ({type(e).__name__}); the message is kept (inbound "
                            f"message {message.id}) and processed again when it is sent again", now=ctx.now))
    for patient_id, day in handled.touched.items():
        touched[patient_id] = min(day, touched.get(patient_id, day))
    return handled


def _savepoint(session: Session, statement: str) -> None:
    """A savepoint statement sent to the database as it is: SQLAlchemy's own savepoints (ORM or
    Core) cost a tenth of a message's time, and nothing here needs them tracked."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    raw.execute(statement)


def _in_transactions(session: Session, steps: Sequence[_Step], ctx: Context, replies: list[str]) -> None:
    """Run `steps` in one transaction, mark their patients for review, commit, and add their ACKs
    to `replies`. A message with a critical result ends its transaction (the rest go on in the
    next): its patients are evaluated once it is committed, seeing the messages before it and none
    after, exactly as when each message is its own transaction."""
    handled: list[_Handled] = []
    touched: dict[int, date] = {}
    for n, step in enumerate(steps):
        if not handled:
            _write_lock(session)
        handled.append(step(session, touched))
        if handled[-1].critical or n == len(steps) - 1:
            mark_patients(session, touched)  # once, in id order, as the daily cycle locks them (PostgreSQL)
            session.commit()
            replies.extend(h.reply for h in handled)
            _evaluate_critical(session, handled[-1], ctx)
            handled, touched = [], {}


def _write_lock(session: Session) -> None:
    """Begin the group's transaction. On SQLite: take the write lock now (a daily cycle's batch may
    hold it: wait for it, up to `LOCK_TRIES` busy timeouts), and sync each commit to disk
    (synchronous=FULL), since its ACK tells the sender it may forget the message."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    connection.exec_driver_sql("PRAGMA synchronous=FULL")
    for tries in range(1, LOCK_TRIES + 1):
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as e:
            if not str(getattr(e.orig, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
                raise
            if tries == LOCK_TRIES:
                raise StillLocked from None
            log.warning("the database is locked by another process (a daily cycle's batch?); inbound messages "
                        "wait for it")


def _nothing_to_read(text: str) -> str:
    """Why a frame holds no message to read (empty, or an MSH and nothing else), or ""."""
    segments = [s for s in text.replace("\n", "\r").split("\r") if s.strip(" \t\ufeff")]
    if not segments:
        return "the frame is empty: it holds no message"
    if len(segments) == 1 and segments[0].lstrip("\ufeff").startswith("MSH"):
        return "the message has an MSH segment and nothing else: no results to read"
    return ""


def _store(session: Session, text: str, ctx: Context, channel: str, *, status: str = "received",
           ack_code: str | None = None) -> _Message:
    """The message's row: the unfinished row of the same text if there is one, else a new one."""
    digest = hashlib.sha256(text.encode()).hexdigest() if status in UNFINISHED else None
    cid, raw = control_id(text), storable_text(text)
    row = {"channel": channel, "received_at": ctx.now, "raw": raw, "status": status, "ack_code": ack_code,
           "detail": {}, "digest": digest, "control_id": cid if cid and len(cid) <= CONTROL_ID_MAX else None}
    connection = session.connection()
    message_id = (connection.execute(_NEW[connection.dialect.name], row).scalar()
                  or connection.execute(_SAME, {"digest": digest}).scalar_one())
    return _Message(message_id, channel, raw)


def _ingest(session: Session, message: _Message, ctx: Context) -> _Handled:
    """Ingest a stored message and mark it processed (AA) or rejected (AE)."""
    records = list(read_text(message.raw, f"{message.channel}:{message.id}", ctx.read_options, ctx.catalog))
    unreadable = [r for r in records if isinstance(r, Unreadable)]
    staged = stage_records(session, records, ctx)
    whole_message_bad = bool(records) and len(unreadable) == len(records) and not staged.report.stored
    code = "AE" if whole_message_bad else "AA"
    detail = staged.report.as_dict()
    _mark(session, message, "rejected" if whole_message_bad else "processed", code, detail)
    return _Handled(ack(message.raw, code, unreadable[0].reason if whole_message_bad else "", now=ctx.now),
                    message, staged.critical, detail, staged.touched)


def _mark(session: Session, message: _Message, status: str, ack_code: str, detail: dict[str, Any]) -> None:
    """Record how the message ended; a finished message no longer holds its digest (sent again, it is new)."""
    session.connection().execute(_MARK if status in UNFINISHED else _FINISH,
                                 {"message_id": message.id, "status": status, "ack_code": ack_code, "detail": detail})


def _evaluate_critical(session: Session, handled: _Handled, ctx: Context) -> None:
    """Evaluate now (committed) the patients of a message's critical results, and count the
    critical flags that raised in its detail. If that fails, it is logged by message id: the
    result is stored and its patient marked, so the daily cycle evaluates it."""
    if ctx.library is None or not handled.critical or handled.message is None:
        return
    try:
        flags = evaluate_patients(session, ctx.library, handled.critical, today=ctx.today, now=ctx.now,
                                  mail=ctx.mail)
        if flags:
            _mark(session, handled.message, "processed", "AA", handled.detail | {"critical_flags": flags})
            session.commit()
    except Exception as e:
        session.rollback()
        log.error("the patients of inbound message %s could not be evaluated now (%s); the daily cycle will",
                  handled.message.id, type(e).__name__)


def reconcile(session: Session, *, ctx: Context, channel: str) -> int:
    """Process every message of `channel` left unfinished (received, or failed) by an earlier run,
    oldest first, each once and alone; nobody waits for their ACKs. Returns how many there were."""
    rows = session.execute(select(_TABLE.c.id, _TABLE.c.raw).where(
        _TABLE.c.channel == channel, _TABLE.c.status.in_(UNFINISHED)).order_by(_TABLE.c.id)).all()
    session.rollback()  # the write transaction begins with its lock
    for message_id, raw in rows:
        assert message_id is not None
        _in_transactions(session, [partial(_process, message=_Message(message_id, channel, raw), ctx=ctx)], ctx, [])
    return len(rows)
