"""Replay quarantined records after a mapping fix or an enrollment."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from monitor.db.tables import HeldResult, LabResult, Patient, Quarantine
from monitor.db.upsert import insert_ignore
from monitor.ingest import csv_reader, fhir_reader, hl7_reader
from monitor.ingest.records import Record, Unreadable
from monitor.services.ingest import ingest_records, mark_for_review
from monitor.services.patients import audit
from monitor.services.prepare import Context


@dataclass
class ReplayReport:
    replayed: int = 0
    still_quarantined: int = 0


def _record(q: Quarantine, ctx: Context) -> Record:
    options = ctx.read_options
    if q.format == "hl7":
        return hl7_reader.from_raw(q.raw, q.origin, options)
    if q.format == "fhir":
        return fhir_reader.from_raw(q.raw, q.origin, options, ctx.catalog)
    if q.format in ("csv", "synthea-csv"):
        try:
            row = json.loads(q.raw)
        except ValueError:
            row = None
        if isinstance(row, dict):
            return csv_reader.from_row(q.format, row, q.origin, ctx.clinic_zone)
    return Unreadable(q.format, q.origin, q.raw, q.reason)


def _replay_held(session: Session, q: Quarantine) -> bool:
    held = HeldResult.model_validate_json(q.raw)
    patient_id = session.exec(select(Patient.id).where(Patient.mrn == held.mrn)).first()
    if patient_id is None:
        return False
    row = held.model_dump(exclude={"id", "mrn", "expires_on"})
    insert_ignore(session, LabResult, [{**row, "patient_id": patient_id}], ["source_key"])
    mark_for_review(session, {patient_id: held.observed_on})
    return True


def replay(session: Session, ctx: Context, *, actor: str, now: datetime) -> ReplayReport:
    report = ReplayReport()
    for q in session.exec(select(Quarantine).where(Quarantine.status == "open")
                          .order_by(col(Quarantine.id))).all():
        if q.format == "held":
            ok = _replay_held(session, q)
            if not ok:
                report.still_quarantined += 1
                continue
        else:
            # Free the record's key so that, if it fails again, a fresh row carries today's reason.
            q.record_key = f"replayed:{q.id}"
            session.flush()
            ok = ingest_records(session, [_record(q, ctx)], ctx).quarantined == 0
        q.status, q.resolved_at = ("replayed" if ok else "requarantined"), now
        report.replayed += ok
        report.still_quarantined += not ok
        session.commit()
    audit(session, actor=actor, action="quarantine-replay", entity="quarantine", entity_id=None, now=now,
          replayed=report.replayed, still=report.still_quarantined)
    session.commit()
    return report
