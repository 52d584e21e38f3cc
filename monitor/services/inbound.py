"""Messages from live feeds: store the raw message first, then ingest it, then say how to ACK."""

from __future__ import annotations

import hashlib
import logging

from sqlmodel import Session, col, select

from monitor.db.tables import InboundMessage
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.mllp import SEGMENT_SEQUENCE, ack, control_id
from monitor.ingest.records import Unreadable
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
           ack_code: str | None = None) -> InboundMessage:
    """The message's row, committed: the unfinished row of the same text if there is one, else a new one."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    inbound = session.exec(select(InboundMessage).where(col(InboundMessage.digest) == digest,
                                                        col(InboundMessage.status).in_(UNFINISHED))
                           .order_by(col(InboundMessage.id)).limit(1)).first()
    if inbound is None:
        cid = control_id(text)
        inbound = InboundMessage(channel=channel, received_at=ctx.now, raw=_storable(text), status=status,
                                 ack_code=ack_code, digest=digest if status in UNFINISHED else None,
                                 control_id=cid if cid and len(cid) <= CONTROL_ID_MAX else None)
        session.add(inbound)
        session.commit()
    return inbound


def _storable(text: str) -> str:
    """`text` as a database text column holds it: PostgreSQL refuses NUL characters, so each is kept
    as U+2400 (SYMBOL FOR NULL). (A private stand-in for the readers' `storable_text`.)"""
    return text.replace("\x00", "\u2400")


def process(session: Session, inbound: InboundMessage, ctx: Context) -> str:
    """Ingest a stored message and mark it processed (AA) or rejected (AE); returns the ACK text.
    If ingesting it fails, it is marked `failed` (AR) and nothing of its ingestion is kept but what
    was committed (results are stored once however often it is processed again)."""
    try:
        return _ingest(session, inbound, ctx)
    except Exception as e:  # one message's failure must not stop the feed: kept, tried again, answered
        session.rollback()
        log.error("inbound message %s could not be processed (%s); kept as failed", inbound.id, type(e).__name__)
        inbound.status, inbound.ack_code, inbound.detail = "failed", "AR", {"error": type(e).__name__}
        session.add(inbound)
        session.commit()
        return ack(inbound.raw, "AR", f"internal error ({type(e).__name__}); the message is kept (inbound message "
                   f"{inbound.id}) and processed again when it is sent again", now=ctx.now)


def _ingest(session: Session, inbound: InboundMessage, ctx: Context) -> str:
    text = inbound.raw
    records = list(read_text(text, f"{inbound.channel}:{inbound.id}", ctx.read_options, ctx.catalog))
    unreadable = [r for r in records if isinstance(r, Unreadable)]
    report = ingest_records(session, records, ctx)
    whole_message_bad = bool(records) and len(unreadable) == len(records) and not report.stored
    inbound.status = "rejected" if whole_message_bad else "processed"
    inbound.ack_code = "AE" if whole_message_bad else "AA"
    inbound.detail, inbound.digest = report.as_dict(), None
    session.add(inbound)
    session.commit()
    reason = unreadable[0].reason if whole_message_bad else ""
    return ack(text, inbound.ack_code, reason, now=ctx.now)


def reconcile(session: Session, *, ctx: Context, channel: str) -> int:
    """Process every message of `channel` left unfinished (received, or failed) by an earlier run,
    oldest first, each once; nobody waits for their ACKs. Returns how many there were."""
    ids = session.exec(select(InboundMessage.id).where(col(InboundMessage.channel) == channel,
                                                       col(InboundMessage.status).in_(UNFINISHED))
                       .order_by(col(InboundMessage.id))).all()
    for message_id in ids:
        inbound = session.get(InboundMessage, message_id)
        if inbound is not None and inbound.status in UNFINISHED:
            process(session, inbound, ctx)
    return len(ids)
