"""Replay quarantined records after a mapping fix or an enrollment."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, func, select

from monitor.db.tables import LabResult, Patient, Quarantine, ResultColumns
from monitor.db.upsert import insert_ignore, select_in
from monitor.ingest import csv_reader, fhir_reader, hl7_reader
from monitor.ingest.records import Record, Skipped, Unreadable, record_key
from monitor.services.audit import audit
from monitor.services.ingest import ingest_records
from monitor.services.prepare import Context
from monitor.services.quarantine_rows import raw_texts
from monitor.services.review import mark_patients


@dataclass
class ReplayReport:
    replayed: int = 0
    still_quarantined: int = 0


def _record(q: Quarantine, raw: str, ctx: Context) -> Record:
    """The record quarantined as `q`, read again from its whole raw text."""
    options = ctx.read_options
    if q.format == "hl7":
        return hl7_reader.from_raw(raw, q.origin, options, ctx.catalog)
    if q.format == "fhir":
        return fhir_reader.from_raw(raw, q.origin, options, ctx.catalog)
    if q.format in ("csv", "synthea-csv"):
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if isinstance(row, dict):
            return csv_reader.from_quarantine(q.format, row, q.origin, ctx.clinic_zone, ctx.catalog)
    return Unreadable(q.format, q.origin, raw, q.reason)


class _ExpiredHeld(ResultColumns):
    """The raw text of an expired held result (`daily.expire_held`), read back with its types: a
    table model (HeldResult) would not validate it, leaving instants and dates as text."""

    mrn: str
    expires_on: date


def _replay_held(session: Session, q: Quarantine) -> bool:
    held = _ExpiredHeld.model_validate_json(q.raw)
    patient_id = session.exec(select(Patient.id).where(Patient.mrn == held.mrn)).first()
    if patient_id is None:
        return False
    row = held.model_dump(exclude={"id", "mrn", "expires_on"})
    insert_ignore(session, LabResult, [{**row, "patient_id": patient_id}], ["source_key"])
    mark_patients(session, {patient_id: held.observed_on})
    return True


#: Quarantined records replayed together: one ingestion (lookups, inserts, commit) for them all.
PAGE = 1000


def replay(session: Session, ctx: Context, *, actor: str, now: datetime,
           progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Ingest every open quarantined record again, `PAGE` at a time in quarantine order. Each ends
    `replayed`, or stays `open` with its row updated (attempts, last reason, last tried), or (read
    again as another text) `requarantined`, the row of that text carrying it. Records quarantined
    during the replay wait for the next one. `progress(done, total)` after each page."""
    report = ReplayReport()
    is_open = col(Quarantine.status) == "open"
    total = session.exec(select(func.count()).select_from(Quarantine).where(is_open)).one()
    last = session.exec(select(func.max(Quarantine.id)).where(is_open)).one() or 0
    after = done = 0
    while page := session.exec(select(Quarantine).where(is_open, col(Quarantine.id) > after,
                                                        col(Quarantine.id) <= last)
                               .order_by(col(Quarantine.id)).limit(PAGE)).all():
        after = page[-1].id or after
        for q, status in zip(page, _replay_page(session, ctx, page), strict=True):
            if status != "open":
                q.status, q.resolved_at = status, now
            elif q.format == "held":  # the others' rows were updated as they failed again
                q.attempts, q.last_tried_at = q.attempts + 1, ctx.now
            report.replayed += status == "replayed"
            report.still_quarantined += status != "replayed"
        session.commit()
        done += len(page)
        if progress is not None:
            progress(done, total)
    audit(session, actor=actor, action="quarantine-replay", entity="quarantine", entity_id=None, now=now,
          replayed=report.replayed, still=report.still_quarantined)
    session.commit()
    return report


def _replay_page(session: Session, ctx: Context, page: Sequence[Quarantine]) -> list[str]:
    """Each record's new status: `replayed` (stored, held, a duplicate or ignored this time), still
    `open` (it failed again: its row now says so; or an expired held result whose patient is not
    enrolled yet), or `requarantined` (it now reads as another text, whose row has it)."""
    outcomes = {q.id: "replayed" if _replay_held(session, q) else "open" for q in page if q.format == "held"}
    others = [q for q in page if q.format != "held"]
    records = [_record(q, raw, ctx) for q, raw in zip(others, raw_texts(session, others), strict=True)]
    # A record that fails again lands on the row of its raw text (quarantine_rows.keep): its attempts grow.
    keys = [None if isinstance(r, Skipped) else record_key(r.format, r.raw) for r in records]
    before = _attempts(session, keys)
    ingest_records(session, records, ctx)
    after = _attempts(session, keys)
    for q, key in zip(others, keys, strict=True):
        failed = key is not None and after.get(key, 0) > before.get(key, 0)
        outcomes[q.id] = "replayed" if not failed else "open" if key == q.record_key else "requarantined"
    return [outcomes[q.id] for q in page]


def _attempts(session: Session, keys: Sequence[str | None]) -> dict[str, int]:
    wanted = {k for k in keys if k is not None}
    return dict(select_in(session, Quarantine, ("record_key", "attempts"), "record_key", wanted)) if wanted else {}
