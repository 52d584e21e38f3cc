"""What readers produce: a result to store, a record to skip, or one to quarantine."""

from __future__ import annotations

import hashlib
import re
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
    hl7_encoding: str = "UNICODE UTF-8"  # character set of an HL7 file's messages whose MSH-18 is empty


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


@dataclass
class Tally:
    """What a reader saw in its input, counted where it finds each record: a CSV data row, an OBX,
    an Observation, or a message or document it cannot split into those. Every one ends as exactly
    one outcome of the ingest report (stored, duplicate, ... ignored): `IngestReport.seen`."""

    seen: int = 0


@contextmanager
def open_text(path: Path, *, newline: str | None) -> Iterator[TextIO]:
    """A UTF-8 text file (a BOM allowed). A byte that is not UTF-8 does not stop it: it reads as a
    lone surrogate (U+DC80-U+DCFF, Python's "surrogateescape"), so the record that holds it can be
    quarantined with the byte shown (`unstorable`, `storable_text`) while the others are read.

    Raises:
        UnreadableFile: the file cannot be opened.
    """
    try:
        stream = path.open(encoding="utf-8-sig", errors="surrogateescape", newline=newline)
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot open ({e.strerror})") from None
    with stream:
        yield stream


#: What a database cannot keep in text: NUL (PostgreSQL refuses it) and lone surrogates (no UTF-8
#: for them): the bytes a decoder could not read, kept by "surrogateescape", or a JSON `\udc00`.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str:
    """What in `text` a database cannot store as text, for a quarantine reason: "" when nothing,
    else e.g. "a NUL character" or "byte 0xFF, which is not text in its character set"."""
    if "\x00" not in text and text.isascii():
        return ""
    found = UNSTORABLE.search(text)
    if found is None:
        return ""
    char = ord(found[0])
    if char == 0:
        return "a NUL character"
    if 0xDC80 <= char <= 0xDCFF:
        return f"byte 0x{char - 0xDC00:02X}, which is not text in its character set"
    return f"a lone surrogate U+{char:04X}, which is not a character"


def storable_text(text: str) -> str:
    """`text` as a database can keep it: NUL written as `\\x00`, each byte that was not text in
    its character set (a lone surrogate U+DC80-U+DCFF) as `\\xNN`, any other lone surrogate as
    `\\uNNNN`. Text without them is returned as it is. For raw records kept in quarantine and raw
    messages kept as received: what was there stays visible, and is never mistaken for clean text."""
    if "\x00" not in text and (text.isascii() or UNSTORABLE.search(text) is None):
        return text
    return UNSTORABLE.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    char = ord(found[0])
    return f"\\x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else (
        "\\x00" if char == 0 else f"\\u{char:04x}")


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


#: A lab value as the formats write a number: an optional sign, ASCII digits with an optional decimal
#: point, spaces or tabs around. float() reads far more ("５", "٥", "1_0", "nan", "1e-400" as 0.0).
PLAIN_DECIMAL = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[ \t]*")
#: The same with an exponent, for the formats that have one.
DECIMAL_WITH_EXPONENT = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
#: Formats whose values may carry an exponent: a FHIR valueQuantity.value is a JSON number (RFC 8259
#: §6). HL7 v2 NM has none (a sign, digits and a decimal point: invariant nm-1 of the HL7 v2+ NM
#: definition), nor monitor's CSV format (docs/CLI.md), nor Synthea's observations.csv (it writes
#: plain decimals: none of the 990 rows in ../shared/data/external/csv has an exponent).
EXPONENT_FORMATS = frozenset({"fhir"})
NONZERO_DIGITS = frozenset("123456789")
INFINITY = float("inf")


def parse_number(text: str, *, exponent: bool = False) -> float | None:
    """`text` as a number if it is a plain ASCII decimal (with an exponent only if `exponent`) that a
    double holds: not one that overflows, nor one that underflows to 0 (a `0` read from `1e-400`)."""
    unsigned_decimal = text.isascii() and text.replace(".", "", 1).isdigit()  # most values: twice as fast
    if not unsigned_decimal and (DECIMAL_WITH_EXPONENT if exponent else PLAIN_DECIMAL).fullmatch(text) is None:
        return None
    value = float(text)
    return None if (value == 0 and underflows(text, value)) or abs(value) == INFINITY else value


def underflows(text: str, value: float) -> bool:
    """A number `text` whose digits are not all 0 read as `value` 0: too small for a double."""
    return value == 0 and not NONZERO_DIGITS.isdisjoint(text.lower().partition("e")[0])


def number_problem(text: str, *, exponent: bool = False) -> str:
    """Why `parse_number` refused `text`, and what to do: the end of a quarantine reason."""
    body = text.strip(" \t")
    if body[:1] in ("<", ">", "≤", "≥"):
        return ("it has a comparator: a censored result is not an exact value (hazard H24); review it by "
                "hand, or have the lab send the exact value")
    if not body.isascii():
        return ("it has characters other than ASCII digits 0-9, a sign and a decimal point (full-width or "
                "other scripts' digits, a no-break space); have the lab send plain ASCII digits")
    if not exponent and "e" in body.lower() and DECIMAL_WITH_EXPONENT.fullmatch(body):
        return "this format has no exponent (write 0.005, not 5e-3); have the lab send a plain decimal"
    if (DECIMAL_WITH_EXPONENT if exponent else PLAIN_DECIMAL).fullmatch(body):
        small = float(body) == 0
        return (f"it is too {'small' if small else 'large'} for a number monitor can hold (it would read as "
                f"{'0' if small else 'infinity'}); check the value with the lab")
    return ("a lab value is an optional sign, ASCII digits 0-9 and an optional decimal point (no "
            "underscores, letters or thousands separators); have the lab send it so")
