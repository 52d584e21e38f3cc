"""Migrations and column types on both databases: a fresh SQLite file and a throwaway PostgreSQL database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import StatementError
from sqlmodel import Session, SQLModel, col, select

from alembic import command
from monitor.db.migrate import alembic_config, is_current, upgrade_to_head
from monitor.db.session import make_engine
from monitor.db.tables import AuditEvent
from tests.conftest import create_database, drop_database

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
TABLES = {t.name for t in SQLModel.metadata.sorted_tables}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database, never migrated: a new SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fresh') / 'monitor.db'}"
        return
    url, admin = create_database(request.getfixturevalue("pg_server"))
    try:
        yield url
    finally:
        drop_database(admin, url)


@pytest.fixture
def empty_engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(pg_server: str) -> Iterator[str]:
    url, admin = create_database(pg_server)
    try:
        yield url
    finally:
        drop_database(admin, url)


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema(engine: Engine) -> dict[str, object]:
    """Columns, indexes and unique constraints of every table, as comparable text."""
    found = inspect(engine)
    return {name: ([(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)],
                   sorted((i["name"] or "", tuple(map(str, i["column_names"])))
                          for i in found.get_indexes(name)),
                   sorted(u["name"] or "" for u in found.get_unique_constraints(name)))
            for name in sorted(found.get_table_names())}


def test_upgrade_to_head_builds_exactly_the_schema_the_models_describe(empty_engine: Engine) -> None:
    assert not is_current(empty_engine)
    upgrade_to_head(empty_engine)
    assert revision(empty_engine) == HEAD
    assert table_names(empty_engine) == TABLES | {"alembic_version"}
    assert differences(empty_engine) == []


def test_a_second_upgrade_to_head_changes_nothing(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    with Session(empty_engine) as s:
        s.add(AuditEvent(at=datetime(2026, 1, 5, 9, tzinfo=UTC), actor="t", action="a", entity="e"))
        s.commit()
    before = schema(empty_engine)
    upgrade_to_head(empty_engine)
    assert revision(empty_engine) == HEAD
    assert schema(empty_engine) == before
    with Session(empty_engine) as s:
        assert len(s.exec(select(AuditEvent)).all()) == 1


def test_downgrade_to_base_removes_every_table_and_upgrade_rebuilds_them(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    cfg = alembic_config()
    with empty_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert table_names(empty_engine) <= {"alembic_version"}
    assert revision(empty_engine) is None
    upgrade_to_head(empty_engine)
    assert revision(empty_engine) == HEAD
    assert differences(empty_engine) == []


def test_four_processes_starting_at_once_migrate_one_at_a_time(postgres_url: str) -> None:
    """Several daemons starting together on an empty PostgreSQL database: the advisory lock
    serialises them and every one of them succeeds."""
    start = threading.Barrier(4)

    def start_daemon() -> str | None:
        engine = make_engine(postgres_url)
        try:
            start.wait(timeout=30)
            upgrade_to_head(engine)
            return revision(engine)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(start_daemon) for _ in range(4)]
        revisions = [f.result(timeout=120) for f in futures]
    assert revisions == [HEAD] * 4
    engine = make_engine(postgres_url)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


INSTANTS = [  # (written, the same instant in UTC)
    (datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=ZoneInfo("Europe/London")),  # BST, UTC+1
     datetime(2026, 7, 1, 13, 30, 15, 123456, tzinfo=UTC)),
    (datetime(2026, 1, 15, 8, 0, tzinfo=ZoneInfo("Europe/London")),  # GMT, UTC+0
     datetime(2026, 1, 15, 8, 0, tzinfo=UTC)),
    (datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("America/New_York")),  # EDT, UTC-4
     datetime(2026, 3, 29, 4, 30, tzinfo=UTC)),
]


def test_an_aware_instant_comes_back_as_the_same_utc_instant(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    with Session(empty_engine) as s:
        for n, (written, _) in enumerate(INSTANTS):
            s.add(AuditEvent(at=written, actor="t", action=f"a{n}", entity="e"))
        s.commit()
    with Session(empty_engine) as s:
        read = list(s.exec(select(AuditEvent.at).order_by(col(AuditEvent.id))).all())
    assert read == [instant for _, instant in INSTANTS] == [written for written, _ in INSTANTS]
    assert all(r.tzinfo is not None and r.utcoffset() == timedelta(0) for r in read)
    with empty_engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # stored as UTC wall-clock text, not the local time written
            raw = conn.execute(text("SELECT at FROM audit_event ORDER BY id")).scalars()
            stored = [str(v)[:19] for v in raw]
        else:
            stored = list(conn.execute(text("SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                                            "FROM audit_event ORDER BY id")).scalars())
    assert stored == [instant.strftime("%Y-%m-%d %H:%M:%S") for _, instant in INSTANTS]


def test_a_naive_datetime_is_refused(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    with Session(empty_engine) as s:
        s.add(AuditEvent(at=datetime(2026, 7, 1, 14, 30), actor="t", action="a", entity="e"))
        with pytest.raises(StatementError, match="aware datetime"):
            s.commit()
    with Session(empty_engine) as s:
        assert s.exec(select(AuditEvent)).all() == []


def _migrate(engine: Engine, verb: str, target: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, target)


def test_0004_rewrites_derived_csv_keys_time_first_and_back(empty_engine: Engine) -> None:
    """A CSV file ingested before 0004 must still be a duplicate after it (and after a downgrade)."""
    _migrate(empty_engine, "upgrade", "0003")
    at, on = "2026-01-05 12:00:00.000000", "2026-01-05"
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO patient (id, mrn, created_at) VALUES (1, 'MRN-1', :at)"), {"at": at})
        common = ("'csv', 'WBC', :code, '5', '10*9/L', 5.0, '10*9/L', 'final', :at, :on, :at")
        columns = ("source, analyte, code, raw_value, raw_unit, value, unit, status, observed_at, observed_on, "
                   "received_at")
        for key, code in (("csv:MRN-1|6690-2|2026-01-05", "6690-2"), ("csv:LIMS-77", "6690-2"),
                          ("synthea-csv:MRN-1|6690-2|2026-01-05T08:00:00Z", "6690-2")):
            conn.execute(text(f"INSERT INTO lab_result (source_key, patient_id, {columns}) "
                              f"VALUES (:key, 1, {common})"), {"key": key, "code": code, "at": at, "on": on})
        conn.execute(text(f"INSERT INTO held_result (source_key, mrn, expires_on, {columns}) "
                          f"VALUES ('csv:MRN-2|777-3|2026-01-06', 'MRN-2', :on, {common})"),
                     {"code": "777-3", "at": at, "on": on})

    def keys() -> list[str]:
        with empty_engine.connect() as conn:
            return sorted(conn.execute(text("SELECT source_key FROM lab_result UNION ALL "
                                            "SELECT source_key FROM held_result")).scalars())

    before = keys()
    _migrate(empty_engine, "upgrade", "0004")
    assert keys() == sorted(["csv:2026-01-05|MRN-1|6690-2", "csv:LIMS-77", "csv:2026-01-06|MRN-2|777-3",
                             "synthea-csv:2026-01-05T08:00:00Z|MRN-1|6690-2"])
    _migrate(empty_engine, "downgrade", "0003")
    assert keys() == before
