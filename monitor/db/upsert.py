"""INSERT ... ON CONFLICT DO NOTHING on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Date
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from monitor.db.types import UTCDateTime


def insert_ignore(
    session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> int:
    """Insert the rows whose natural key is new; return how many were inserted."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__  # type: ignore[attr-defined]
    # RETURNING counts exactly on both databases (executemany's rowcount is -1 on psycopg).
    stmt = insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(*table.primary_key.columns)
    return len(session.execute(stmt, list(rows)).all())


@lru_cache(maxsize=8192)  # results of one draw share their instant; received_at is the same for a batch
def _utc_text(value: datetime) -> str:
    """What UTCDateTime binds on SQLite: the UTC wall clock as SQLAlchemy's DATETIME text."""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def bulk_insert_ignore(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]],
                       keys: Sequence[str]) -> int:
    """`insert_ignore` for the hot ingestion path: one DBAPI executemany, no per-row ORM work.

    Every row must carry the same columns. Returns how many rows were inserted.
    """
    if not rows:
        return 0
    table = model.__table__  # type: ignore[attr-defined]
    columns = list(rows[0])
    connection = session.connection()
    sqlite_ = connection.dialect.name == "sqlite"
    marks = ", ".join("?" if sqlite_ else "%s" for _ in columns)
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}) "
           f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")
    raw = connection.connection.driver_connection
    assert raw is not None
    values = itemgetter(*columns)
    if not sqlite_:
        with raw.cursor() as cursor:
            cursor.executemany(sql, [values(row) for row in rows])
            return int(cursor.rowcount)
    instants = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
    days = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, Date)]
    params = []
    for row in rows:
        item = list(values(row))
        for i in instants:
            if item[i] is not None:
                item[i] = _utc_text(item[i])
        for i in days:
            if item[i] is not None:
                item[i] = item[i].isoformat()
        params.append(item)
    before = raw.total_changes
    raw.executemany(sql, params)
    return int(raw.total_changes - before)
