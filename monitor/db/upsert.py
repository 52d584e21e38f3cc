"""INSERT ... ON CONFLICT DO NOTHING on both databases."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import String, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.selectable import TextualSelect
from sqlmodel import Session, SQLModel

from monitor.db.encoding import Encoders, day_text, same, utc_text


def insert_ignore(
    session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> list[int]:
    """Insert the rows whose natural key is new; return the ids of those inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__  # type: ignore[attr-defined]
    # RETURNING says exactly what was inserted on both databases (executemany's rowcount is -1 on psycopg).
    stmt = insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(*table.primary_key.columns)
    return [row[0] for row in session.execute(stmt, list(rows)).all()]


def upsert(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert the rows, or update every other column of the row with the same natural key."""
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(model.__table__)  # type: ignore[attr-defined]
    changed = {name: stmt.excluded[name] for name in rows[0] if name not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changed), list(rows))


def driver(session: Session) -> tuple[Any, bool]:
    """The DBAPI connection of the session's transaction, and whether it is SQLite."""
    connection = session.connection()
    raw = connection.connection.driver_connection
    assert raw is not None
    return raw, connection.dialect.name == "sqlite"


def temporal_encoders(session: Session) -> Encoders:
    """How `bulk_insert_ignore` rows carry an aware instant and a date: as SQLAlchemy's types bind
    them (UTC text and ISO text on SQLite; the objects themselves on PostgreSQL)."""
    return (utc_text, day_text) if driver(session)[1] else (same, same)


def bulk_insert_ignore(session: Session, model: type[SQLModel], columns: Sequence[str],
                       rows: Sequence[Sequence[Any]], keys: Sequence[str]) -> int:
    """`insert_ignore` for the hot ingestion path: one DBAPI executemany of value tuples in
    `columns` order, no per-row ORM work. Instants and dates must come encoded by
    `temporal_encoders`. Returns how many rows were inserted."""
    if not rows:
        return 0
    raw, sqlite_ = driver(session)
    names = _names(session, columns)
    marks = ", ".join("?" if sqlite_ else "%s" for _ in columns)
    sql = (f"INSERT INTO {_table(session, model)} ({names}) VALUES ({marks}) "
           f"ON CONFLICT ({_names(session, keys)}) DO NOTHING")
    if not sqlite_:
        with raw.cursor() as cursor:
            cursor.executemany(sql, rows)
            return int(cursor.rowcount)
    before = raw.total_changes
    raw.executemany(sql, rows)
    return int(raw.total_changes - before)


def bulk_insert(session: Session, model: type[SQLModel], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows that are all new (one that is not fails, as an INSERT would), in order, the
    fastest way each database has: one executemany on SQLite, COPY on PostgreSQL (twice as fast
    as anything with an INSERT there: bench/enroll.py). Values as for `bulk_insert_ignore`, plus
    JSON as its text."""
    if not rows:
        return
    raw, sqlite_ = driver(session)
    table, names = _table(session, model), _names(session, columns)
    if sqlite_:
        raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
        return
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _table(session: Session, model: type[SQLModel]) -> str:
    return str(session.get_bind().dialect.identifier_preparer.quote(model.__table__.name))  # type: ignore[attr-defined]


def _names(session: Session, columns: Sequence[str]) -> str:
    """Column names as SQL: quoted where they need it (`on` is a keyword)."""
    quote = session.get_bind().dialect.identifier_preparer.quote
    return ", ".join(quote(c) for c in columns)


def select_in(session: Session, model: type[SQLModel], columns: Sequence[str], key: str,
              values: Collection[Any]) -> list[tuple[Any, ...]]:
    """`SELECT columns WHERE key IN values` through the DBAPI: the hot path's lookups, without
    compiling a statement with thousands of bound parameters. Plain columns only (no type
    processing): use it for keys, ids and numbers."""
    if not values:
        return []
    table = model.__table__.name  # type: ignore[attr-defined]
    raw, sqlite_ = driver(session)
    if sqlite_:
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} IN ({', '.join('?' * len(values))})"
        return list(raw.execute(sql, list(values)).fetchall())
    with raw.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ANY(%s)", [list(values)])
        return list(cursor.fetchall())


def may_hold_any(session: Session, model: type[SQLModel], key: str, values: Collection[str]) -> bool:
    """False only when no row's `key` lies between the least and the greatest of `values`, so none
    of them can be there: one index probe instead of one per value. A time-ordered feed's keys
    (see csv_reader) are all past every stored key. Only SQLite compares text as Python does
    (by code point); on PostgreSQL, which sorts by the database's collation, it says True."""
    raw, sqlite_ = driver(session)
    if not values or not sqlite_:
        return bool(values)
    table = model.__table__.name  # type: ignore[attr-defined]
    sql = f"SELECT 1 FROM {table} WHERE {key} BETWEEN ? AND ? LIMIT 1"
    return raw.execute(sql, (min(values), max(values))).fetchone() is not None


def one_of(session: Session, values: Collection[str]) -> TextualSelect:
    """The values as a one-column subquery for `column.in_(...)`, bound as one JSON array: a
    cohort's 100,000 MRNs are more parameters than a statement may have."""
    listed = json.dumps(list(values))
    if session.get_bind().dialect.name == "postgresql":
        sql = "SELECT json_array_elements_text(CAST(:listed AS json)) AS value"
    else:
        sql = "SELECT value FROM json_each(:listed)"
    return text(sql).bindparams(listed=listed).columns(value=String)
