"""The foundation's promises, end to end through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.cli import run

pytestmark = pytest.mark.usefixtures("db_url")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def enroll(capsys: pytest.CaptureFixture[str], mrn: str = "A1001", start: str = "2026-01-05") -> None:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", start,
            "--weight-kg", "72", "--tpmt", "normal", "--nudt15", "normal",
            "--coordinator", "nurse@example.org", "--site", "north")
    assert r.code == 0, r.err


@pytest.mark.parametrize(
    ("wbc", "severity", "cites"),
    [("3.1", "action", "BSR 2017"),   # BSR 2017 WBC < 3.5 (CLINICAL.md §4.1)
     ("1.8", "critical", "CTCAE v5.0")],  # CTCAE v5 grade 3: 1.0 <= WBC < 2.0 (§4.5)
)
def test_it_flags_leukopenia_from_an_ingested_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   wbc: str, severity: str, cites: str) -> None:
    enroll(capsys)
    labs = write(tmp_path, "labs.csv", f"mrn,collected_at,code,value,unit\nA1001,2026-01-30,6690-2,{wbc},10*9/L\n")
    assert run(capsys, "ingest", str(labs)).code == 0
    assert run(capsys, "run", "--date", "2026-02-01").code == 0
    view = run(capsys, "patient", "A1001", "--format", "json", "--date", "2026-02-01").json()
    [flag] = [f for f in view["flags"] if f["kind"] == "leukopenia"]
    assert flag["severity"] == severity
    assert flag["value"] == float(wbc) and flag["unit"] == "10*9/L"
    assert cites in flag["why"]


def test_a_critical_result_is_flagged_at_ingestion_without_waiting_for_the_daily_cycle(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from freezegun import freeze_time

    with freeze_time("2026-02-01 10:00:00+00:00"):
        enroll(capsys)
        labs = write(tmp_path, "labs.csv", "mrn,collected_at,code,value,unit\nA1001,2026-01-31,6690-2,1.8,10*9/L\n")
        r = run(capsys, "ingest", str(labs))
        assert r.code == 0 and "1 critical flags raised now" in r.out
        [flag] = [f for f in run(capsys, "flags", "--format", "json").json() if f["kind"] == "leukopenia"]
    assert flag["severity"] == "critical" and flag["kind"] == "leukopenia" and flag["mrn"] == "A1001"


def test_a_patient_specific_threshold_replaces_the_protocol_cut_with_its_reason(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    enroll(capsys)
    r = run(capsys, "override", "A1001", "--rule", "bsr17/neutrophils-below-1.6", "--below", "1.3",
            "--reason", "benign ethnic neutropenia")
    assert r.code == 0, r.err
    labs = write(tmp_path, "labs.csv", "mrn,collected_at,code,value,unit\nA1001,2026-01-30,751-8,1.4,10*9/L\n"
                 "A1001,2026-01-31,751-8,1.2,10*9/L\n")
    assert run(capsys, "ingest", str(labs)).code == 0
    assert run(capsys, "run", "--date", "2026-02-01").code == 0
    view = run(capsys, "patient", "A1001", "--format", "json", "--date", "2026-02-01").json()
    neutropenia = [f for f in view["flags"] if f["kind"] == "neutropenia"]
    # 1.4 is above the patient's 1.3 (BSR's 1.6 would flag it); 1.2 is below it (and only CTCAE grade 2)
    assert [(f["value"], f["severity"]) for f in neutropenia] == [(1.2, "action")]
    assert "benign ethnic neutropenia" in neutropenia[0]["why"]
    bad = run(capsys, "override", "A1001", "--rule", "bsr17/neutrophils-below-1.6", "--above", "3",
              "--reason", "x")
    assert bad.code == 2 and "below" in bad.err
