"""Checks on what people type, shared by the commands: every field refused with one line naming it."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from sqlmodel import Session, select

from monitor.db.tables import Enrollment
from monitor.domain.dates import DateRange
from monitor.domain.errors import UserError
from monitor.protocols import Library

MRN_CHARS, NAME_CHARS, SITE_CHARS, ADDRESS_CHARS = 64, 200, 64, 200  # the widths of their columns (db/tables.py)
ACTOR_CHARS = 200  # a clinician's name (--by): confirmed_by, set_by, acknowledged_by, audit actor
#: A coordinator's e-mail address: a plain local part that starts with a letter, digit or _ (so
#: never like a spreadsheet formula) and a domain with at least one dot.
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
ADDRESS = re.compile(rf"\w[\w.%+'-]*@{LABEL}(?:\.{LABEL})+", re.ASCII)
#: Control characters (a NUL, which PostgreSQL refuses; a newline), lone surrogates (not UTF-8) and
#: line or paragraph separators: never part of an MRN, a name or a site.
UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def check_date(day: date, what: str, *, today: date, dates: DateRange) -> None:
    """A clinical date typed far from today is a mistake: refused before anything is written."""
    problem = dates.problem(day, today, what)
    if problem:
        raise UserError(f"{problem}; check the date")


def check_text(value: str, what: str, width: int) -> None:
    """An MRN, a name, a site or a clinician's name fits its column on every database and reads the
    same everywhere. (Printable text has none of the UNPRINTABLE categories: a cohort's 100,000
    names are not looked at a character at a time.)"""
    if (not value or len(value) > width or value != value.strip()
            or (not value.isprintable() and any(unicodedata.category(c) in UNPRINTABLE for c in value))):
        raise UserError(f"{what} must be 1-{width} characters, with no control characters and no spaces at either end")


def check_protocols(session: Session, library: Library) -> None:
    """Protocol files about to replace the ones in use must still hold every protocol an active
    enrollment follows (UserError naming the missing ones)."""
    used = set(session.exec(select(Enrollment.protocol_id).where(Enrollment.status == "active").distinct()).all())
    if missing := sorted(used - set(library.ids())):
        raise UserError(f"protocols {', '.join(missing)} have active enrollments but are not in the new protocol "
                        "files; put them back, or end those enrollments first")
