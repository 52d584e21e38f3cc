"""The first stage of ingestion: map each record's code, convert its unit and check its value,
without the database. Cheap to pickle, so a large file can be prepared in a worker process
(see `monitor.services.ingest`, which stores what this stage prepares)."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from monitor.db.encoding import Encoders
from monitor.domain.analytes import Analyte, Catalog, ImpossibleValue, UnitProblem, round6
from monitor.domain.dates import DateRange
from monitor.ingest.records import (
    EXPONENT_FORMATS,
    IncomingResult,
    RawSource,
    ReadOptions,
    Record,
    Skipped,
    Tally,
    UnreadableFile,
    number_problem,
    parse_number,
    raw_text,
    record_key,
    storable_text,
)
from monitor.ingest.shared_parts import shared_parts
from monitor.ingest.units import ucum_factor
from monitor.notify.mail import Mail

if TYPE_CHECKING:  # a worker process preparing a file needs no protocols: it starts faster without
    from monitor.domain.protocol import MonitoringProtocol
    from monitor.protocols import Library

BATCH = 10000
MRN_MAX = 64
#: The widths of the result columns a record's texts go into (db/tables.py ResultColumns). A longer
#: text is quarantined, never shortened: two keys cut to the same first 255 characters would make
#: two results one (a duplicate, stored nowhere).
KEY_MAX = 255  # source_key, order_key
CODE_MAX = 32
RAW_MAX = 64  # raw_value, raw_unit
SCREENED = ("final", "corrected")  # statuses of results graded for a critical band at ingestion


#: What becomes of a record: exactly one of these.
OUTCOMES = ("stored", "duplicate", "corrected", "retracted", "held", "ignored", "quarantined")
#: The format of a quarantined record whose raw text had to be escaped to be kept (a NUL, bytes
#: that were not text): what is kept is not what was received, so it is never read again by replay.
ESCAPED = "escaped"


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
    #: Records the readers saw (a CSV data row, an OBX, an Observation, a message or document read
    #: whole: `records.Tally`); each ends as exactly one outcome, so `total` equals it.
    seen: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # quarantine reason (no values)

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in OUTCOMES)

    def add(self, other: IngestReport) -> None:
        for name in (*OUTCOMES, "already_quarantined", "critical_flags", "seen"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*OUTCOMES, "already_quarantined", "critical_flags", "seen")
                } | {"quarantine_reasons": dict(self.reasons)}

    def counts(self) -> str:
        """The outcomes in words: `5 stored, 0 duplicate, ..., 2 ignored` (no patient data)."""
        return (f"{self.stored} stored, {self.duplicate} duplicate, {self.corrected} corrected, {self.retracted} "
                f"retracted, {self.held} held, {self.quarantined} quarantined, {self.ignored} ignored")


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
    #: How far from today a collection time may be (settings `[dates]`).
    dates: DateRange = DateRange()
    #: Who a critical flag raised at ingestion is e-mailed to, and how (services/alerts.py).
    mail: Mail = Mail()
    #: What each (code, unit) maps to, worked out once (one context serves every MLLP message).
    mappings: dict[tuple[str, str], CodeMapping] = field(default_factory=dict, compare=False, repr=False)
    #: Per analyte, the protocols whose grading screens it for a critical band at ingestion.
    graders: dict[str, list[MonitoringProtocol]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.clinic_zone).date()

    @property
    def read_options(self) -> ReadOptions:
        return self.options or ReadOptions(lab_zone=self.clinic_zone)


class Pending(NamedTuple):
    """A prepared result: its columns as stored (`COLUMNS`, encoded for the database), then what
    the store stage needs to know about it, then where it came from."""

    source_key: str
    source: str
    analyte: str
    code: str
    raw_value: str
    raw_unit: str
    value: float
    unit: str
    status: str
    observed_at: Any  # encoded
    observed_on: Any  # encoded
    received_at: Any  # encoded
    ref_low: float | None
    ref_high: float | None
    order_key: str | None
    on: date  # observed_on as a date
    #: Final or corrected and outside its reference range (its own, else the catalog's): only
    #: such a result can be in a critical CTCAE band, so only it is graded at ingestion.
    outside_range: bool
    mrn: str
    format: str
    origin: str


COLUMNS = Pending._fields[:Pending._fields.index("on")]  # of lab_result and held_result
STORED = len(COLUMNS)  # a Pending's first fields are its columns: `p[:STORED]`


@dataclass
class Prepared:
    """One batch after the `prepare` stage, ready for `_store`."""

    size: int  # records read
    report: IngestReport = field(default_factory=IngestReport)
    #: Quarantine rows; "parts" holds digests of `parts` (services/quarantine_rows.py stores them).
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    retractions: list[tuple[str, str | None]] = field(default_factory=list)  # (source key, order key) to withdraw
    pending: list[Pending] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # raw text the quarantined records share, by digest
    #: Where each pending result came from (`pending[i]`'s is `raws[i]`), needed only if the store
    #: stage quarantines it; from a worker process, still pickled until then (`raw`).
    raws: list[RawSource] | bytes = field(default_factory=list)

    def raw(self, i: int) -> str:
        """The raw text of `pending[i]`."""
        if isinstance(self.raws, bytes):
            self.raws = pickle.loads(self.raws)
        assert isinstance(self.raws, list)
        return raw_text(self.raws[i])

    def reject(self, fmt: str, origin: str, raw: str, reason: str, kind: str, now: datetime) -> None:
        """Quarantine a record: its text kept as the database can store it (`storable_text`)."""
        self.report.quarantined += 1
        self.report.reasons[kind] += 1
        kept = storable_text(raw)
        fmt = fmt if kept is raw else ESCAPED
        shared, own = shared_parts(fmt, kept)
        self.quarantine.append({
            "record_key": record_key(fmt, kept), "format": fmt, "origin": storable_text(origin)[:255],
            "parts": [self._part(text) for text in shared], "raw": own, "reason": storable_text(reason), "at": now,
        })

    def _part(self, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.parts.setdefault(digest, text)  # held once, however many records of the batch share it
        return digest

    def __getstate__(self) -> tuple[Any, ...]:
        """Pickled (to or from a worker process) as plain tuples: a NamedTuple pickles at half the
        speed. The raw sources are pickled apart, and unpickled only when one is needed (a CSV row's
        took a third of the time the store stage spent unpickling a batch)."""
        raws = self.raws if isinstance(self.raws, bytes) else pickle.dumps(self.raws, pickle.HIGHEST_PROTOCOL)
        return (self.size, self.report, self.quarantine, self.retractions, list(map(tuple, self.pending)),
                self.parts, raws)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.size, self.report, self.quarantine, self.retractions, pending, self.parts, self.raws = state
        new = tuple.__new__  # what Pending._make does, without its per-row call overhead
        self.pending = [new(Pending, p) for p in pending]


@dataclass(frozen=True)
class CodeMapping:
    """What a (code, unit) pair means: an analyte and factor, ignored, or the reason to quarantine."""

    analyte: Analyte | None = None
    factor: float = 1.0
    ignored: bool = False
    problem: str = ""
    kind: str = ""


def _mapping(catalog: Catalog, code: str, unit: str) -> CodeMapping:
    analyte = catalog.analyte_for(code)
    if analyte is None:
        if catalog.ignored_reason(code) is not None:
            return CodeMapping(ignored=True)
        return CodeMapping(problem=f"code {code!r} is not mapped to a monitored analyte; add it to "
                        "config/analytes.toml (local_codes or not_monitored), then replay", kind="unmapped code")
    try:
        return CodeMapping(analyte, catalog.conversion(analyte, unit).factor)
    except UnitProblem as e:
        factor = ucum_factor(unit, analyte.unit)  # valid UCUM of the same dimension converts too
        return CodeMapping(analyte, factor) if factor is not None else CodeMapping(problem=str(e), kind="unit")


@lru_cache(maxsize=8192)
def _local_day(at: datetime, zone: ZoneInfo) -> date | None:
    """The clinical date of an instant: its day in the clinic's zone. None when the calendar (years 1
    to 9999) cannot hold the instant in UTC, where it is stored, or in that zone (0001-01-01T00:00+14:00)."""
    try:
        at.astimezone(UTC)
        return at.astimezone(zone).date()
    except OverflowError:
        return None


def _date_problem(at: datetime, on: date | None, ctx: Context) -> str:
    """Why a result's collection time (`at`, on the clinical date `on`) is refused: asked only for one
    outside the window of `ctx.dates`."""
    if on is None:
        return (f"collection time {at.isoformat()} is outside the calendar monitor can store (years 1 to "
                "9999, in UTC and in the clinic's time zone); check the date with the lab")
    problem = ctx.dates.problem(on, ctx.today, "collection date", result=True)
    assert problem is not None
    return problem


def _too_long(r: IncomingResult) -> str:
    """Why one of the record's texts cannot be stored whole, or ""."""
    for what, text, most in (("source key", r.source_key, KEY_MAX), ("order key", r.order_key or "", KEY_MAX),
                             ("test code", r.code, CODE_MAX), ("value", r.value, RAW_MAX), ("unit", r.unit, RAW_MAX)):
        if len(text) > most:
            return (f"its {what} is {len(text)} characters; at most {most} are stored, and a shortened {what} "
                    f"could be another result's: have the sender shorten it (a CSV source_id, a FHIR id)"
                    if what.endswith("key") else
                    f"its {what} is {len(text)} characters; at most {most} are stored, and monitor keeps it "
                    "whole or not at all: check the record with the lab")
    return ""


