"""Store lab records: map code, convert unit, match patient, dedupe; quarantine the rest.

Each batch of records goes through two stages: `monitor.services.prepare` (pure Python: map the
code, convert the unit, check the value; for a large file it runs in a worker process, see
`ingest_file`) and `_Store` here (the database: patients, duplicates, corrections, held results,
inserts). Nothing is dropped: every record ends stored, duplicate, corrected, held, ignored or
quarantined, and the report counts each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from monitor.db.staging import copy_new, stored_under, update_by_id
from monitor.db.tables import HeldResult, LabResult, Patient
from monitor.db.upsert import select_in, temporal_encoders
from monitor.domain.snapshot import Result
from monitor.domain.thresholds import ctcae_grade
from monitor.ingest.files import read_file
from monitor.ingest.records import (
    Record,
    UnreadableFile,
)
from monitor.ingest.worker import fewer_collections, in_worker
from monitor.services.audit import SYSTEM, audit
from monitor.services.daily import evaluate_patients
from monitor.services.prepare import (
    COLUMNS,
    STORED,
    Context,
    IngestReport,
    Pending,
    Prepared,
    batches,
    read_batches,
)
from monitor.services.quarantine_rows import keep
from monitor.services.review import mark_patients

#: Files at least this big are read and prepared in a worker process while this one writes to
#: the database (two cores: about twice the throughput). Smaller ones are not worth its start-up.
WORKER_MIN_BYTES = 2_000_000

#: Records stored between commits. A commit writes every page its results touched, and a feed in
#: time order touches each patient's part of the (patient, day) index: fewer, larger commits write
#: less. A crash loses at most this much work, never data (re-ingesting the file stores it).
COMMIT_EVERY = 50_000


class _Store:
    """The database stage: prepared batches in, committed now and then."""

    def __init__(self, session: Session, ctx: Context) -> None:
        self.session, self.ctx = session, ctx
        self.batch = Prepared(0)
        self.report = self.batch.report
        self.critical: set[int] = set()  # patients to evaluate now: a result in a critical band, corrected or retracted
        self.touched: dict[int, date] = {}  # patients with new input, and from which day
        self.graders = ctx.graders
        self.patients: dict[str, int] = {}  # patient ids by MRN (a patient is never deleted, an MRN never changes)
        #: Corrections of stored or held results (is it stored, its id) -> value, raw value, status;
        #: written together after each batch.
        self.fixes: dict[tuple[bool, int], tuple[float, str, str]] = {}

    def run(self, batch: Prepared) -> None:
        self.batch, self.report = batch, batch.report
        self._store(batch.pending)
        self._retract(batch.retractions)
        self.report.already_quarantined += keep(self.session, batch.quarantine, batch.parts)

    def commit(self) -> int:
        """Commit what was stored, with the review marks it needs; evaluate at once the patients
        with a critical result. Returns how many critical flags that raised."""
        mark_patients(self.session, self.touched)
        self.session.commit()
        flags = 0
        if self.critical and self.ctx.library is not None:
            flags = evaluate_patients(self.session, self.ctx.library, self.critical, today=self.ctx.today,
                                      now=self.ctx.now, mail=self.ctx.mail)
            self.session.commit()
        self.touched, self.critical = {}, set()
        return flags

    def _retract(self, keys: list[tuple[str, str | None]]) -> None:
        """A cancelled or entered-in-error result withdraws the one received under its source key,
        or (HL7: a deletion in a later message) the same order and test: kept, marked `retracted`,
        no longer used by the engine, and its patient evaluated at once (its flags go with it)."""
        if not keys:
            return
        by_source = self._rows("source_key", [source for source, _ in keys])
        by_order = self._rows("order_key", [order for source, order in keys if order and source not in by_source])
        for source_key, order_key in keys:
            row = by_source.get(source_key) or (by_order.get(order_key) if order_key else None)
            if row is None or row.status == "retracted":
                self.report.ignored += 1  # nothing (left) to withdraw
                continue
            row.status, row.received_at = "retracted", self.ctx.now
            self.session.add(row)
            self.report.retracted += 1
            if isinstance(row, LabResult):
                _earliest(self.touched, row.patient_id, row.observed_on)
                self.critical.add(row.patient_id)

    def _rows(self, column: str, keys: list[str]) -> dict[str, LabResult | HeldResult]:
        """Stored or held results by `column` (a stored result wins over a held one)."""
        found: dict[str, LabResult | HeldResult] = {}
        if keys:
            for model in (HeldResult, LabResult):
                rows: list[Any] = list(self.session.exec(select(model).where(col(getattr(model, column)).in_(keys))))
                found.update((getattr(r, column), r) for r in rows)
        return found

    def _screen(self, patient_id: int, p: Pending) -> None:
        """Note the patient if this result (`outside_range`) is critical under any protocol's grading."""
        library = self.ctx.library
        if library is None:
            return
        if p.analyte not in self.graders:
            self.graders[p.analyte] = [g for g in library.graders if p.analyte in g.grading.terms]
        result = Result(0, p.analyte, p.value, p.on, p.status, p.ref_low, p.ref_high)
        for protocol in self.graders[p.analyte]:
            grade = ctcae_grade(result, protocol)
            if grade is not None and grade >= protocol.grading.critical_min_grade:
                self.critical.add(patient_id)
                return

    def _store(self, pending: list[Pending]) -> None:
        s = self.session
        patients = self.patients
        if unknown := {p.mrn for p in pending} - patients.keys():  # an MRN not enrolled is asked again each batch
            patients.update(select_in(s, Patient, ("mrn", "id"), "mrn", unknown))
        known = self._known("source_key", [p.source_key for p in pending])
        orders = [p.order_key for p in pending if p.order_key is not None and p.source_key not in known]
        same_test = self._known("order_key", orders) if orders else {}
        new_results: list[tuple[Any, ...]] = []
        new_held: list[tuple[Any, ...]] = []
        day = temporal_encoders(s)[1]
        expires = day(_expiry(self.ctx.today, self.ctx.hold_days))  # held from arrival, not collection
        touched, later = self.touched, date.max
        # Results of this batch are remembered for the rest of it only if one can come again in it.
        track = bool(orders) or len({p.source_key for p in pending}) != len(pending)
        for i, p in enumerate(pending):
            previous = known.get(p.source_key) or (same_test.get(p.order_key) if p.order_key else None)
            if previous is not None:
                self._again(i, p, previous, patients.get(p.mrn))
                continue
            patient_id = patients.get(p.mrn)
            row: tuple[Any, ...]
            if patient_id is None:
                into, row = new_held, (*p[:STORED], p.mrn, expires)  # + mrn, expires_on
            else:
                into, row = new_results, (*p[:STORED], patient_id)
                if touched.get(patient_id, later) > p.on:  # _earliest, inlined (it runs for every result)
                    touched[patient_id] = p.on
                if p.outside_range:
                    self._screen(patient_id, p)
            if track:
                known[p.source_key] = _Known(p.value, p.status, patient_id is not None, None, into, len(into))
                if p.order_key is not None:
                    same_test[p.order_key] = known[p.source_key]
            into.append(row)
        self._fix()
        self.report.stored += copy_new(s, LabResult, (*COLUMNS, "patient_id"), new_results, ["source_key"])
        self.report.held += copy_new(s, HeldResult, (*COLUMNS, "mrn", "expires_on"), new_held, ["source_key"])

    def _known(self, key: str, values: list[str]) -> dict[str, _Known]:
        """Results already stored or held under these source keys or order keys (a stored one wins)."""
        return {k: _Known(v, st, lab=model is LabResult, id=i)
                for model, k, (i, v, st) in stored_under(self.session, (HeldResult, LabResult), key, values,
                                                         ("id", "value", "status"))}

    def _fix(self) -> None:
        """Write the batch's corrections of results received before it: one statement a table."""
        if not self.fixes:
            return
        received = temporal_encoders(self.session)[0](self.ctx.now)
        for lab, model in ((True, LabResult), (False, HeldResult)):
            update_by_id(self.session, model, ("value", "raw_value", "status", "received_at"),
                         [(i, *change, received) for (stored, i), change in self.fixes.items() if stored is lab])
        self.fixes = {}

    def _again(self, i: int, p: Pending, previous: _Known, patient_id: int | None) -> None:
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
                self.batch.reject(p.format, p.origin, self.batch.raw(i),
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
            assert previous.id is not None
            self.fixes[(previous.lab, previous.id)] = (p.value, p.raw_value, p.status)
        previous.value, previous.status = p.value, p.status
        self.report.corrected += 1
        if previous.lab and patient_id is not None:
            _earliest(self.touched, patient_id, p.on)
            self.critical.add(patient_id)  # its flags are judged again with it, now


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


def _expiry(today: date, hold_days: int) -> date:
    """`hold_days` after `today`; past the end of the calendar (a huge `ingest.hold_days`), its last day."""
    try:
        return today + timedelta(days=hold_days)
    except OverflowError:
        return date.max if hold_days > 0 else date.min


def _earliest(into: dict[int, date], patient_id: int, day: date) -> None:
    into[patient_id] = min(day, into.get(patient_id, day))


def ingest_records(
    session: Session,
    records: Iterable[Record],
    ctx: Context,
    *,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store every record, in batches (`prepare.BATCH`) so memory stays flat; commit every `COMMIT_EVERY`
    records and at the end."""
    return _commit(session, batches(records, ctx, temporal_encoders(session)), ctx, progress)


@dataclass
class Staged:
    """Records stored in a transaction not yet committed, and what its commit owes them: the
    patients to mark for review before it (`touched`: from which day) and to evaluate after it
    (`critical`), as `_Store.commit` does."""

    report: IngestReport
    touched: dict[int, date]
    critical: set[int]


def stage_records(session: Session, records: Iterable[Record], ctx: Context) -> Staged:
    """`ingest_records` without its commit, for a caller that commits several messages in one
    transaction (`services/inbound.py`) and then marks and evaluates their patients itself."""
    store = _Store(session, ctx)
    report = IngestReport()
    for batch in batches(records, ctx, temporal_encoders(session)):
        store.run(batch)
        report.add(batch.report)
    return Staged(report, store.touched, store.critical)


def ingest_file(
    session: Session,
    kind: str,
    path: Path,
    ctx: Context,
    *,
    progress: Callable[[int], None] | None = None,
    actor: str = SYSTEM,
) -> IngestReport:
    """`ingest_records` for a lab file of a `monitor.ingest.files` kind. A large file is read and
    prepared in a worker process while this one stores, batch by batch, in the file's order. The
    audit trail gets one event for the file: its kind and counts (never its name or contents).

    Raises:
        UnreadableFile: the file cannot be read (raised here, whichever process found it).
    """
    read = partial(read_file, kind, path, ctx.read_options, ctx.catalog)
    if path.stat().st_size < WORKER_MIN_BYTES:
        report = _commit(session, read_batches(read, ctx, temporal_encoders(session)), ctx, progress)
    else:
        fresh = replace(ctx, library=None, mappings={}, graders={})  # what the worker needs, and no more
        worker = partial(read_batches, read, fresh, temporal_encoders(session))
        report = _commit(session, in_worker(worker), ctx, progress)
    audit(session, actor=actor, action="ingest", entity="file", entity_id=None, now=ctx.now, format=kind,
          **{k: v for k, v in report.as_dict().items() if isinstance(v, int)})
    session.commit()
    return report


def _commit(session: Session, prepared: Iterable[Prepared], ctx: Context,
            progress: Callable[[int], None] | None) -> IngestReport:
    report = IngestReport()
    store = _Store(session, ctx)
    since = 0  # records since the last commit
    with fewer_collections():
        try:
            for batch in prepared:
                store.run(batch)
                report.add(batch.report)
                since += batch.size
                if since >= COMMIT_EVERY:
                    report.critical_flags += store.commit()
                    since = 0
                if progress is not None:
                    progress(batch.size)
        except UnreadableFile as stop:  # the file stopped early: keep what came before it, and say so
            if not report.seen:
                raise  # refused whole (a header): nothing was read
            report.critical_flags += store.commit()
            raise UnreadableFile(f"{stop}; committed before it: {report.counts()}; records seen: {report.seen:,}; "
                                 "fix the file and ingest it again (what was committed counts as duplicate)"
                                 ) from None
        report.critical_flags += store.commit()
    return report
