"""What every command reads from its arguments: the App, a choice, a date."""

from __future__ import annotations

from datetime import date

import typer

from monitor.app import App
from monitor.domain.errors import UserError
from monitor.services import checks


def app_of(ctx: typer.Context) -> App:
    obj = ctx.find_root().obj
    assert isinstance(obj, App)
    return obj


def choose(value: str, option: str, *allowed: str) -> str:
    if value not in allowed:
        raise UserError(f"{option} {value!r} must be one of {', '.join(allowed)}")
    return value


def parse_date(value: str | None, option: str = "--date") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None


def day_or_today(a: App, value: str | None, option: str = "--date") -> date:
    """A clinical date option (default today), refused when far from today (settings [dates])."""
    day = parse_date(value, option)
    if day is None:
        return a.today()
    checks.check_date(day, option, today=a.today(), dates=a.settings.dates.range)
    return day
