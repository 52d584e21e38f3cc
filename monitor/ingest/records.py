"""What readers produce: a result to store, a record to skip, or one to quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from monitor.domain.errors import UserError


class UnreadableFile(UserError):
    """The file as a whole cannot be read (missing, wrong format, no header)."""


@dataclass(frozen=True)
class ReadOptions:
    """How a site's feeds identify patients and times (settings [ingest])."""

    lab_zone: ZoneInfo  # collection times without an offset are read in this zone
    mrn_type: str = "MR"  # HL7 PID-3.5 / FHIR identifier.type code that marks the MRN
    mrn_authority: str = ""  # HL7 PID-3.4 assigning authority / FHIR identifier.system; empty: any


#: A record's text as received, or how to build it: (a module-level function, its argument), both
#: cheap to pickle. Most records are stored, not quarantined, so readers on the hot path defer
#: building the text (and a worker process sends the recipe, not the text).
RawSource = str | tuple[Callable[[Any], str], Any]


def raw_text(source: RawSource) -> str:
    return source if isinstance(source, str) else source[0](source[1])


@dataclass(slots=True)  # not frozen: that costs 3 µs a result, five times a plain one; never mutated
class IncomingResult:
    format: str  # reader format: csv, synthea-csv, hl7, fhir
    source_key: str  # natural key of this result at its source: re-delivery is a duplicate
    origin: str  # file and line, or feed and message id
    raw_source: RawSource  # the record as received, kept if it has to be quarantined
    mrn: str
    code: str
    value: str
    unit: str
    observed_at: datetime  # aware
    status: str = "final"  # final, preliminary, corrected, retracted
    ref_low: float | None = None
    ref_high: float | None = None
    #: The same test of the same order whatever message carries it (HL7: sender, filler order
    #: number, OBX-3, OBX-4): a correction or a final result in a later message updates it.
    order_key: str | None = None

    @property
    def raw(self) -> str:
        return raw_text(self.raw_source)


@dataclass(frozen=True)
class Skipped:
    """Not a lab result the product monitors (a vital sign, a survey answer): counted, not kept."""

    origin: str
    reason: str


@dataclass(frozen=True)
class Unreadable:
    """A record that cannot be read as a result: quarantined whole with the reason."""

    format: str
    origin: str
    raw: str
    reason: str


Record = IncomingResult | Skipped | Unreadable


@contextmanager
def open_text(path: Path, *, newline: str | None, fix: str) -> Iterator[TextIO]:
    """A UTF-8 text file (a BOM allowed); an unopenable or non-UTF-8 file is an UnreadableFile
    whose message ends with `fix`, also when the bad bytes come to light while reading."""
    try:
        stream = path.open(encoding="utf-8-sig", newline=newline)
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot open ({e.strerror})") from None
    with stream:
        try:
            yield stream
        except UnicodeDecodeError:
            raise UnreadableFile(f"{path}: not UTF-8 text; {fix}") from None


def record_key(format: str, raw: str) -> str:
    """Identity of a raw record in quarantine: the same record twice is one row."""
    return hashlib.sha256(f"{format}\x00{raw}".encode()).hexdigest()


@lru_cache(maxsize=4096)  # the results of one draw share their time
def parse_when(text: str, zone: ZoneInfo) -> datetime:
    """ISO date or date-time; a naive time is read in the lab's zone, a bare date as local noon.

    Raises:
        ValueError: not an ISO date or date-time.
    """
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(12), zone)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=zone)


def parse_number(text: str) -> float | None:
    if not text or text.isspace():
        return None
    try:
        value = float(text)  # surrounding whitespace is allowed
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
