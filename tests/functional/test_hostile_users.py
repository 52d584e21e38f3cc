"""Data integrity under hostile input, through the real entry point: nothing lost, nothing leaked,
never a traceback. The demo never replaces a clinic's files.

Each test failed before its fix.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.db.session import make_engine
from tests.functional.cli import run
from tests.functional.test_cli_contract import one_line_error

PROTOCOL = "aih-azathioprine"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: compare two to prove nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the demo writes only into its own folder ---------------------------------------------------

@pytest.fixture
def clinic_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clinic's working folder: its database (one patient), its cohort and a lab file."""
    folder = tmp_path / "clinic"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    r = run(capsys, "enroll", "--mrn", "A1001", "--protocol", PROTOCOL, "--start", "2026-01-05", "--weight-kg", "72")
    assert r.code == 0, r.err
    (folder / "cohort.csv").write_text("mrn,protocol,start,weight_kg,tpmt,nudt15,coordinator,site\n", encoding="utf-8")
    (folder / "labs.csv").write_text("mrn,collected_at,code,value,unit\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("where", [".", "clinic"], ids=["dot", "named"])
def test_the_demo_refuses_a_clinic_folder_and_touches_none_of_its_files(
        capsys: pytest.CaptureFixture[str], clinic_folder: Path, where: str) -> None:
    before = snapshot(clinic_folder)
    target = "." if where == "." else str(clinic_folder)
    line = one_line_error(run(capsys, "demo", "--dir", target, "--patients", "7"))
    assert "not a demo folder" in line and "--dir" in line
    assert snapshot(clinic_folder) == before


def test_the_demo_refuses_a_file_given_as_its_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("clinic notes", encoding="utf-8")
    assert "not a folder" in one_line_error(run(capsys, "demo", "--dir", str(notes), "--patients", "7"))
    assert notes.read_text(encoding="utf-8") == "clinic notes"


def test_the_demo_writes_into_a_new_or_empty_folder_and_runs_again_in_its_own(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (tmp_path / "new" / "demo", empty, empty):  # the last: again, in the folder it made its own
        r = run(capsys, "demo", "--dir", str(folder), "--patients", "7")
        assert r.code == 0, r.err
        assert (folder / ".monitor-demo").is_file() and (folder / "monitor.db").is_file()
        assert len(list((folder / "outbox").glob("*.eml"))) == 3


# --- files that hold patient data are their owner's alone ----------------------------------------

@pytest.fixture
def default_umask() -> Iterator[None]:
    """The usual umask (022), which lets every user of the machine read a file created with 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("default_umask")
def test_a_new_database_and_its_wal_and_shm_files_are_readable_by_their_owner_only(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "monitor.db"
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{database}")
    r = run(capsys, "enroll", "--mrn", "A1001", "--protocol", PROTOCOL, "--start", "2026-01-05", "--weight-kg", "72")
    assert r.code == 0, r.err
    assert mode(database) == 0o600
    engine = make_engine(f"sqlite:///{database}")  # while a connection writes, the WAL and SHM files exist
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE patient SET name = NULL"))
            wal, shm = (tmp_path / "monitor.db-wal", tmp_path / "monitor.db-shm")
            assert (mode(wal), mode(shm)) == (0o600, 0o600)
    finally:
        engine.dispose()


@pytest.mark.usefixtures("default_umask")
def test_every_file_the_demo_writes_is_readable_by_its_owner_only(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    r = run(capsys, "demo", "--dir", str(folder), "--patients", "7")
    assert r.code == 0, r.err
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"monitor.db", "cohort.csv", "labs.csv", ".monitor-demo"}
    assert len([p for p in written if p.suffix == ".eml"]) == 3
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    assert (mode(folder), mode(folder / "outbox")) == (0o700, 0o700)
