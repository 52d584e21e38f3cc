"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC. Naive datetimes are refused.

    `DateTime(timezone=True)` alone stores wall-clock text on SQLite and reads it back naive
    (ECOSYSTEM.md gotcha 12); this keeps both databases exact.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        instant = value.astimezone(UTC)
        return instant.replace(tzinfo=None) if dialect.name == "sqlite" else instant

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_instant(raw: datetime | str | None) -> datetime | None:
    """A UTCDateTime column's value as the driver gives it (`type_coerce(column, String)`: SQLite's
    text, PostgreSQL's aware datetime), as UTCDateTime reads it. For bulk reads: the results of one
    draw share a collection time, parsed once."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return _parsed(raw)
    return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)


@lru_cache(maxsize=4096)
def _parsed(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def read_date(raw: date | str) -> date:
    """A Date column's value as the driver gives it (`type_coerce(column, String)`: SQLite's text,
    PostgreSQL's date), parsed once per distinct day."""
    return _day(raw) if isinstance(raw, str) else raw


@lru_cache(maxsize=8192)
def _day(text: str) -> date:
    return date.fromisoformat(text)
