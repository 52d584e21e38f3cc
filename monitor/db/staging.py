"""PostgreSQL's COPY for the ingestion hot path: a batch's keys looked up, and its new rows written,
without a statement per row.

A batch of 10,000 results through executemany cost psycopg ~20 µs of Python a row, and looking its
keys up with `= ANY(array)` ~3 µs more (bench/ingest.py: 14,600 CSV results/s). Here the keys go
through binary COPY into a temporary table and one statement finds what is already stored under
them (`stored_under`); the rows found new go through binary COPY straight into their table
(`copy_new`). COPY into the table itself, not into a staging table merged by INSERT ... SELECT ...
ON CONFLICT: the server spent a third less on it (heap_multi_insert, one WAL record a page), and
the lookup has already said which rows are new. If another writer stored one of those keys since
(the MLLP listener), the COPY fails on the unique key, is rolled back to its savepoint, and the rows
go through INSERT ... ON CONFLICT DO NOTHING instead: the same rows and counts either way.

Batches smaller than `COPY_MIN` (an MLLP message) keep the statements of `monitor.db.upsert`: a
temporary table costs more round trips than it saves there.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlmodel import Session, SQLModel

from monitor.db.upsert import bulk_insert_ignore, driver, may_hold_any, select_in

#: Rows from which a batch goes through COPY on PostgreSQL.
COPY_MIN = 500
#: The temporary table a batch's keys are copied into (one a connection, emptied at each commit).
STAGED = "ingest_keys"


def stored_under(session: Session, models: Sequence[type[SQLModel]], key: str, values: Collection[str],
                 columns: Sequence[str]) -> list[tuple[type[SQLModel], Any, tuple[Any, ...]]]:
    """The rows of `models` whose `key` is one of `values`, as (model, key, `columns`), in the order
    of `models` (a later model's row for the same key comes later). One row a model and key: where
    `key` is not unique, the newest (the highest id, what the index returns last)."""
    if not values:
        return []
    raw, sqlite = driver(session)
    postgres = not sqlite
    if not postgres or len(values) < COPY_MIN:
        return [(model, row[0], row[1:]) for model in models if may_hold_any(session, model, key, values)
                for row in select_in(session, model, (key, *columns), key, values)]
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGED} (key text) ON COMMIT DELETE ROWS")
        cursor.execute(f"TRUNCATE {STAGED}")
        with cursor.copy(f"COPY {STAGED} (key) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text"])
            for value in values:
                copy.write_row((value,))
        cursor.execute(" UNION ALL ".join(_lookup(i, model, key, columns) for i, model in enumerate(models)))
        found = sorted(cursor.fetchall(), key=lambda row: row[0])  # in the order of `models`
    return [(models[i], k, tuple(rest)) for i, k, *rest in found]


def _lookup(position: int, model: type[SQLModel], key: str, columns: Sequence[str]) -> str:
    """One model's part of `stored_under`. A lateral subquery with LIMIT makes it one index probe per
    staged key whatever the planner thinks of the temporary table (never analysed: a hash join would
    read the whole result table). The uncorrelated EXISTS runs once: when no stored key lies between
    the least and the greatest staged key (by the database's own collation), no probe is made at
    all — a feed in time order, whose keys (see csv_reader) follow every stored key."""
    table = model.__table__  # type: ignore[attr-defined]
    newest = "" if table.c[key].unique else " ORDER BY id DESC"
    return (f"(SELECT {position}, s.key, {', '.join(f'r.{c}' for c in columns)} FROM {STAGED} s "
            f"CROSS JOIN LATERAL (SELECT {', '.join(columns)} FROM {table.name} WHERE {key} = s.key{newest} LIMIT 1) r "
            f"WHERE EXISTS (SELECT 1 FROM {table.name} WHERE {key} BETWEEN (SELECT min(key) FROM {STAGED}) "
            f"AND (SELECT max(key) FROM {STAGED})))")


def copy_new(session: Session, model: type[SQLModel], columns: Sequence[str], rows: Sequence[Sequence[Any]],
             keys: Sequence[str]) -> int:
    """`bulk_insert_ignore` for rows whose keys were just looked up and found new: on PostgreSQL, for
    `COPY_MIN` rows or more, one binary COPY. Returns how many rows were inserted."""
    raw, sqlite = driver(session)
    postgres = not sqlite
    if not postgres or len(rows) < COPY_MIN:
        return bulk_insert_ignore(session, model, columns, rows, keys)
    from psycopg.errors import UniqueViolation  # PostgreSQL only: psycopg is an optional dependency

    table = model.__table__.name  # type: ignore[attr-defined]
    with raw.cursor() as cursor:
        types = _types(cursor, table)
        cursor.execute("SAVEPOINT copy_new")
        try:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([types[c][0] for c in columns])
                for row in rows:
                    copy.write_row(row)
        except UniqueViolation:  # stored meanwhile by another writer: insert the others, one statement
            cursor.execute("ROLLBACK TO SAVEPOINT copy_new")
            return bulk_insert_ignore(session, model, columns, rows, keys)
        cursor.execute("RELEASE SAVEPOINT copy_new")
    return len(rows)


def update_by_id(session: Session, model: type[SQLModel], columns: Sequence[str],
                 rows: Sequence[Sequence[Any]]) -> None:
    """Set `columns` of the rows with these ids: each row is (id, *values), at most one row an id,
    values encoded as for `bulk_insert_ignore`. One statement on PostgreSQL (UPDATE ... FROM
    unnest), one executemany on SQLite."""
    if not rows:
        return
    table = model.__table__.name  # type: ignore[attr-defined]
    raw, sqlite = driver(session)
    postgres = not sqlite
    if not postgres:
        raw.executemany(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                        [(*values, id_) for id_, *values in rows])
        return
    names = ["id", *columns]
    with raw.cursor() as cursor:
        types = _types(cursor, table)
        arrays = ", ".join(f"%s::{types[name][1]}[]" for name in names)
        cursor.execute(f"UPDATE {table} t SET {', '.join(f'{c} = u.{c}' for c in columns)} "
                       f"FROM unnest({arrays}) AS u({', '.join(names)}) WHERE t.id = u.id",
                       [list(column) for column in zip(*rows, strict=True)])


def _types(cursor: Any, table: str) -> dict[str, tuple[int, str]]:
    """Each column of `table`: its type's oid and name, as the server has them."""
    rows = cursor.execute("SELECT attname, atttypid, format_type(atttypid, NULL) FROM pg_attribute "
                          "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [table]).fetchall()
    return {name: (oid, shown) for name, oid, shown in rows}
