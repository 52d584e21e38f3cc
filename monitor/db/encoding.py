"""How rows written through the DBAPI carry instants and dates: as SQLAlchemy's column types
bind them. Standard library only: a worker process preparing rows imports it without the
database layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

#: How rows carry an aware instant and a date: `(utc_text, day_text)` on SQLite, `(same, same)`
#: on PostgreSQL (see `monitor.db.upsert.temporal_encoders`).
Encoders = tuple[Callable[[datetime], Any], Callable[[date], Any]]


@lru_cache(maxsize=8192)  # results of one draw share their instant; received_at is the same for a batch
def utc_text(value: datetime) -> str:
    """What UTCDateTime binds on SQLite: the UTC wall clock as SQLAlchemy's DATETIME text."""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@lru_cache(maxsize=8192)
def day_text(value: date) -> str:
    return value.isoformat()


def same(value: Any) -> Any:
    return value
