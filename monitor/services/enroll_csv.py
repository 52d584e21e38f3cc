"""Bulk enrollment from a cohort spreadsheet: every row valid, or nothing written."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from monitor.domain.dates import DEFAULT_DATES, DateRange
from monitor.domain.errors import UserError
from monitor.domain.protocol import Phase
from monitor.protocols import Library
from monitor.services.patients import EnrollmentRequest, check_request

REQUIRED = ("mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site")
OPTIONAL = ("name", "dob", "sex", "phase")
MAX_ERRORS_SHOWN = 20


def _row(row: dict[str, str]) -> EnrollmentRequest:
    def opt(key: str) -> str | None:
        value = (row.get(key) or "").strip()
        return value or None

    def day(key: str) -> date | None:
        value = opt(key)
        try:
            return None if value is None else date.fromisoformat(value)
        except ValueError:
            raise UserError(f"{key} {value!r} is not a date (YYYY-MM-DD)") from None

    start = day("start")
    if start is None:
        raise UserError("start is empty")
    try:
        weight = float(row.get("weight_kg") or "")
    except ValueError:
        raise UserError(f"weight_kg {row.get('weight_kg')!r} is not a number") from None
    phase = opt("phase") or Phase.INDUCTION.value
    if phase not in {p.value for p in Phase}:
        raise UserError(f"phase {phase!r} is not one of {', '.join(p.value for p in Phase)}")
    return EnrollmentRequest(
        mrn=(row.get("mrn") or "").strip(), protocol=(row.get("protocol") or "").strip(), start_on=start,
        weight_kg=weight, phase=Phase(phase), name=opt("name"), dob=day("dob"), sex=opt("sex"),
        tpmt=opt("tpmt"), nudt15=opt("nudt15"), coordinator=opt("coordinator"), site=opt("site"),
    )


def read_enrollments(path: Path, library: Library, *, today: date,
                     dates: DateRange = DEFAULT_DATES) -> list[EnrollmentRequest]:
    """Every row as a request, or a UserError that lists every bad row by line number."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise UserError(f"{path}: missing columns {', '.join(missing)} "
                                f"(needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
            reader.fieldnames = header
            requests: list[EnrollmentRequest] = []
            errors: list[str] = []
            seen: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                try:
                    req = _row(row)
                    check_request(req, library, today=today, dates=dates)
                except UserError as e:
                    errors.append(f"line {line}: {e}")
                    continue
                if req.mrn in seen:
                    errors.append(f"line {line}: MRN also on line {seen[req.mrn]}")
                    continue
                seen[req.mrn] = line
                requests.append(req)
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the spreadsheet as UTF-8 CSV") from None
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise UserError(f"{path}: {len(errors)} bad rows, nothing enrolled:\n  {shown}{more}")
    return requests
