"""Integration tests: real SQLite files and real PostgreSQL databases, no mocks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import SQLModel

import monitor.db.tables  # noqa: F401  (every table on the metadata)


def dump_tables(engine: Engine, *, exclude: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order: compare two dumps to prove nothing changed."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in exclude:
                continue
            query = select(table).order_by(*table.primary_key.columns)
            dump[table.name] = [tuple(row) for row in conn.execute(query)]
    return dump
