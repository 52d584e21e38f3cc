"""Messages from live feeds: store the raw message first, then ingest it, then say how to ACK."""

from __future__ import annotations

from sqlmodel import Session

from monitor.db.tables import InboundMessage
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.mllp import ack, control_id
from monitor.ingest.records import Unreadable
from monitor.services.ingest import ingest_records
from monitor.services.prepare import Context


def receive_hl7(session: Session, text: str, *, ctx: Context, channel: str) -> str:
    """Store, ingest and acknowledge one HL7 v2 message; returns the ACK text.

    AA: every record was stored, held, ignored or quarantined. AE: the message could not be read
    as a result message at all (it is kept, with the reason, for review). The raw message is
    committed before any parsing, so a crash afterwards loses nothing.
    """
    now = ctx.now
    inbound = InboundMessage(channel=channel, received_at=now, control_id=control_id(text), raw=text)
    session.add(inbound)
    session.commit()
    records = list(read_text(text, f"{channel}:{inbound.id}", ctx.read_options, ctx.catalog))
    unreadable = [r for r in records if isinstance(r, Unreadable)]
    report = ingest_records(session, records, ctx)
    whole_message_bad = bool(records) and len(unreadable) == len(records) and not report.stored
    inbound.status = "rejected" if whole_message_bad else "processed"
    inbound.ack_code = "AE" if whole_message_bad else "AA"
    inbound.detail = report.as_dict()
    session.add(inbound)
    session.commit()
    reason = unreadable[0].reason if whole_message_bad else ""
    return ack(text, inbound.ack_code, reason, now=now)
