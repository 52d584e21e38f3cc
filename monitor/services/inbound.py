"""Messages from live feeds: store the raw message first, then ingest it, then say how to ACK."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.db.tables import InboundMessage
from monitor.db.upsert import insert_ignore
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.mllp import SEGMENT_SEQUENCE, ack, control_id
from monitor.ingest.records import Unreadable, storable_text
from monitor.services.ingest import ingest_records
from monitor.services.prepare import Context

log = logging.getLogger(__name__)

#: A message stored but not (or not successfully) processed yet: sent again, it is the same row,
#: and the listener processes it at its start (`reconcile`).
UNFINISHED = ("received", "failed")
CONTROL_ID_MAX = 64  # InboundMessage.control_id


def receive_hl7(session: Session, text: str, *, ctx: Context, channel: str) -> str:
    """Store, ingest and acknowledge one HL7 v2 message; returns the ACK text.

    AA: every record was stored, held, ignored or quarantined. AE: the message could not be read
    as a result message at all (it is kept, with the reason, for review). AR: an empty frame or a
    header alone (nothing to read), or processing failed (the message is kept as `failed` and
    processed again when it is sent again or the listener starts). The raw message is committed
    before any parsing, so a crash afterwards loses nothing; a message sent again while unfinished
    is the same row, not another.
    """
    if problem := _nothing_to_read(text):
        if text.strip():
            _store(session, text, ctx, channel, status="rejected", ack_code="AR")
        return ack(text, "AR", problem, now=ctx.now, error=SEGMENT_SEQUENCE)
    return process(session, _store(session, text, ctx, channel), ctx)


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
    """The message's row, committed: the unfinished row of the same text if there is one, else a new one."""
    digest = hashlib.sha256(text.encode()).hexdigest() if status in UNFINISHED else None
    cid, raw = control_id(text), storable_text(text)
    row = {"channel": channel, "received_at": ctx.now, "raw": raw, "status": status, "ack_code": ack_code,
           "detail": {}, "digest": digest, "control_id": cid if cid and len(cid) <= CONTROL_ID_MAX else None}
    new = insert_ignore(session, InboundMessage, [row], ["digest"])
    message_id = new[0] if new else session.exec(select(InboundMessage.id).where(
        col(InboundMessage.digest) == digest)).one()
    session.commit()
    assert message_id is not None
    return _Message(message_id, channel, raw)


@dataclass(frozen=True)
class _Message:
    id: int
    channel: str
    raw: str


def process(session: Session, message: _Message, ctx: Context) -> str:
    """Ingest a stored message and mark it processed (AA) or rejected (AE); returns the ACK text.
    If ingesting it fails, it is marked `failed` (AR) and nothing of its ingestion is kept but what
    was committed (results are stored once however often it is processed again)."""
    try:
        return _ingest(session, message, ctx)
    except Exception as e:  # one message's failure must not stop the feed: kept, tried again, answered
        session.rollback()
        log.error("inbound message %s could not be processed (%s); kept as failed", message.id, type(e).__name__)
        _mark(session, message, "failed", "AR", {"error": type(e).__name__})
        return ack(message.raw, "AR", f"internal error ({type(e).__name__}); the message is kept (inbound message "
                   f"{message.id}) and processed again when it is sent again", now=ctx.now)


def _ingest(session: Session, message: _Message, ctx: Context) -> str:
    records = list(read_text(message.raw, f"{message.channel}:{message.id}", ctx.read_options, ctx.catalog))
    unreadable = [r for r in records if isinstance(r, Unreadable)]
    report = ingest_records(session, records, ctx)
    whole_message_bad = bool(records) and len(unreadable) == len(records) and not report.stored
    code = "AE" if whole_message_bad else "AA"
    _mark(session, message, "rejected" if whole_message_bad else "processed", code, report.as_dict())
    return ack(message.raw, code, unreadable[0].reason if whole_message_bad else "", now=ctx.now)


def _mark(session: Session, message: _Message, status: str, ack_code: str, detail: dict[str, Any]) -> None:
    """Record how the message ended; a finished message no longer holds its digest (sent again, it is new)."""
    session.execute(update(InboundMessage).where(col(InboundMessage.id) == message.id).values(
        status=status, ack_code=ack_code, detail=detail, digest=None if status not in UNFINISHED else
        InboundMessage.digest))
    session.commit()


def reconcile(session: Session, *, ctx: Context, channel: str) -> int:
    """Process every message of `channel` left unfinished (received, or failed) by an earlier run,
    oldest first, each once; nobody waits for their ACKs. Returns how many there were."""
    rows = session.exec(select(InboundMessage.id, InboundMessage.raw).where(
        col(InboundMessage.channel) == channel, col(InboundMessage.status).in_(UNFINISHED))
        .order_by(col(InboundMessage.id))).all()
    for message_id, raw in rows:
        assert message_id is not None
        process(session, _Message(message_id, channel, raw), ctx)
    return len(rows)
