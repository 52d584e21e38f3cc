"""Integration tests: real SQLite files and real PostgreSQL databases, no mocks."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlmodel import SQLModel

import monitor.db.tables  # noqa: F401  (every table on the metadata)
from monitor.ingest.records import ReadOptions
from monitor.protocols import Library, packaged_library
from monitor.services.prepare import Context

LONDON = ZoneInfo("Europe/London")


def ingest_context(now: datetime, *, library: Library | None = None, options: ReadOptions | None = None) -> Context:
    """How the tests ingest: the packaged catalog (or `library`'s), London, results held 180 days;
    with a `library`, critical results are evaluated at once."""
    catalog = (library or packaged_library()).catalog
    return Context(catalog=catalog, clinic_zone=LONDON, hold_days=180, now=now, library=library, options=options)


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
