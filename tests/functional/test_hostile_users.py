"""Data integrity under hostile input, through the real entry point: nothing lost, nothing leaked,
never a traceback. The demo never replaces a clinic's files.

Each test failed before its fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
