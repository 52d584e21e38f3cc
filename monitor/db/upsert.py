"""INSERT ... ON CONFLICT DO NOTHING on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


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
