"""Store lab records: map code, convert unit, match patient, dedupe; quarantine the rest.

Nothing is dropped: every record ends stored, duplicate, corrected, held, ignored or quarantined,
and the report counts each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, HeldResult, LabResult, Patient, Quarantine
from monitor.db.upsert import bulk_insert_ignore, insert_ignore
from monitor.domain.analytes import Catalog, UnitProblem
from monitor.domain.snapshot import Result
from monitor.domain.thresholds import ctcae_grade
from monitor.ingest.records import (
    IncomingResult,
    ReadOptions,
    Record,
    Skipped,
    Unreadable,
    parse_number,
    record_key,
)
from monitor.ingest.units import ucum_factor
from monitor.protocols import Library

BATCH = 2000
MRN_MAX = 64


@dataclass
class IngestReport:
    stored: int = 0
    duplicate: int = 0
    corrected: int = 0
    retracted: int = 0
    held: int = 0
    ignored: int = 0
    quarantined: int = 0
    critical_flags: int = 0  # critical flags raised during ingestion
    already_quarantined: int = 0  # of `quarantined`, records that were there from an earlier run
    reasons: Counter[str] = field(default_factory=Counter)  # quarantine reason (no values)

    @property
    def total(self) -> int:
        return (self.stored + self.duplicate + self.corrected + self.retracted + self.held + self.ignored
                + self.quarantined)

    def add(self, other: IngestReport) -> None:
        for name in ("stored", "duplicate", "corrected", "retracted", "held", "ignored", "quarantined",
                     "already_quarantined", "critical_flags"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicate": self.duplicate, "corrected": self.corrected,
                "retracted": self.retracted,
                "held": self.held, "ignored": self.ignored, "quarantined": self.quarantined,
                "already_quarantined": self.already_quarantined, "critical_flags": self.critical_flags,
                "quarantine_reasons": dict(self.reasons)}


@dataclass(frozen=True)
class Context:
    catalog: Catalog
    clinic_zone: ZoneInfo
    hold_days: int
    now: datetime
    #: With the protocols at hand, a result in a critical band is evaluated at once, not at the
    #: next daily cycle (its flag is raised during ingestion, whatever the route).
    library: Library | None = None
    #: How feeds identify patients (replaying quarantined HL7/FHIR records needs it).
    options: ReadOptions | None = None

    @property
    def today(self) -> date:
        return self.now.astimezone(self.clinic_zone).date()


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


class _Batch:
    def __init__(self, session: Session, ctx: Context) -> None:
        self.session, self.ctx = session, ctx
        self.report = IngestReport()
        self.quarantine: list[dict[str, Any]] = []
        self.critical: set[int] = set()  # patients with a new result in a critical band

    def reject(self, fmt: str, origin: str, raw: str, reason: str, kind: str) -> None:
        self.report.quarantined += 1
        self.report.reasons[kind] += 1
        self.quarantine.append({
            "record_key": record_key(fmt, raw), "format": fmt, "origin": origin[:255], "raw": raw,
            "reason": reason, "status": "open", "created_at": self.ctx.now,
        })

    def prepare(self, r: IncomingResult) -> dict[str, Any] | None:
        """The row to store, or None after quarantining or ignoring the record."""
        analyte = self.ctx.catalog.analyte_for(r.code)
        if analyte is None:
            why = self.ctx.catalog.ignored_reason(r.code)
            if why is not None:
                self.report.ignored += 1
                return None
            self.reject(r.format, r.origin, r.raw,
                        f"code {r.code!r} is not mapped to a monitored analyte; add it to "
                        "config/analytes.toml (local_codes or not_monitored), then replay",
                        "unmapped code")
            return None
        number = parse_number(r.value)
        if number is None:
            self.reject(r.format, r.origin, r.raw,
                        f"{analyte.key} value {r.value!r} is not a number", "non-numeric value")
            return None
        try:
            factor = self.ctx.catalog.conversion(analyte, r.unit).factor
        except UnitProblem as e:
            ucum = ucum_factor(r.unit, analyte.unit)  # valid UCUM of the same dimension converts too
            if ucum is None:
                self.reject(r.format, r.origin, r.raw, str(e), "unit")
                return None
            factor = ucum
        try:
            value = self.ctx.catalog.to_canonical(analyte, number, r.unit, factor)
        except UnitProblem as e:
            self.reject(r.format, r.origin, r.raw, str(e), "unit")
            return None
        return {
            "source_key": r.source_key[:255], "source": r.format.split("-")[-1], "analyte": analyte.key,
            "code": r.code[:32], "raw_value": r.value[:64], "raw_unit": r.unit[:64], "value": value,
            "unit": analyte.unit, "status": r.status, "observed_at": r.observed_at,
            "observed_on": r.observed_at.astimezone(self.ctx.clinic_zone).date(),
            "received_at": self.ctx.now,
            "ref_low": None if r.ref_low is None else round(r.ref_low * factor, 6),
            "ref_high": None if r.ref_high is None else round(r.ref_high * factor, 6),
        }

    def run(self, chunk: list[Record]) -> dict[int, date]:
        """Process one chunk; return patients with new or corrected results, and the earliest
        day those results were observed."""
        pending: list[tuple[IncomingResult, dict[str, Any]]] = []
        retractions: list[IncomingResult] = []
        for record in chunk:
            if isinstance(record, Skipped):
                self.report.ignored += 1
            elif isinstance(record, Unreadable):
                self.reject(record.format, record.origin, record.raw, record.reason, "unreadable")
            elif record.status == "retracted":
                retractions.append(record)
            elif len(record.mrn) > MRN_MAX:
                self.reject(record.format, record.origin, record.raw,
                            f"patient identifier is {len(record.mrn)} characters; at most {MRN_MAX} are stored",
                            "patient identifier")
            else:
                row = self.prepare(record)
                if row is not None:
                    pending.append((record, row))
        touched = self._store(pending)
        for patient_id, day in self._retract(retractions).items():
            _earliest(touched, patient_id, day)
        new = insert_ignore(self.session, Quarantine, self.quarantine, ["record_key"])
        self.report.already_quarantined += len(self.quarantine) - new
        self.quarantine = []
        return touched

    def _retract(self, records: list[IncomingResult]) -> dict[int, date]:
        """A cancelled or entered-in-error result withdraws the one received under its key: kept,
        marked `retracted`, and no longer used by the engine."""
        touched: dict[int, date] = {}
        for record in records:
            key = record.source_key[:255]
            found = self.session.exec(select(LabResult).where(LabResult.source_key == key)).first()
            held = None if found else self.session.exec(select(HeldResult).where(HeldResult.source_key == key)).first()
            row = found or held
            if row is None or row.status == "retracted":
                self.report.ignored += 1  # nothing (left) to withdraw
                continue
            row.status, row.received_at = "retracted", self.ctx.now
            self.session.add(row)
            self.report.retracted += 1
            if found is not None:
                _earliest(touched, found.patient_id, found.observed_on)
        return touched

    def _screen(self, patient_id: int, row: dict[str, Any]) -> None:
        """Note the patient if this result is critical under any protocol's grading."""
        library = self.ctx.library
        if library is None or row["status"] not in ("final", "corrected"):
            return
        graders = [p for p in library.graders if row["analyte"] in p.grading.terms]
        if not graders:
            return
        fallback = self.ctx.catalog.analytes[row["analyte"]].reference
        low = row["ref_low"] if row["ref_low"] is not None else fallback.low
        high = row["ref_high"] if row["ref_high"] is not None else fallback.high
        if low is not None and high is not None and low <= row["value"] <= high:
            return  # inside the reference range: no CTCAE grade at all, let alone a critical one
        result = Result(0, row["analyte"], row["value"], row["observed_on"], row["status"], row["ref_low"],
                        row["ref_high"])
        for protocol in graders:
            grade = ctcae_grade(result, protocol)
            if grade is not None and grade >= protocol.grading.critical_min_grade:
                self.critical.add(patient_id)
                return

    def _store(self, pending: list[tuple[IncomingResult, dict[str, Any]]]) -> dict[int, date]:
        s = self.session
        mrns = {r.mrn for r, _ in pending}
        patients = dict(s.exec(select(Patient.mrn, Patient.id).where(col(Patient.mrn).in_(mrns))).all())
        keys = [row["source_key"] for _, row in pending]
        stored = {k: (i, v) for k, i, v in s.exec(
            select(LabResult.source_key, LabResult.id, LabResult.value)
            .where(col(LabResult.source_key).in_(keys))).all()}
        held = {k: v for k, v in s.exec(
            select(HeldResult.source_key, HeldResult.value).where(col(HeldResult.source_key).in_(keys))).all()}
        new_results: list[dict[str, Any]] = []
        new_held: list[dict[str, Any]] = []
        touched: dict[int, date] = {}
        for record, row in pending:
            key = row["source_key"]
            previous = stored.get(key)
            if previous is None and key in held:
                previous = (None, held[key])
            if previous is not None:
                if previous[1] == row["value"]:
                    self.report.duplicate += 1
                elif record.status == "corrected" and previous[0] is not None:
                    s.execute(update(LabResult).where(col(LabResult.id) == previous[0]).values(
                        value=row["value"], raw_value=row["raw_value"], status="corrected",
                        received_at=self.ctx.now))
                    stored[key] = (previous[0], row["value"])
                    _earliest(touched, patients[record.mrn] or 0, row["observed_on"])
                    self._screen(patients[record.mrn] or 0, row)
                    self.report.corrected += 1
                elif record.status == "corrected":  # a correction of a result still held
                    s.execute(update(HeldResult).where(col(HeldResult.source_key) == key).values(
                        value=row["value"], raw_value=row["raw_value"], status="corrected",
                        received_at=self.ctx.now))
                    held[key] = row["value"]
                    self.report.corrected += 1
                else:
                    self.reject(record.format, record.origin, record.raw,
                                f"conflicts with the {row['analyte']} result already received under "
                                "the same source key; send it with status C to correct it",
                                "conflicting re-delivery")
                continue
            patient_id = patients.get(record.mrn)
            if patient_id is None:
                expires = row["observed_on"] + timedelta(days=self.ctx.hold_days)
                row["mrn"], row["expires_on"] = record.mrn, max(expires, self.ctx.today)
                new_held.append(row)
                held[key] = row["value"]
            else:
                row["patient_id"] = patient_id
                new_results.append(row)
                stored[key] = (None, row["value"])
                _earliest(touched, patient_id, row["observed_on"])
                self._screen(patient_id, row)
        self.report.stored += bulk_insert_ignore(s, LabResult, new_results, ["source_key"])
        self.report.held += bulk_insert_ignore(s, HeldResult, new_held, ["source_key"])
        return touched


