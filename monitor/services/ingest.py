"""Store lab records: map code, convert unit, match patient, dedupe; quarantine the rest.

Each batch of records goes through two stages: `prepare` (pure Python: map the code, convert the
unit, check the value; for a large file it runs in a worker process, see `ingest_file`) and
`_store` (the database: patients, duplicates, corrections, held results, inserts). Nothing is
dropped: every record ends stored, duplicate, corrected, held, ignored or quarantined, and the
report counts each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import lru_cache, partial
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, HeldResult, LabResult, Patient, Quarantine
from monitor.db.upsert import bulk_insert_ignore, insert_ignore, select_in, temporal_encoders
from monitor.domain.analytes import Analyte, Catalog, UnitProblem
from monitor.domain.protocol import MonitoringProtocol
from monitor.domain.snapshot import Result
from monitor.domain.thresholds import ctcae_grade
from monitor.ingest.files import read_file
from monitor.ingest.records import (
    ReadOptions,
    Record,
    Skipped,
    Unreadable,
    parse_number,
    record_key,
)
from monitor.ingest.units import ucum_factor
from monitor.protocols import Library
from monitor.services.daily import evaluate_patients
from monitor.services.worker import in_worker

BATCH = 10000
MRN_MAX = 64
#: Files at least this big are read and prepared in a worker process while this one writes to
#: the database (two cores: about twice the throughput). Smaller ones are not worth its start-up.
WORKER_MIN_BYTES = 2_000_000


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
    #: What each (code, unit) maps to and each analyte's critical screen, worked out once.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.clinic_zone).date()


class Pending(NamedTuple):
    """A prepared result: what is stored (see `COLUMNS`), then where it came from."""

    source_key: str
    source: str
    analyte: str
    code: str
    raw_value: str
    raw_unit: str
    value: float
    unit: str
    status: str
    observed_at: datetime
    observed_on: date
    ref_low: float | None
    ref_high: float | None
    order_key: str | None
    mrn: str
    format: str
    origin: str
    raw_source: str | Callable[[], str]  # see IncomingResult.raw_source

    @property
    def raw(self) -> str:
        return self.raw_source if isinstance(self.raw_source, str) else self.raw_source()


COLUMNS = (*Pending._fields[:11], "received_at", "ref_low", "ref_high", "order_key")  # lab_result and held_result


@dataclass
class Prepared:
    """One batch after the `prepare` stage, ready for `_store`."""

    size: int  # records read
    report: IngestReport = field(default_factory=IngestReport)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    retractions: list[str] = field(default_factory=list)  # source keys to withdraw
    pending: list[Pending] = field(default_factory=list)

    def reject(self, fmt: str, origin: str, raw: str, reason: str, kind: str, now: datetime) -> None:
        self.report.quarantined += 1
        self.report.reasons[kind] += 1
        self.quarantine.append({
            "record_key": record_key(fmt, raw), "format": fmt, "origin": origin[:255], "raw": raw,
            "reason": reason, "status": "open", "created_at": now,
        })

    def __getstate__(self) -> tuple[Any, ...]:
        """Pickled (to or from a worker process) with every raw text built, as plain tuples: a
        NamedTuple pickles at half the speed."""
        pending = [tuple(p) if isinstance(p.raw_source, str) else (*p[:-1], p.raw) for p in self.pending]
        return self.size, self.report, self.quarantine, self.retractions, pending

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.size, self.report, self.quarantine, self.retractions, pending = state
        self.pending = list(map(Pending._make, pending))


@dataclass(frozen=True)
class _Mapping:
    """What a (code, unit) pair means: an analyte and factor, ignored, or the reason to quarantine."""

    analyte: Analyte | None = None
    factor: float = 1.0
    ignored: bool = False
    problem: str = ""
    kind: str = ""


def _mapping(catalog: Catalog, code: str, unit: str) -> _Mapping:
    analyte = catalog.analyte_for(code)
    if analyte is None:
        if catalog.ignored_reason(code) is not None:
            return _Mapping(ignored=True)
        return _Mapping(problem=f"code {code!r} is not mapped to a monitored analyte; add it to "
                        "config/analytes.toml (local_codes or not_monitored), then replay", kind="unmapped code")
    try:
        return _Mapping(analyte, catalog.conversion(analyte, unit).factor)
    except UnitProblem as e:
        factor = ucum_factor(unit, analyte.unit)  # valid UCUM of the same dimension converts too
        return _Mapping(analyte, factor) if factor is not None else _Mapping(problem=str(e), kind="unit")


@lru_cache(maxsize=8192)
def _local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def prepare(chunk: list[Record], ctx: Context) -> Prepared:
    """Map, convert and check a batch of records; no database. Rejects go to `quarantine`."""
    out = Prepared(len(chunk))
    mappings: dict[tuple[str, str], _Mapping] = ctx.memo.setdefault("mappings", {})
    catalog, zone, now = ctx.catalog, ctx.clinic_zone, ctx.now
    for r in chunk:
        if isinstance(r, Skipped):
            out.report.ignored += 1
            continue
        if isinstance(r, Unreadable):
            out.reject(r.format, r.origin, r.raw, r.reason, "unreadable", now)
            continue
        if r.status == "retracted":
            out.retractions.append(r.source_key[:255])
            continue
        if len(r.mrn) > MRN_MAX:
            out.reject(r.format, r.origin, r.raw, f"patient identifier is {len(r.mrn)} characters; at most "
                       f"{MRN_MAX} are stored", "patient identifier", now)
            continue
        m = mappings.get((r.code, r.unit))
        if m is None:
            m = mappings[(r.code, r.unit)] = _mapping(catalog, r.code, r.unit)
        if m.analyte is None:
            if m.ignored:
                out.report.ignored += 1
            else:
                out.reject(r.format, r.origin, r.raw, m.problem, m.kind, now)
            continue
        analyte, factor = m.analyte, m.factor
        number = parse_number(r.value)
        if number is None:
            out.reject(r.format, r.origin, r.raw, f"{analyte.key} value {r.value!r} is not a number",
                       "non-numeric value", now)
            continue
        try:
            value = catalog.to_canonical(analyte, number, r.unit, factor)
        except UnitProblem as e:
            out.reject(r.format, r.origin, r.raw, str(e), "unit", now)
            continue
        out.pending.append(Pending(
            r.source_key[:255], r.format.split("-")[-1], analyte.key, r.code[:32], r.value[:64], r.unit[:64],
            value, analyte.unit, r.status, r.observed_at, _local_day(r.observed_at, zone),
            None if r.ref_low is None else round(r.ref_low * factor, 6),
            None if r.ref_high is None else round(r.ref_high * factor, 6), r.order_key,
            r.mrn, r.format, r.origin, r.raw_source,
        ))
    return out


@dataclass(frozen=True)
class _Screen:
    """How to tell a critical result of one analyte: the protocols that grade it, and the
    fallback reference range (inside the range there is no CTCAE grade at all)."""

    graders: list[MonitoringProtocol]
    low: float | None
    high: float | None


class _Store:
    """The database stage of one prepared batch."""

    def __init__(self, session: Session, ctx: Context, batch: Prepared) -> None:
        self.session, self.ctx, self.batch = session, ctx, batch
        self.report = batch.report
        self.critical: set[int] = set()  # patients with a new result in a critical band
        self.touched: dict[int, date] = {}  # patients with new input, and from which day
        self.screens: dict[str, _Screen | None] = ctx.memo.setdefault("screens", {})

    def run(self) -> None:
        self._store(self.batch.pending)
        self._retract(self.batch.retractions)
        new = insert_ignore(self.session, Quarantine, self.batch.quarantine, ["record_key"])
        self.report.already_quarantined += len(self.batch.quarantine) - new

    def _retract(self, keys: list[str]) -> None:
        """A cancelled or entered-in-error result withdraws the one received under its key: kept,
        marked `retracted`, and no longer used by the engine."""
        for key in keys:
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
                _earliest(self.touched, found.patient_id, found.observed_on)

    def _screen_for(self, analyte: str) -> _Screen | None:
        library = self.ctx.library
        if library is None:
            return None
        graders = [p for p in library.graders if analyte in p.grading.terms]
        if not graders:
            return None
        fallback = self.ctx.catalog.analytes[analyte].reference
        return _Screen(graders, fallback.low, fallback.high)

    def _screen(self, patient_id: int, p: Pending) -> None:
        """Note the patient if this result is critical under any protocol's grading."""
        if p.status not in ("final", "corrected"):
            return
        if p.analyte not in self.screens:
            self.screens[p.analyte] = self._screen_for(p.analyte)
        screen = self.screens[p.analyte]
        if screen is None:
            return
        low = p.ref_low if p.ref_low is not None else screen.low
        high = p.ref_high if p.ref_high is not None else screen.high
        if low is not None and high is not None and low <= p.value <= high:
            return  # inside the reference range: no CTCAE grade at all, let alone a critical one
        result = Result(0, p.analyte, p.value, p.observed_on, p.status, p.ref_low, p.ref_high)
        for protocol in screen.graders:
            grade = ctcae_grade(result, protocol)
            if grade is not None and grade >= protocol.grading.critical_min_grade:
                self.critical.add(patient_id)
                return

    def _store(self, pending: list[Pending]) -> None:
        s, now = self.session, self.ctx.now
        patients: dict[str, int] = dict(select_in(s, Patient, ("mrn", "id"), "mrn", {p.mrn for p in pending}))
        known = self._known("source_key", [p.source_key for p in pending])
        orders = [p.order_key for p in pending if p.order_key is not None and p.source_key not in known]
        same_test = self._known("order_key", orders) if orders else {}
        new_results: list[tuple[Any, ...]] = []
        new_held: list[tuple[Any, ...]] = []
        at, day = temporal_encoders(s)
        received_at, today, hold = at(now), self.ctx.today, timedelta(days=self.ctx.hold_days)
        for p in pending:
            previous = known.get(p.source_key) or (same_test.get(p.order_key) if p.order_key else None)
            if previous is not None:
                self._again(p, previous, patients.get(p.mrn))
                continue
            patient_id = patients.get(p.mrn)
            columns = (*p[:9], at(p.observed_at), day(p.observed_on), received_at, p.ref_low, p.ref_high, p.order_key)
            row: tuple[Any, ...]
            if patient_id is None:
                into, row = new_held, (*columns, p.mrn, day(max(p.observed_on + hold, today)))
            else:
                into, row = new_results, (*columns, patient_id)
                _earliest(self.touched, patient_id, p.observed_on)
                self._screen(patient_id, p)
            known[p.source_key] = _Known(p.value, p.status, lab=patient_id is not None, batch=into, index=len(into))
            if p.order_key is not None:
                same_test[p.order_key] = known[p.source_key]
            into.append(row)
        self.report.stored += bulk_insert_ignore(s, LabResult, (*COLUMNS, "patient_id"), new_results, ["source_key"])
        self.report.held += bulk_insert_ignore(s, HeldResult, (*COLUMNS, "mrn", "expires_on"), new_held, ["source_key"])

    def _known(self, key: str, values: list[str]) -> dict[str, _Known]:
        """Results already stored or held under these source keys or order keys."""
        found: dict[str, _Known] = {}
        for model in (HeldResult, LabResult):
            for k, i, v, st in select_in(self.session, model, (key, "id", "value", "status"), key, values):
                found[k] = _Known(v, st, lab=model is LabResult, id=i)
        return found

    def _again(self, p: Pending, previous: _Known, patient_id: int | None) -> None:
        """A result for a test received before (same source key, or same order and test): a
        duplicate, an update, or a conflict for quarantine.

        A correction (status C / amended) replaces any earlier value; so does any later result of
        a test whose earlier result was preliminary. A different value otherwise is a conflict.
        """
        if previous.value == p.value and previous.status == p.status:
            self.report.duplicate += 1
            return
        if p.status != "corrected" and previous.status != "preliminary":
            if previous.value == p.value:
                self.report.duplicate += 1
            else:
                self.batch.reject(p.format, p.origin, p.raw,
                                  f"conflicts with the {p.analyte} result already received for the same test; "
                                  "send it with status C (corrected) to correct it", "conflicting re-delivery",
                                  self.ctx.now)
            return
        changes = {"value": p.value, "raw_value": p.raw_value, "status": p.status}
        if previous.batch is not None:  # received earlier in this batch, not inserted yet
            row = list(previous.batch[previous.index])
            for name, value in changes.items():
                row[COLUMNS.index(name)] = value
            previous.batch[previous.index] = tuple(row)
        else:
            table: Any = LabResult if previous.lab else HeldResult
            self.session.execute(update(table).where(table.id == previous.id).values(**changes,
                                                                                     received_at=self.ctx.now))
        previous.value, previous.status = p.value, p.status
        self.report.corrected += 1
        if previous.lab and patient_id is not None:
            _earliest(self.touched, patient_id, p.observed_on)
            self._screen(patient_id, p)