def prepare(chunk: list[Record], ctx: Context, encoders: Encoders) -> Prepared:
    """Map, convert and check a batch of records; no database. Rejects go to `quarantine`."""
    raws: list[RawSource] = []
    out = Prepared(len(chunk), raws=raws)
    mappings = ctx.mappings
    catalog, zone, now = ctx.catalog, ctx.clinic_zone, ctx.now
    at, day = encoders
    received_at = at(now)
    earliest, latest = ctx.dates.window(ctx.today, result=True)
    sources: dict[str, str] = {}  # format -> source column
    # The results of one draw come together with one collection time: its date and encodings are
    # worked out once (`last`: the time, its clinical date, its encoded time and date, or None).
    last: tuple[datetime, date | None, Any, Any] | None = None
    new = tuple.__new__  # what Pending(...) does, without its per-row call overhead
    spelled: dict[tuple[str, str], tuple[str, str]] = {}
    last_mrn = ""
    for r in chunk:
        if not isinstance(r, IncomingResult):
            if isinstance(r, Skipped):
                out.report.ignored += 1
            else:
                out.reject(r.format, r.origin, r.raw, r.reason, "unreadable", now)
            continue
        if (len(r.source_key) > KEY_MAX or len(r.code) > CODE_MAX or len(r.unit) > RAW_MAX
                or (r.order_key is not None and len(r.order_key) > KEY_MAX)):  # _too_long, inlined: every result
            out.reject(r.format, r.origin, r.raw, _too_long(r), "too long", now)
            continue
        if r.status == "retracted":
            out.retractions.append((r.source_key, r.order_key))
            continue
        if len(r.mrn) > MRN_MAX:
            out.reject(r.format, r.origin, r.raw, f"patient identifier is {len(r.mrn)} characters; at most "
                       f"{MRN_MAX} are stored", "patient identifier", now)
            continue
        spelling = (r.code, r.unit)
        m = mappings.get(spelling)
        if m is None:
            m = mappings[spelling] = _mapping(catalog, r.code, r.unit)
        if m.analyte is None:
            if m.ignored:
                out.report.ignored += 1
            else:
                out.reject(r.format, r.origin, r.raw, m.problem, m.kind, now)
            continue
        analyte, factor = m.analyte, m.factor
        exponent = r.format in EXPONENT_FORMATS
        number = parse_number(r.value, exponent=exponent)
        if number is None:
            out.reject(r.format, r.origin, r.raw, f"{analyte.key} value {r.value!r} is not a number: "
                       f"{number_problem(r.value, exponent=exponent)}", "non-numeric value", now)
            continue
        if len(r.value) > RAW_MAX:  # a number, but not one to keep whole (checked after why it is not one)
            out.reject(r.format, r.origin, r.raw, _too_long(r), "too long", now)
            continue
        try:
            value = catalog.to_canonical(analyte, number, r.unit, factor)
        except UnitProblem as e:
            out.reject(r.format, r.origin, r.raw, str(e),
                       "impossible value" if isinstance(e, ImpossibleValue) else "unit", now)
            continue
        ref_low = None if r.ref_low is None else round6(r.ref_low * factor)
        ref_high = None if r.ref_high is None else round6(r.ref_high * factor)
        low = analyte.reference.low if ref_low is None else ref_low  # the lab's range, else the catalog's
        high = analyte.reference.high if ref_high is None else ref_high
        outside_range = not (low is not None and high is not None and low <= value <= high)
        if last is None or r.observed_at is not last[0]:
            last = (r.observed_at, _local_day(r.observed_at, zone), None, None)
        on = last[1]
        if on is None or not earliest <= on <= latest:
            out.reject(r.format, r.origin, r.raw, _date_problem(r.observed_at, on, ctx), "collection date", now)
            continue
        if last[2] is None:
            last = (r.observed_at, on, at(r.observed_at), day(on))
        source = sources.get(r.format) or sources.setdefault(r.format, r.format.split("-")[-1])
        # One object for each code and unit spelling, and for the draw's MRN: pickled once a batch.
        code, unit = spelled.setdefault(spelling, spelling)
        mrn = r.mrn if r.mrn != last_mrn else last_mrn
        out.pending.append(new(Pending, (
            r.source_key, source, analyte.key, code, r.value, unit, value, analyte.unit, r.status, last[2],
            last[3], received_at, ref_low, ref_high, r.order_key, on, r.status in SCREENED and outside_range,
            mrn, r.format, r.origin,
        )))
        last_mrn = mrn
        raws.append(r.raw_source)
    return out


