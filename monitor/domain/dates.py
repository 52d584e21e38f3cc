"""Plausible clinical dates: a date typed or sent far from today is a mistake, not a fact.

Enrollment starts, recorded events, `--date` and lab collection times are checked where they
enter; one outside the configured range is refused (exit 2) or quarantined, never stored, so a
date like 0001-01-01 can never reach the daily cycle (where it overflowed date arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none, or before year 1
        return date.min if day.year - years < 1 else day.replace(year=day.year - years, day=28)


@dataclass(frozen=True)
class DateRange:
    """How far from today a clinical date may be (settings `[dates]`)."""

    years_back: int = 100
    days_ahead: int = 366
    results_days_ahead: int = 1

    def window(self, today: date, *, result: bool = False) -> tuple[date, date]:
        ahead = self.results_days_ahead if result else self.days_ahead
        latest = date.max if (date.max - today).days <= ahead else today + timedelta(days=ahead)
        return years_before(today, self.years_back), latest

    def problem(self, day: date, today: date, what: str, *, result: bool = False) -> str | None:
        """Why `day` is not a plausible `what`, or None."""
        earliest, latest = self.window(today, result=result)
        if earliest <= day <= latest:
            return None
        return (f"{what} {day.isoformat()} is outside {earliest.isoformat()}..{latest.isoformat()} "
                f"(settings [dates]: {self.years_back} years back, "
                f"{self.results_days_ahead if result else self.days_ahead} days ahead of {today.isoformat()})")


#: The packaged defaults (config/monitor.toml [dates]), for callers without settings at hand.
DEFAULT_DATES = DateRange()
