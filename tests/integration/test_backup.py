"""`monitor backup` and `monitor restore` on SQLite and PostgreSQL: a clinic round-trips (the same
overdue review, the same rows, an intact audit trail); a non-empty database is refused unless
--force; a backup never overwrites a file; a backup taken while another process writes is one
instant of the database."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from monitor.db.backup import row_counts
from monitor.db.session import make_engine
from monitor.services.audit import audit, verify_chain
from tests.functional.cli import run
from tests.integration.test_web import clinic  # noqa: F401  (the fixture)

pytestmark = pytest.mark.db


def test_a_clinic_round_trips_through_backup_and_restore(clinic: Engine, second_url: str, tmp_path: Path,  # noqa: F811
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "clinic.backup"
    made = run(capsys, "backup", str(copy))
    assert made.code == 0 and "rows in" in made.out, made.err
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    before, counts = run(capsys, "overdue", "--format", "json").out, row_counts(clinic)
    assert run(capsys, "backup", str(copy)).code == 2  # never over a file
    monkeypatch.setenv("MONITOR_DATABASE_URL", second_url)
    restored = run(capsys, "restore", str(copy))
    assert restored.code == 0 and "chain intact" in restored.out, restored.err
    assert run(capsys, "overdue", "--format", "json").out == before
    second = make_engine(second_url)
    assert row_counts(second) == counts
    second.dispose()
    again = run(capsys, "restore", str(copy))
    assert again.code == 2 and "not empty" in again.err
    assert run(capsys, "restore", str(copy), "--force").code == 0
    assert run(capsys, "audit", "verify").code == 0


def test_a_file_that_is_not_a_backup_is_refused_with_one_line(db_url: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    r = run(capsys, "restore", str(junk))
    assert r.code == 2 and "not a monitor backup" in r.err and "Traceback" not in r.err
    assert run(capsys, "restore", str(tmp_path / "missing")).code == 2


def test_a_backup_taken_while_another_process_writes_is_one_instant(clinic: Engine, tmp_path: Path,  # noqa: F811
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()

    def write() -> None:  # the audit trail grows while the copy is taken: each row chained to the last
        while not stop.is_set():
            with Session(clinic) as s:
                audit(s, actor="writer", action="test", entity="none", entity_id=None, now=datetime.now(UTC))
                s.commit()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for n in range(3):
            assert run(capsys, "backup", str(tmp_path / f"copy{n}")).code == 0
    finally:
        stop.set()
        writer.join()
    if clinic.url.get_backend_name() != "sqlite":
        return  # pg_dump's snapshot is PostgreSQL's own guarantee; the round trip above restores one
    for n in range(3):
        copy = make_engine(f"sqlite:///{tmp_path / f'copy{n}'}")
        with Session(copy) as s:
            assert verify_chain(s).intact  # no half-written event, none missing between two
        copy.dispose()
