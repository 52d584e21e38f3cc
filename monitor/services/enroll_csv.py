"""Bulk enrollment from a cohort spreadsheet: every row valid, or nothing written."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from datetime import date
from functools import lru_cache
from pathlib import Path

from monitor.domain.dates import DEFAULT_DATES, DateRange
from monitor.domain.errors import UserError
from monitor.domain.protocol import Phase
from monitor.protocols import Library
from monitor.services.cohort import CohortRow
from monitor.services.patients import EnrollmentRequest, check_request

REQUIRED = ("mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site")
OPTIONAL = ("name", "dob", "sex", "phase")
MAX_ERRORS_SHOWN = 20
PHASES = frozenset(p.value for p in Phase)
#: Rows checked between two calls of `progress`.
PROGRESS_EVERY = 1000


@lru_cache(maxsize=8192)
def _date(value: str) -> date:
    return date.fromisoformat(value)


def _day(key: str, value: str) -> date | None:
    try:
        return _date(value) if value else None
    except ValueError:
        raise UserError(f"{key} {value!r} is not a date (YYYY-MM-DD)") from None


def _shared(value: str) -> str | None:
    """A cell many rows repeat (protocol, genotype, coordinator, site), stored once however many
    rows have it: a cohort of 100,000 is held in memory whole until it is written."""
    return sys.intern(value) if value else None


def _row(cells: list[str]) -> EnrollmentRequest:
    """A request from a row's cells (stripped), in REQUIRED then OPTIONAL order; "" when empty."""
    mrn, protocol, start, weight_kg, tpmt, nudt15, coordinator, site, name, dob, sex, phase = cells
    start_on = _day("start", start)
    if start_on is None:
        raise UserError("start is empty")
    try:
        weight = float(weight_kg)
    except ValueError:
        raise UserError(f"weight_kg {weight_kg!r} is not a number") from None
    phase = phase or Phase.INDUCTION.value
    if phase not in PHASES:
        raise UserError(f"phase {phase!r} is not one of {', '.join(p.value for p in Phase)}")
    return EnrollmentRequest(
        mrn=mrn, protocol=sys.intern(protocol), start_on=start_on, weight_kg=weight, phase=Phase(phase),
        name=name or None, dob=_day("dob", dob), sex=_shared(sex), tpmt=_shared(tpmt), nudt15=_shared(nudt15),
        coordinator=_shared(coordinator), site=_shared(site),
    )


def read_enrollments(path: Path, library: Library, *, today: date, dates: DateRange = DEFAULT_DATES,
                     progress: Callable[[int], None] | None = None) -> list[CohortRow]:
    """Every row as a request with its line number, or a UserError that lists every bad row by line
    number. `progress(rows)` every PROGRESS_EVERY rows checked."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise UserError(f"{path}: missing columns {', '.join(missing)} "
                                f"(needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
            width = len(header)
            at = {name: i for i, name in enumerate(header)}  # a column named twice: its last cell
            # Where each field's cell is; a column the file lacks (or a short row) reads the "" after the row.
            fields = [at.get(name, width) for name in (*REQUIRED, *OPTIONAL)]
            rows: list[CohortRow] = []
            errors: list[str] = []
            seen: dict[str, int] = {}
            count = 0
            for cells in reader:
                if not cells:
                    continue  # a blank line
                count += 1
                if progress is not None and count % PROGRESS_EVERY == 0:
                    progress(count)
                line = reader.line_num
                stripped = [c.strip() for c in cells[:width]]
                stripped += [""] * (width + 1 - len(stripped))
                try:
                    req = _row([stripped[i] for i in fields])
                    check_request(req, library, today=today, dates=dates)
                except UserError as e:
                    errors.append(f"line {line}: {e}")
                    continue
                if req.mrn in seen:
                    errors.append(f"line {line}: MRN also on line {seen[req.mrn]}")
                    continue
                seen[req.mrn] = line
                rows.append(CohortRow(line, req))
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the spreadsheet as UTF-8 CSV") from None
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise UserError(f"{path}: {len(errors)} bad rows, nothing enrolled:\n  {shown}{more}")
    return rows
