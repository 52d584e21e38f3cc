"""Shared fixtures.

Databases: SQLite files by default. Set MONITOR_TEST_DATABASE_URL to a PostgreSQL server URL
(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and every database test runs on a
throwaway database created there and dropped at the end. Tests that need a service skip when
it is absent, unless MONITOR_REQUIRE_SERVICES=1 (CI), which turns those skips into failures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

import monitor.db.tables  # noqa: F401  (define every model before any freezegun freeze)
from monitor.db.migrate import upgrade_to_head
from monitor.db.session import make_engine

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SHARED = Path(__file__).resolve().parents[2] / "shared"
EXTERNAL = SHARED / "data" / "external"


def require_services() -> bool:
    return os.environ.get("MONITOR_REQUIRE_SERVICES") == "1"


def need(reason: str) -> None:
    """Skip locally, fail in CI: a missing service must never pass silently there."""
    if require_services():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def server_url() -> str | None:
    """A reachable PostgreSQL server URL, or None."""
    url = os.environ.get("MONITOR_TEST_DATABASE_URL") or PG_DEFAULT
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        return None
    return url


def create_database(server: str) -> tuple[str, Engine]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"monitor_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server).set(database=name).render_as_string(hide_password=False), admin


def drop_database(admin: Engine, url: str) -> None:
    name = make_url(url).database
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> str:
    url = server_url()
    if url is None:
        need("PostgreSQL is not reachable (set MONITOR_TEST_DATABASE_URL)")
    assert url is not None
    return url


@pytest.fixture(scope="session")
def migrated_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per test session (per xdist worker)."""
    if os.environ.get("MONITOR_TEST_DATABASE_URL"):
        server = server_url()
        if server is None:
            pytest.fail("MONITOR_TEST_DATABASE_URL is set but PostgreSQL is not reachable")
        url, admin = create_database(server)
        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield url
        drop_database(admin, url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'monitor.db'}"
        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield url


def empty_database(url: str) -> None:
    """Delete every row of a migrated database, its ids starting again from 1."""
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
            conn.execute(text("DELETE FROM sqlite_sequence")) if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first() else None
    engine.dispose()


@pytest.fixture(autouse=True)
def mail_to_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test e-mails a real server by accident (port 25 may have one): the outbox writes .eml
    files unless a test points it at its own SMTP server."""
    monkeypatch.setenv("MONITOR_OUTBOX__TRANSPORT", "file")
    monkeypatch.setenv("MONITOR_OUTBOX__DIRECTORY", str(tmp_path_factory.mktemp("outbox")))


@pytest.fixture
def db_url(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated, empty database; the CLI under test uses it too (MONITOR_DATABASE_URL)."""
    empty_database(migrated_url)
    monkeypatch.setenv("MONITOR_DATABASE_URL", migrated_url)
    monkeypatch.delenv("MONITOR_DATABASE__URL", raising=False)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    yield migrated_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def external() -> Path:
    """The real lab files in ../shared/data/external (read only)."""
    if not EXTERNAL.is_dir():
        need(f"{EXTERNAL} is missing (the shared folder sits beside the repository)")
    return EXTERNAL


@pytest.fixture
def second_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """Another migrated, empty database of the same kind as `db_url` (a clinic to compare with)."""
    if make_url(db_url).get_backend_name() != "postgresql":
        url = f"sqlite:///{tmp_path / 'second.db'}"
        admin = None
    else:
        url, admin = create_database(os.environ.get("MONITOR_TEST_DATABASE_URL") or PG_DEFAULT)
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    yield url
    if admin is not None:
        drop_database(admin, url)