def mark_for_review(session: Session, changed_from: dict[int, date]) -> None:
    """New input about a patient from a date on: their active enrollments are evaluated by the
    first daily cycle on or after that date."""
    by_day: dict[date, list[int]] = {}
    for patient_id, day in changed_from.items():
        by_day.setdefault(day, []).append(patient_id)
    for day, ids in by_day.items():
        session.execute(
            update(Enrollment)
            .where(col(Enrollment.patient_id).in_(ids), col(Enrollment.status) == "active",
                   col(Enrollment.next_review_on) > day)
            .values(next_review_on=day)
        )


def _earliest(into: dict[int, date], patient_id: int, day: date) -> None:
    into[patient_id] = min(day, into.get(patient_id, day))


def ingest_records(
    session: Session,
    records: Iterable[Record],
    ctx: Context,
    *,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store every record; commit per batch so memory stays flat and work is kept."""
    report = IngestReport()
    for chunk in _chunks(records, BATCH):
        batch = _Batch(session, ctx)
        touched = batch.run(chunk)
        mark_for_review(session, touched)
        session.commit()
        if batch.critical and ctx.library is not None:
            from monitor.services.daily import evaluate_patients

            batch.report.critical_flags = evaluate_patients(session, ctx.library, batch.critical,
                                                            today=ctx.today, now=ctx.now)
            session.commit()
        report.add(batch.report)
        if progress is not None:
            progress(len(chunk))
    return report
