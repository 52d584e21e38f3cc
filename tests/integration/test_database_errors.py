"""A database that cannot be opened or used, on real SQLite files and a real PostgreSQL server:
one line that says which database, what failed and what to check; never a traceback, a
password or patient data. Each test failed before its fix.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, select

from alembic import command
from monitor.db.migrate import alembic_config, upgrade_to_head
from monitor.db.session import make_engine
from monitor.db.tables import Patient
from tests.conftest import create_database, drop_database, server_url
from tests.functional.cli import Ran, run
from tests.functional.test_hostile_users import enroll
from tests.processes import all_at_once

PROTOCOL = "aih-azathioprine"
PASSWORD = "s3cret-pw"


def one_line(r: Ran, code: int = 2) -> str:
    """The only line on stderr of a command that failed with `code`: no traceback, no password."""
    assert r.code == code, (r.code, r.out, r.err)
    assert "Traceback" not in r.err + r.out and PASSWORD not in r.err + r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("monitor: error: "), r.err
    return lines[0]


@pytest.fixture
def own_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database of this test's own, which it may alter by hand (a trigger, an index):
    a SQLite file, or with MONITOR_TEST_DATABASE_URL a new PostgreSQL database. The CLI uses it."""
    admin = None
    if os.environ.get("MONITOR_TEST_DATABASE_URL"):
        server = server_url()
        assert server is not None, "MONITOR_TEST_DATABASE_URL is set but PostgreSQL is not reachable"
        url, admin = create_database(server)
    else:
        url = f"sqlite:///{tmp_path / 'monitor.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    use(monkeypatch, url)
    yield url
    if admin is not None:
        drop_database(admin, url)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)


# --- SQLite files ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("init",), ("overdue",)], ids=["init", "overdue"])
def test_a_file_that_is_not_a_sqlite_database_is_one_line_naming_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        command: tuple[str, ...]) -> None:
    damaged = tmp_path / "monitor.db"
    damaged.write_bytes(b"this was a spreadsheet once\n" * 200)
    use(monkeypatch, f"sqlite:///{damaged}")
    line = one_line(run(capsys, *command))
    assert str(damaged) in line and "not a SQLite database" in line
    assert damaged.read_bytes() == b"this was a spreadsheet once\n" * 200


def test_a_database_in_a_missing_folder_is_one_line_naming_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-folder" / "monitor.db"
    use(monkeypatch, f"sqlite:///{missing}")
    line = one_line(run(capsys, "init"))
    assert str(missing) in line and "cannot be opened" in line and "folder" in line
    assert not missing.parent.exists()


