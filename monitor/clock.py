"""The only place that reads the clock. Everything below the entry points is handed `today`/`now`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def now_utc() -> datetime:
    return datetime.now(UTC)


def today(zone: ZoneInfo) -> date:
    """Today's date in the clinic's time zone."""
    return now_utc().astimezone(zone).date()
