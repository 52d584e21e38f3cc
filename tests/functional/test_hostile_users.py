"""Data integrity under hostile input, through the real entry point: nothing lost, nothing leaked,
never a traceback. The demo never replaces a clinic's files.

Each test failed before its fix.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from monitor.cli_show import write_csv
from monitor.db.session import make_engine
from monitor.db.tables import Enrollment, Patient
from monitor.services.views import FORMULA_START
from tests.functional.cli import Ran, run
from tests.functional.test_cli_contract import one_line_error
from tests.integration import dump_tables

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
        assert len(list((folder / "outbox").glob("digest-*.eml"))) == 3


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
    assert len([p for p in written if p.name.startswith("digest-") and p.suffix == ".eml"]) == 3
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    assert (mode(folder), mode(folder / "outbox")) == (0o700, 0o700)


# --- exports never carry a spreadsheet formula; enrollment fields fit their columns ---------------

HOSTILE = ["=HYPERLINK(\"http://example.org/x\",\"open\")", "+1+1", "-2+3", "@SUM(A1:A9)", "=cmd|' /C calc'!A0"]


def enroll(capsys: pytest.CaptureFixture[str], mrn: str, *extra: str) -> Ran:
    return run(capsys, "enroll", "--mrn", mrn, "--protocol", PROTOCOL, "--start", "2026-01-05", "--weight-kg", "72",
               *extra)


@pytest.mark.usefixtures("db_url")
def test_overdue_csv_and_piped_tables_prefix_every_cell_a_spreadsheet_would_run_as_a_formula(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    for n, value in enumerate(HOSTILE):
        assert enroll(capsys, value, "--site", value, "--coordinator", f"nurse{n}@example.org").code == 0
    with engine.begin() as conn:  # a coordinator stored before addresses were checked
        conn.execute(text("UPDATE enrollment SET coordinator = :c"), {"c": "=cmd|' /C calc'!A0"})
    assert run(capsys, "run", "--date", "2026-03-01").code == 0
    as_csv = run(capsys, "overdue", "--format", "csv", "--date", "2026-03-01")
    assert as_csv.code == 0, as_csv.err
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert {r["mrn"] for r in rows} == {f"'{v}" for v in HOSTILE}
    assert all(r["site"] == r["mrn"] and r["coordinator"] == "'=cmd|' /C calc'!A0" for r in rows)
    assert all(r["days_overdue"].isdigit() for r in rows)  # numbers are never touched
    piped = run(capsys, "overdue", "--date", "2026-03-01").out.splitlines()[3:]
    assert piped and all(line.split("\t")[0] in {f"'{v}" for v in HOSTILE} for line in piped)


@given(st.lists(st.text(st.characters(exclude_categories=["Cs"])) | st.integers() | st.none(), min_size=1, max_size=6))
def test_a_csv_cell_reads_back_as_written_or_quoted_when_it_starts_like_a_formula(
        cells: list[str | int | None]) -> None:
    out = io.StringIO()
    columns = [f"c{i}" for i in range(len(cells))]
    write_csv([dict(zip(columns, cells, strict=True))], columns, out)
    header, row = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert header == columns
    for cell, read in zip(cells, row, strict=True):
        expected = "" if cell is None else str(cell)
        if isinstance(cell, str) and cell.startswith(FORMULA_START):
            expected = "'" + cell
        assert read == expected
        assert not (isinstance(cell, str) and read.startswith(FORMULA_START))


@pytest.mark.usefixtures("db_url")
@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--site", "s" * 65, "site must be 1-64"),
     ("--site", "north\nsouth", "site must be 1-64"),
     ("--site", " ", "site must be 1-64"),
     ("--mrn", "M" * 65, "mrn must be 1-64"),
     ("--mrn", " A1001", "mrn must be 1-64"),
     ("--mrn", "A10\x0001", "mrn must be 1-64"),
     ("--name", "N" * 201, "name must be 1-200"),
     ("--coordinator", "nurse", "coordinator must be an e-mail address"),
     ("--coordinator", "+cmd|' /C calc'!A0", "coordinator must be an e-mail address"),
     ("--coordinator", "=1+1@example.org", "coordinator must be an e-mail address"),
     ("--coordinator", "n" * 190 + "@example.org", "coordinator must be an e-mail address")],
    ids=["site-65", "site-newline", "site-blank", "mrn-65", "mrn-space", "mrn-nul", "name-201", "coordinator-word",
         "coordinator-formula", "coordinator-formula-address", "coordinator-201"])
def test_an_enrollment_field_that_does_not_fit_exits_2_naming_it_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], engine: Engine, option: str, value: str, says: str) -> None:
    fields = {"--mrn": "A1001", option: value}
    before = dump_tables(engine)
    args = [a for o, v in fields.items() for a in (o, v) if o != "--mrn"]
    assert says in one_line_error(enroll(capsys, fields["--mrn"], *args))
    assert dump_tables(engine) == before


@pytest.mark.usefixtures("db_url")
def test_a_cohort_row_whose_site_or_coordinator_does_not_fit_enrolls_nobody(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text("mrn,protocol,start,weight_kg,tpmt,nudt15,coordinator,site\n"
                    f"C1,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north\n"
                    f"C2,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,{'s' * 65}\n"
                    f"C3,{PROTOCOL},2025-03-03,64,normal,normal,=HYPERLINK(1),north\n", encoding="utf-8")
    before = dump_tables(engine)
    r = run(capsys, "enroll", "--csv", str(path))
    assert r.code == 2 and "Traceback" not in r.err
    assert [line.split(":")[0].strip() for line in r.err.splitlines() if line.strip().startswith("line ")] == [
        "line 3", "line 4"]
    assert dump_tables(engine) == before


@pytest.mark.usefixtures("db_url")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(site=st.text(max_size=80), name=st.text(max_size=210))
def test_any_site_or_name_is_stored_exactly_or_refused_with_one_line_on_either_database(
        capsys: pytest.CaptureFixture[str], engine: Engine, site: str, name: str) -> None:
    mrn = f"P{uuid.uuid4().hex[:12]}"
    r = enroll(capsys, mrn, "--site", site, "--name", name)
    with Session(engine) as s:
        stored = s.exec(select(Patient.name, Enrollment.site).join(Enrollment).where(Patient.mrn == mrn)).all()
    if r.code == 0:
        assert stored == [(name, site)]
    else:
        one_line_error(r)
        assert stored == []


@pytest.mark.usefixtures("db_url")
@pytest.mark.parametrize(
    "command",
    [("phase", "A1001", "--to", "maintenance", "--date", "2026-02-02", "--reason", "remission"),
     ("override", "A1001", "--rule", "bsr17/neutrophils-below-1.6", "--below", "1.2", "--reason", "benign"),
     ("ack", "1", "--reason", "repeat FBC booked")],
    ids=["phase", "override", "ack"])
def test_a_clinician_name_too_long_for_its_column_exits_2_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], engine: Engine, command: tuple[str, ...]) -> None:
    assert enroll(capsys, "A1001").code == 0
    assert run(capsys, "run", "--date", "2026-03-01").code == 0  # raises flag 1 (infection screen)
    before = dump_tables(engine)
    assert "--by must be 1-200" in one_line_error(run(capsys, *command, "--by", "Dr " + "x" * 198))
    assert dump_tables(engine) == before


@pytest.mark.usefixtures("db_url")
@pytest.mark.parametrize("command", [("patient", "\udcff\udcfe"), ("enroll", "--mrn", "\udcff", "--protocol", PROTOCOL,
                                                                  "--start", "2026-01-05", "--weight-kg", "72")],
                         ids=["patient", "enroll"])
def test_an_argument_that_is_not_utf8_text_exits_2_with_one_line(
        capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    one_line_error(run(capsys, *command))