def batches(records: Iterable[Record], ctx: Context, encoders: Encoders, tally: Tally | None = None,
            ) -> Iterator[Prepared]:
    """`prepare` a stream of records `BATCH` at a time, each batch's report with the records its
    reader saw meanwhile (`tally`; without one, the batch's records). When the reader stops early
    (UnreadableFile), the records it read before stopping are prepared first, then it is raised."""
    it = iter(records)
    counted = 0  # of tally.seen, in the batches so far
    while True:
        chunk: list[Record] = []
        try:
            chunk.extend(islice(it, BATCH))
        except UnreadableFile:
            yield _seen(prepare(chunk, ctx, encoders), tally, counted)
            raise
        batch = _seen(prepare(chunk, ctx, encoders), tally, counted)
        counted += batch.report.seen
        if chunk or batch.report.seen:  # a reader that saw records and gave none: the report will say so
            yield batch
        if len(chunk) < BATCH:
            return


def _seen(batch: Prepared, tally: Tally | None, counted: int) -> Prepared:
    batch.report.seen = batch.size if tally is None else tally.seen - counted
    return batch


def read_batches(read: Callable[[Tally], Iterable[Record]], ctx: Context, encoders: Encoders) -> Iterator[Prepared]:
    """`batches` of what `read` reads, counting what it sees: what a worker process runs for
    `ingest_file` (this module and the readers import quickly; the database layer's engine is not
    imported there)."""
    tally = Tally()
    return batches(read(tally), ctx, encoders, tally)
