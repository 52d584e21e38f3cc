"""CSV lab files: the monitor format (CLI.md) and Synthea's observations.csv export."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from monitor.domain.analytes import Catalog
from monitor.ingest.differential import Derivation, derived_from, with_absolute_counts
from monitor.ingest.records import (
    IncomingResult,
    RawSource,
    Record,
    Skipped,
    Tally,
    Unreadable,
    UnreadableFile,
    open_text,
    parse_number,
    parse_when,
    raw_text,
    unstorable,
)

MONITOR_COLUMNS = {"mrn", "collected_at", "code", "value", "unit"}
SYNTHEA_COLUMNS = {"date", "patient", "code", "value", "units"}
STATUS = {"f": "final", "p": "preliminary", "c": "corrected", "": "final",
          "final": "final", "preliminary": "preliminary", "corrected": "corrected"}


PATIENT_LIST_COLUMNS = {"id", "birthdate", "gender"}  # Synthea patients.csv: people, not results
#: Where a %-differential's WBC must be (ingest/differential.py): rows of one draw come together.
DRAW = "in the rows next to it with the same MRN and collection time"
#: The longest cell of a lab row (the csv module's own default limit): a longer one, usually a quote
#: never closed that ran on over the rows after it, quarantines its row.
CELL_MAX = 131_072
#: The longest cell read at all: at a longer one the csv module stops, and so does the file (what
#: came before it is committed and the error says so).
CELL_READ_MAX = 1_048_576


def sniff(header: list[str]) -> str | None:
    names = {h.strip().lower() for h in header}
    if MONITOR_COLUMNS <= names:
        return "csv"
    if SYNTHEA_COLUMNS <= names:
        return "synthea-csv"
    if PATIENT_LIST_COLUMNS <= names:
        return "patient-list"
    return None


#: The cells a row of each format is read from, in the order `_layout` gives their places; a row
#: always has the first four.
CELLS = {"csv": ("mrn", "collected_at", "code", "value", "unit", "source_id", "ref_low", "ref_high", "status"),
         "synthea-csv": ("patient", "date", "code", "value", "units", "category")}


def from_row(fmt: str, row: dict[str, str], origin: str, zone: ZoneInfo) -> Record:
    """One CSV row (keys lower-cased) as a record. Used for files and for quarantine replay."""
    problem = _cell_problem(row)
    if problem:
        return Unreadable(fmt, origin, _raw(row), problem)
    keys = tuple(row)
    return _record(fmt, _layout(fmt, keys), keys, list(row.values()), origin, zone)


@lru_cache(maxsize=64)
def _layout(fmt: str, keys: tuple[str, ...]) -> tuple[int, ...]:
    """Where each of the format's `CELLS` is in a row with these keys (-1: not there).

    Raises:
        KeyError: one of the first four is not there (a hand-edited quarantined row).
    """
    cells = CELLS[fmt]
    for name in cells[:4]:
        if name not in keys:
            raise KeyError(name)
    return tuple(keys.index(name) if name in keys else -1 for name in cells)


def _record(fmt: str, at: tuple[int, ...], keys: tuple[str, ...], cells: list[str], origin: str,
            zone: ZoneInfo) -> Record:
    """`from_row` for a row whose cells are known to be plain text (`_plain`): its `keys` (lower
    case) and `cells`, by position (`at`: their `_layout`; a dict a row cost more than the rest of
    reading it)."""
    raw: RawSource = (_raw_cells, (keys, cells))
    if fmt == "synthea-csv":
        category = cells[at[5]].strip() if at[5] >= 0 else ""
        if category != "laboratory":
            return Skipped(origin, f"not a laboratory result (category {category or 'empty'!r})")
        mrn, when, key_id = cells[at[0]].strip(), cells[at[1]].strip(), ""
        status, low, high = "final", "", ""
    else:
        mrn, when = cells[at[0]].strip(), cells[at[1]].strip()
        key_id = cells[at[5]].strip() if at[5] >= 0 else ""
        low, high = cells[at[6]] if at[6] >= 0 else "", cells[at[7]] if at[7] >= 0 else ""
        sent = cells[at[8]] if at[8] >= 0 else ""
        status = STATUS.get(sent.strip().lower(), "")
        if not status:
            return Unreadable(fmt, origin, raw_text(raw), f"status {sent if at[8] >= 0 else None!r} is not F, P or C")
    if not mrn:
        return Unreadable(fmt, origin, raw_text(raw), "no patient identifier")
    try:
        observed_at = parse_when(when, zone)
    except ValueError:
        return Unreadable(fmt, origin, raw_text(raw), f"collection time {when!r} is not an ISO date or date-time")
    ref_low, ref_high = parse_number(low) if low else None, parse_number(high) if high else None
    if (ref_low is None and low.strip()) or (ref_high is None and high.strip()):
        return Unreadable(fmt, origin, raw_text(raw), f"reference range {low!r}-{high!r} is not numeric")
    code = cells[at[2]].strip()
    # The time leads the derived key: feeds arrive roughly in time order, so new keys land at the
    # end of the unique index instead of all over it (3x faster inserts at a million results).
    key = key_id or f"{when}|{mrn}|{code}"
    unit = cells[at[4]].strip() if at[4] >= 0 else ""
    return IncomingResult(fmt, f"{fmt}:{key}", origin, raw, mrn, code, cells[at[3]].strip(), unit, observed_at, status,
                          ref_low, ref_high)


def _cell_problem(row: dict[str, str]) -> str:
    """Why a row's cells cannot be read as they are (a NUL, a byte that is not UTF-8, a cell longer
    than `CELL_MAX`), naming the column, or ""."""
    if _plain("".join(row.values())):
        return ""
    for column, cell in row.items():
        if len(cell) > CELL_MAX:
            return (f"cell {column!r} has {len(cell):,} characters, more than the {CELL_MAX:,} a lab CSV cell "
                    "may have (a quote that is never closed?); fix the file and ingest it again")
        if bad := unstorable(cell):
            return (f"cell {column!r} has {bad}; export the file as UTF-8 text without NUL characters, "
                    "then ingest it again")
    return ""


def _plain(text: str) -> bool:
    """Text of a row's cells that is plainly fine: ASCII, no NUL, no cell can be too long (nearly
    every row, so checked without a regex)."""
    return len(text) <= CELL_MAX and text.isascii() and "\x00" not in text


def from_quarantine(fmt: str, data: dict[str, Any], origin: str, zone: ZoneInfo, catalog: Catalog) -> Record:
    """A record this reader produced, read again from its quarantined JSON: a row, or the two rows
    a count was derived from."""
    rows = data.get("derived_from")
    if not isinstance(rows, list):
        return from_row(fmt, data, origin, zone)
    parts: list[Record] = [from_row(fmt, row, origin, zone) for row in rows if isinstance(row, dict)]
    derived = derived_from(parts, catalog, _derived, DRAW)
    if derived is None:
        return Unreadable(fmt, origin, json.dumps(data, sort_keys=True), "the derived count's rows no longer read")
    return replace(derived, origin=origin)


def _derived(d: Derivation) -> IncomingResult:
    """A count derived from a % row and the WBC row of its draw, kept with both rows for replay."""
    return d.result(f"{d.percent.source_key}#abs", f"{d.percent.origin}:absolute",
                    (_derived_raw, (d.note, d.wbc.raw_source, d.percent.raw_source)))


def _derived_raw(parts: tuple[str, RawSource, RawSource]) -> str:
    note, *rows = parts
    return json.dumps({"derived": note, "derived_from": [json.loads(raw_text(r)) for r in rows]}, sort_keys=True)


def _raw(row: dict[str, str]) -> str:
    """A row as kept in quarantine: JSON that `from_row` reads again. The same text as
    `json.dumps(row, sort_keys=True)` (the quarantine's record key hashes it) at a third of the cost."""
    return _raw_cells((tuple(row), list(row.values())))


def _raw_cells(row: tuple[tuple[str, ...], list[str]]) -> str:
    """`_raw` of a row given as its keys and its cells."""
    return "{" + ", ".join(f"{_json(k)}: {_json(v)}" for k, v in sorted(zip(*row, strict=True))) + "}"


def read(stream: TextIO, name: str, zone: ZoneInfo, catalog: Catalog, tally: Tally | None = None,
         ) -> Iterator[Record]:
    """Records from an open CSV file, one per data row (each counted in `tally`), a %-differential
    replaced by the count derived from the WBC of its draw (neighbouring rows with the same MRN and
    collection time).

    Raises:
        UnreadableFile: no header, a header that is neither format or names a column twice; or,
            after the records before it, a cell longer than `CELL_READ_MAX`.
    """
    csv.field_size_limit(CELL_READ_MAX)  # process-wide; cells up to CELL_MAX are lab data, longer are quarantined
    reader = csv.reader(stream)
    keys, fmt = _header(next(reader, None), name)
    width, at = len(keys), _layout(fmt, keys) if fmt in CELLS else ()
    tally = tally or Tally()
    draw: list[Record] = []
    drawn: tuple[str, datetime] | None = None  # the patient and time of `draw`
    try:
        for row in reader:
            line = "".join(row)
            if not line or line.isspace():
                continue
            tally.seen += 1
            origin = f"{name}:{reader.line_num}"
            if fmt == "patient-list":
                yield Skipped(origin, "a patient list (Synthea patients export), not lab results")
                continue
            if len(row) != width:
                yield Unreadable(fmt, origin, json.dumps(row), f"{len(row)} cells; the header has {width}")
                continue
            if _plain(line):
                record = _record(fmt, at, keys, row, origin, zone)
            else:
                record = from_row(fmt, dict(zip(keys, row, strict=True)), origin, zone)
            if isinstance(record, IncomingResult) and (record.mrn, record.observed_at) != drawn:
                yield from with_absolute_counts(draw, catalog, _derived, DRAW)
                draw, drawn = [], (record.mrn, record.observed_at)
            draw.append(record)
    except csv.Error as e:  # the rows before it are read; the file stops here
        yield from with_absolute_counts(draw, catalog, _derived, DRAW)
        raise UnreadableFile(f"{name}: line {reader.line_num}: {_stopped(e)}") from None
    yield from with_absolute_counts(draw, catalog, _derived, DRAW)


def _header(header: list[str] | None, name: str) -> tuple[tuple[str, ...], str]:
    """The column keys (lower case; an unnamed column by its position) and the format.

    Raises:
        UnreadableFile: no header, neither format, or a column named twice (which one is meant?).
    """
    fmt = sniff(header or [])
    if header is None or fmt is None:
        raise UnreadableFile(
            f"{name}: not a lab CSV; the header needs the columns "
            f"{', '.join(sorted(MONITOR_COLUMNS))} (or a Synthea observations export)"
        )
    keys = tuple(h.strip().lower() or f"column {i}" for i, h in enumerate(header, 1))
    twice = [key for key, n in Counter(keys).items() if n > 1]
    if twice:
        at = [i for i, key in enumerate(keys, 1) if key == twice[0]]
        raise UnreadableFile(f"{name}: the header names the column {twice[0]!r} more than once (columns "
                             f"{', '.join(map(str, at))}), so its cells are ambiguous; rename or remove all but "
                             "one, then ingest the file again (nothing was read)")
    return keys, fmt


def _stopped(e: csv.Error) -> str:
    if "field larger than field limit" in str(e):
        return (f"a cell is longer than {CELL_READ_MAX:,} characters (a quote that is never closed?), so "
                "reading stopped there")
    return f"reading stopped there: the csv module cannot read on ({e})"


def read_file(path: Path, zone: ZoneInfo, catalog: Catalog, tally: Tally | None = None) -> Iterator[Record]:
    with open_text(path, newline="") as stream:
        yield from read(stream, path.name, zone, catalog, tally)