def test_a_read_only_database_is_one_line_for_a_change_and_still_answers_questions(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "monitor.db"
    use(monkeypatch, f"sqlite:///{database}")
    assert enroll(capsys, "A1001").code == 0
    use(monkeypatch, f"sqlite:///file:{database}?mode=ro&uri=true")  # opened read-only, as a file we may not write
    line = one_line(enroll(capsys, "A1002"))
    assert str(database) in line and "read-only" in line
    listed = run(capsys, "overdue", "--format", "json")
    assert listed.code == 0 and listed.json() == [], listed.err


def test_a_database_made_by_a_newer_monitor_is_one_line_saying_so(
        capsys: pytest.CaptureFixture[str], own_url: str) -> None:
    engine = make_engine(own_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    line = one_line(run(capsys, "overdue"))
    assert "9999" in line and "newer" in line


# --- URLs and servers --------------------------------------------------------------------------

def test_a_postgresql_port_nobody_listens_on_is_one_line_without_the_password(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    use(monkeypatch, f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/clinic")
    line = one_line(run(capsys, "overdue"))
    assert f"postgresql+psycopg://postgres:***@127.0.0.1:{port}/clinic" in line
    assert "cannot connect" in line and "refused" in line


def test_a_postgresql_database_that_does_not_exist_is_one_line_naming_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_server: str) -> None:
    url = make_url(pg_server).set(password=PASSWORD, database="no_such_clinic")
    use(monkeypatch, url.render_as_string(hide_password=False))
    line = one_line(run(capsys, "init"))
    assert "no_such_clinic" in line and "does not exist" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [("foo://clinic/monitor", "unknown kind of database 'foo'"),
     (f"postgresql+psycopg://postgres:{PASSWORD}@db.example:port/clinic", "is not a database URL"),
     ("sqlite-but-not-a-url", "is not a database URL")],
    ids=["unknown-scheme", "bad-port-with-password", "not-a-url"])
def test_a_url_monitor_cannot_use_is_one_line_without_the_password(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, says: str) -> None:
    use(monkeypatch, url)
    assert says in one_line(run(capsys, "init"))


# --- a database that refuses a change ----------------------------------------------------------

def test_a_change_the_database_refuses_is_one_line_without_the_patient_data_it_carried(
        capsys: pytest.CaptureFixture[str], own_url: str) -> None:
    engine = make_engine(own_url)
    with engine.begin() as conn:  # someone added a rule of their own to the clinic's database
        conn.execute(text("CREATE UNIQUE INDEX one_name ON patient (name)"))
    assert enroll(capsys, "A1001", "--name", "Ada Example").code == 0
    line = one_line(enroll(capsys, "B2002", "--name", "Ada Example"), code=1)
    assert "refused" in line and "report" in line
    assert "Ada" not in line and "B2002" not in line
    with Session(engine) as s:
        assert s.exec(select(Patient.mrn)).all() == ["A1001"]
    engine.dispose()


def refuse_inbound_messages(url: str) -> None:
    """A trigger, made by hand, that refuses every message the listener stores."""
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON inbound_message "
                              "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON inbound_message "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    engine.dispose()


def test_the_mllp_listener_never_prints_the_raw_message_when_the_database_refuses_it(
        own_url: str, tmp_path: Path) -> None:
    refuse_inbound_messages(own_url)
    port = free_port()
    env = {**os.environ, "MONITOR_DATABASE_URL": own_url}
    listener = subprocess.Popen([sys.executable, "-m", "monitor", "mllp", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and "listening" in listener.stdout.readline()
        message = ("MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|20261125083000||ORU^R01|CTRL1|P|2.5.1\r"
                   "PID|1||SECRET4711^^^HOSP^MR||SMITHSON^ADA\r"
                   "OBX|1|NM|6690-2^Leukocytes^LN||5.4|10*9/L|||||F\r")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"\x0b" + message.encode() + b"\x1c\r")
            conn.recv(65536)  # an ACK, or the listener closing the connection
        time.sleep(0.5)
    finally:
        listener.terminate()
        _, stderr = listener.communicate(timeout=30)
    assert "SECRET4711" not in stderr and "SMITHSON" not in stderr and "6690-2" not in stderr


# --- commands started together migrate one at a time ---------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database never migrated: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clinic.db'}"
        return
    url, admin = create_database(request.getfixturevalue("pg_server"))
    yield url
    drop_database(admin, url)


@pytest.mark.parametrize("at", [None, "0006"], ids=["fresh", "at-0006"])
def test_four_commands_started_together_on_a_new_or_old_database_all_succeed_and_migrate_once(
        new_url: str, tmp_path: Path, at: str | None) -> None:
    if at is not None:
        engine = make_engine(new_url)
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, at)
        engine.dispose()
    enroll_args = ["--protocol", PROTOCOL, "--start", "2026-01-05", "--weight-kg", "72"]
    done = all_at_once(new_url, tmp_path, [["init"], ["enroll", "--mrn", "R1", *enroll_args], ["init"],
                                           ["enroll", "--mrn", "R2", *enroll_args]])
    assert [(p.returncode, p.stderr) for p in done] == [(0, "")] * 4
    engine = make_engine(new_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert compare_metadata(context, SQLModel.metadata) == []
        with Session(engine) as s:
            assert sorted(s.exec(select(Patient.mrn)).all()) == ["R1", "R2"]
    finally:
        engine.dispose()
