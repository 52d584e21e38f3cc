"""CSV lab files: the monitor format (CLI.md) and Synthea's observations.csv export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from monitor.ingest.records import (
    IncomingResult,
    Record,
    Skipped,
    Unreadable,
    UnreadableFile,
    parse_number,
    parse_when,
)

MONITOR_COLUMNS = {"mrn", "collected_at", "code", "value", "unit"}
SYNTHEA_COLUMNS = {"date", "patient", "code", "value", "units"}
STATUS = {"f": "final", "p": "preliminary", "c": "corrected", "": "final",
          "final": "final", "preliminary": "preliminary", "corrected": "corrected"}


PATIENT_LIST_COLUMNS = {"id", "birthdate", "gender"}  # Synthea patients.csv: people, not results


def sniff(header: list[str]) -> str | None:
    names = {h.strip().lower() for h in header}
    if MONITOR_COLUMNS <= names:
        return "csv"
    if SYNTHEA_COLUMNS <= names:
        return "synthea-csv"
    if PATIENT_LIST_COLUMNS <= names:
        return "patient-list"
    return None


def from_row(fmt: str, row: dict[str, str], origin: str, zone: ZoneInfo) -> Record:
    """One CSV row (keys lower-cased) as a record. Used for files and for quarantine replay."""
    raw = json.dumps(row, sort_keys=True)
    if fmt == "synthea-csv":
        category = row.get("category", "").strip()
        if category != "laboratory":
            return Skipped(origin, f"not a laboratory result (category {category or 'empty'!r})")
        mrn, when, key_id = row["patient"], row["date"], None
        unit, status, low, high = row.get("units", ""), "final", "", ""
    else:
        mrn, when, key_id = row["mrn"], row["collected_at"], row.get("source_id", "").strip()
        unit, low, high = row.get("unit", ""), row.get("ref_low", ""), row.get("ref_high", "")
        status = STATUS.get(row.get("status", "").strip().lower(), "")
        if not status:
            return Unreadable(fmt, origin, raw, f"status {row.get('status')!r} is not F, P or C")
    if not mrn.strip():
        return Unreadable(fmt, origin, raw, "no patient identifier")
    try:
        observed_at = parse_when(when, zone)
    except ValueError:
        return Unreadable(fmt, origin, raw, f"collection time {when!r} is not an ISO date or date-time")
    ref_low, ref_high = parse_number(low), parse_number(high)
    if (low.strip() and ref_low is None) or (high.strip() and ref_high is None):
        return Unreadable(fmt, origin, raw, f"reference range {low!r}-{high!r} is not numeric")
    code = row["code"].strip()
    key = key_id or f"{mrn.strip()}|{code}|{when.strip()}"
    return IncomingResult(
        format=fmt, source_key=f"{fmt}:{key}", origin=origin, raw=raw, mrn=mrn.strip(), code=code,
        value=row["value"].strip(), unit=unit.strip(), observed_at=observed_at, status=status,
        ref_low=ref_low, ref_high=ref_high,
    )


def read(stream: TextIO, name: str, zone: ZoneInfo) -> Iterator[Record]:
    """Records from an open CSV file, one per data row.

    Raises:
        UnreadableFile: no header, or a header that is neither format.
    """
    reader = csv.reader(stream)
    header = next(reader, None)
    fmt = sniff(header or [])
    if header is None or fmt is None:
        raise UnreadableFile(
            f"{name}: not a lab CSV; the header needs the columns "
            f"{', '.join(sorted(MONITOR_COLUMNS))} (or a Synthea observations export)"
        )
    keys = [h.strip().lower() for h in header]
    for row in reader:
        origin = f"{name}:{reader.line_num}"
        if fmt == "patient-list":
            yield Skipped(origin, "a patient list (Synthea patients export), not lab results")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(keys):
            yield Unreadable(fmt, origin, json.dumps(row), f"{len(row)} cells; the header has {len(keys)}")
            continue
        yield from_row(fmt, dict(zip(keys, row, strict=True)), origin, zone)


def read_file(path: Path, zone: ZoneInfo) -> Iterator[Record]:
    try:
        stream = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise UnreadableFile(f"{path}: cannot open ({e.strerror})") from None
    with stream:
        try:
            yield from read(stream, path.name, zone)
        except UnicodeDecodeError:
            raise UnreadableFile(f"{path}: not UTF-8 text; export the file as UTF-8 CSV") from None