@dataclass(slots=True)
class _Known:
    """A result already received, stored (`lab`) or held: in the database (its id) or earlier in
    this batch (the list of rows it waits in, and where)."""

    value: float
    status: str
    lab: bool
    id: int | None = None
    batch: list[tuple[Any, ...]] | None = None
    index: int = 0


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
    return _commit(session, (prepare(chunk, ctx) for chunk in _chunks(records, BATCH)), ctx, progress)


def ingest_file(
    session: Session,
    kind: str,
    path: Path,
    options: ReadOptions,
    ctx: Context,
    *,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """`ingest_records` for a lab file of a `monitor.ingest.files` kind. A large file is read and
    prepared in a worker process while this one stores, batch by batch, in the file's order.

    Raises:
        UnreadableFile: the file cannot be read (raised here, whichever process found it).
    """
    read = partial(read_file, kind, path, options, ctx.catalog)
    if path.stat().st_size < WORKER_MIN_BYTES:
        return ingest_records(session, read(), ctx, progress=progress)
    return _commit(session, in_worker(partial(_prepared, read, replace(ctx, library=None, memo={}))), ctx,
                   progress)


def _prepared(read: Callable[[], Iterable[Record]], ctx: Context) -> Iterator[Prepared]:
    """The worker's side of `ingest_file`."""
    for chunk in _chunks(read(), BATCH):
        yield prepare(chunk, ctx)


def _commit(session: Session, batches: Iterable[Prepared], ctx: Context,
            progress: Callable[[int], None] | None) -> IngestReport:
    report = IngestReport()
    for batch in batches:
        store = _Store(session, ctx, batch)
        store.run()
        mark_for_review(session, store.touched)
        session.commit()
        if store.critical and ctx.library is not None:
            batch.report.critical_flags = evaluate_patients(session, ctx.library, store.critical,
                                                            today=ctx.today, now=ctx.now)
            session.commit()
        report.add(batch.report)
        if progress is not None:
            progress(batch.size)
    return report


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk
