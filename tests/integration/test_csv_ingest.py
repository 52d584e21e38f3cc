"""CSV lab files into the database: the real Synthea export and the monitor CSV format."""

from __future__ import annotations

import csv
import io
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, LabResult, Patient, Quarantine
from monitor.ingest import csv_reader
from monitor.ingest.csv_reader import read_file
from monitor.protocols import packaged_library
from monitor.services import patients
from monitor.services.daily import expire_held
from monitor.services.ingest import ingest_records
from monitor.services.prepare import Context, IngestReport
from tests.functional.cli import run
from tests.integration import dump_tables, ingest_context

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANALYTES = tomllib.loads((Path(__file__).resolve().parents[2] / "config" / "analytes.toml").read_text())
HEADER = "mrn,collected_at,code,value,unit"
CATALOG = packaged_library().catalog

pytestmark = pytest.mark.usefixtures("db_url")  # the CLI under test uses the test database


# --- the expected outcome of every Synthea row, worked out from the file and the config alone ---

@dataclass(frozen=True)
class Expected:
    outcomes: Counter[str]  # held / ignored / quarantined
    held: list[tuple[str, str, float, str, str]]  # (patient, analyte, canonical value, raw value, raw unit)
    rows: int


def canonical(analyte: dict[str, Any], value: str, unit: str) -> float | None:
    """The value in the analyte's canonical unit, or None when it cannot be stored exactly."""
    try:
        number = float(value)
    except ValueError:
        return None
    units = {u.lower(): f for u, f in analyte["units"].items()}
    mass = {u.lower(): f for u, f in analyte.get("mass_units", {}).items()}
    if unit.lower() in units:
        result = number * units[unit.lower()]
    elif unit.lower() in mass:
        assert analyte["unit"] == "umol/L"
        result = number * mass[unit.lower()] / analyte["molar_mass_g_per_mol"] * 1e6
    else:
        return None
    if number == 0:  # never negative; 0 only where the analyte can be 0
        return 0.0 if analyte.get("zero_possible") else None
    low, high = analyte["plausible"]["low"], analyte["plausible"]["high"]
    return result if low <= result <= high else None


def expected_for(path: Path) -> Expected:
    codes: dict[str, str] = {}
    for key, analyte in ANALYTES["analytes"].items():
        for code in (analyte["loinc"], *analyte.get("synonyms", [])):
            codes[code.lower()] = key
    codes.update({code.lower(): key for code, key in ANALYTES["local_codes"].items()})
    not_monitored = {code.lower() for code in ANALYTES["not_monitored"]}
    outcomes: Counter[str] = Counter()
    held: list[tuple[str, str, float, str, str]] = []
    keys: list[tuple[str, str, str]] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["CATEGORY"] != "laboratory":
            outcomes["ignored"] += 1
            continue
        code = row["CODE"].strip().lower()
        key = codes.get(code)
        if key is None:
            outcomes["ignored" if code in not_monitored else "quarantined"] += 1
            continue
        value = canonical(ANALYTES["analytes"][key], row["VALUE"], row["UNITS"])
        if value is None:
            outcomes["quarantined"] += 1
            continue
        outcomes["held"] += 1
        held.append((row["PATIENT"], key, value, row["VALUE"], row["UNITS"]))
        keys.append((row["PATIENT"], row["CODE"], row["DATE"]))
    assert len(set(keys)) == len(keys), "the file re-delivers a result; the expectation needs updating"
    return Expected(outcomes, held, len(rows))


@pytest.fixture
def synthea(external: Path) -> Path:
    return external / "csv" / "observations.csv"


def context() -> Context:
    return ingest_context(NOW)


def ingest(session: Session, path: Path) -> IngestReport:
    return ingest_records(session, read_file(path, LONDON, CATALOG), context())


def count(session: Session, model: Any) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def test_the_synthea_export_is_held_ignored_or_quarantined_as_the_analyte_config_says(
        session: Session, synthea: Path) -> None:
    expected = expected_for(synthea)
    assert expected.outcomes["held"] > 0 and expected.outcomes["ignored"] > 0

    report = ingest(session, synthea)

    assert report.total == expected.rows  # nothing dropped
    assert (report.held, report.ignored, report.quarantined) == (
        expected.outcomes["held"], expected.outcomes["ignored"], expected.outcomes["quarantined"])
    assert (report.stored, report.duplicate, report.corrected) == (0, 0, 0)  # nobody is enrolled
    assert count(session, HeldResult) == expected.outcomes["held"]
    assert count(session, Quarantine) == expected.outcomes["quarantined"]
    assert count(session, LabResult) == 0
    held = sorted((h.mrn, h.analyte, round(h.value, 4), h.raw_value, h.raw_unit)
                  for h in session.exec(select(HeldResult)).all())
    assert held == sorted((p, a, round(v, 4), raw, unit) for p, a, v, raw, unit in expected.held)


@pytest.mark.parametrize(
    ("analyte", "unit", "factor"),
    [("WBC", "10*9/L", 1.0),     # 10*3/uL = 10*9/L
     ("PLT", "10*9/L", 1.0),
     ("ALT", "U/L", 1.0),
     ("BILI", "umol/L", 17.1)],  # 1 mg/dL bilirubin = 17.1 umol/L (CLINICAL.md §9.2)
)
def test_synthea_results_are_held_in_the_canonical_unit(session: Session, synthea: Path, analyte: str,
                                                        unit: str, factor: float) -> None:
    ingest(session, synthea)
    rows = session.exec(select(HeldResult).where(HeldResult.analyte == analyte)).all()
    assert rows
    for row in rows:
        assert row.unit == unit
        assert row.value == pytest.approx(float(row.raw_value) * factor, rel=1e-3)
    if analyte == "BILI":
        assert {row.raw_unit for row in rows} == {"mg/dL"}


def test_ingesting_the_synthea_export_again_changes_no_row(session: Session, engine: Engine,
                                                           synthea: Path) -> None:
    first = ingest(session, synthea)
    before = dump_tables(engine)
    again = ingest(session, synthea)
    assert dump_tables(engine) == before
    assert again.duplicate == first.held and again.held == 0
    assert again.quarantined == first.quarantined == again.already_quarantined
    assert again.ignored == first.ignored


def test_enrolling_a_synthea_patient_attaches_their_held_results(capsys: pytest.CaptureFixture[str],
                                                                 engine: Engine, synthea: Path) -> None:
    expected = expected_for(synthea)
    per_patient = Counter(patient for patient, *_ in expected.held)
    mrn, theirs = per_patient.most_common(1)[0]

    ingested = run(capsys, "ingest", str(synthea))
    assert ingested.code == 0, ingested.err
    assert f"{expected.outcomes['held']} held" in ingested.out
    enrolled = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", "2024-01-08",
                   "--weight-kg", "70")
    assert enrolled.code == 0, enrolled.err

    with Session(engine) as s:
        patient = s.exec(select(Patient).where(Patient.mrn == mrn)).one()
        attached = s.exec(select(LabResult).where(LabResult.patient_id == patient.id)).all()
        assert len(attached) == theirs
        assert sorted((r.analyte, round(r.value, 4)) for r in attached) == sorted(
            (analyte, round(value, 4)) for p, analyte, value, *_ in expected.held if p == mrn)
        assert s.exec(select(HeldResult).where(HeldResult.mrn == mrn)).all() == []
        assert count(s, HeldResult) == expected.outcomes["held"] - theirs
    last = max(r.observed_on for r in attached)
    every = Counter((r.analyte, r.observed_on.isoformat()) for r in attached)
    last_year = Counter((r.analyte, r.observed_on.isoformat()) for r in attached
                        if (last - r.observed_on).days <= 365)
    view = run(capsys, "patient", mrn, "--format", "json", "--date", last.isoformat()).json()
    shown = Counter((r["analyte"], r["observed_on"]) for r in view["results"])
    assert last_year <= shown <= every  # at least the last 12 months (CLI.md)


# --- the monitor CSV format, through `monitor ingest` -------------------------------------------

def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def enroll(capsys: pytest.CaptureFixture[str], mrn: str) -> None:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", "2026-01-05",
            "--weight-kg", "72")
    assert r.code == 0, r.err


def results(capsys: pytest.CaptureFixture[str], mrn: str) -> list[dict[str, Any]]:
    view = run(capsys, "patient", mrn, "--format", "json", "--date", "2026-02-01").json()
    return list(view["results"])


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_file_with_an_unknown_header_exits_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                                             engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "labs.csv", "patient_id,when,test,result\nA1001,2026-01-30,6690-2,3.1\n")
    before = dump_tables(engine)
    r = run(capsys, "ingest", str(path))
    assert r.code == 2
    assert "labs.csv" in one_line_error(r.err) and "mrn" in r.err
    assert dump_tables(engine) == before


def test_bad_rows_are_quarantined_with_reasons_and_an_unknown_mrn_is_held_until_enrolled(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    enroll(capsys, "A1001")
    path = write(tmp_path, "labs.csv", f"{HEADER}\n"
                 "A1001,2026-01-30,6690-2,3.1,mmol/L\n"        # a unit WBC is never sent in
                 "A1001,2026-01-30,777-3,clumped,10*9/L\n"     # not a number
                 "B2002,2026-01-29,6690-2,5.2,10*3/uL\n")      # not enrolled yet
    r = run(capsys, "ingest", str(path))
    assert r.code == 0, r.err
    assert "0 stored" in r.out and "1 held" in r.out and "2 quarantined" in r.out

    quarantined = run(capsys, "quarantine", "list", "--format", "json").json()
    assert [q["origin"] for q in quarantined] == ["labs.csv:2", "labs.csv:3"]
    unit, value = (q["reason"] for q in quarantined)
    assert "'mmol/L'" in unit and "not accepted for WBC" in unit and "10*9/l" in unit.lower()
    assert "'clumped'" in value and "not a number" in value
    assert all(q["status"] == "open" and q["raw"] for q in quarantined)
    assert results(capsys, "A1001") == []

    enroll(capsys, "B2002")
    [attached] = results(capsys, "B2002")
    assert (attached["analyte"], attached["value"], attached["unit"], attached["observed_on"]) == (
        "WBC", 5.2, "10*9/L", "2026-01-29")


def test_the_report_counts_every_result_of_a_file_with_many_rows(capsys: pytest.CaptureFixture[str],
                                                                 engine: Engine, tmp_path: Path) -> None:
    enroll(capsys, "A1001")
    path = write(tmp_path, "labs.csv", f"{HEADER}\n"
                 "A1001,2026-01-30,6690-2,5.1,10*9/L\n"
                 "A1001,2026-01-30,777-3,250,10*9/L\n"
                 "A1001,2026-01-30,1742-6,30,U/L\n"
                 "B2002,2026-01-30,6690-2,6.1,10*9/L\n"
                 "B2002,2026-01-30,777-3,260,10*9/L\n")
    r = run(capsys, "ingest", str(path))
    assert r.code == 0, r.err
    assert "3 stored" in r.out and "2 held" in r.out, r.out
    with Session(engine) as s:
        assert (count(s, LabResult), count(s, HeldResult)) == (3, 2)


def test_status_c_corrects_a_stored_result_and_a_conflicting_redelivery_is_quarantined(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    enroll(capsys, "A1001")
    first = write(tmp_path, "first.csv", f"{HEADER}\nA1001,2026-01-30T09:15,6690-2,3.1,10*9/L\n")
    correction = write(tmp_path, "correction.csv",
                       f"{HEADER},status\nA1001,2026-01-30T09:15,6690-2,3.4,10*9/L,C\n")
    conflict = write(tmp_path, "conflict.csv",
                     f"{HEADER},status\nA1001,2026-01-30T09:15,6690-2,3.9,10*9/L,F\n")

    assert "1 stored" in run(capsys, "ingest", str(first)).out
    assert "1 duplicate" in run(capsys, "ingest", str(first)).out
    corrected = run(capsys, "ingest", str(correction))
    assert corrected.code == 0 and "1 corrected" in corrected.out
    [result] = results(capsys, "A1001")
    assert (result["value"], result["status"]) == (3.4, "corrected")

    conflicting = run(capsys, "ingest", str(conflict))
    assert conflicting.code == 0 and "1 quarantined" in conflicting.out
    [result] = results(capsys, "A1001")
    assert (result["value"], result["status"]) == (3.4, "corrected")
    [q] = run(capsys, "quarantine", "list", "--format", "json").json()
    assert q["origin"] == "conflict.csv:2" and "conflicts with the WBC result" in q["reason"]


def test_a_redelivered_result_among_new_ones_is_a_duplicate_wherever_its_key_falls(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    """Stored keys are looked up only when one may lie between a batch's least and greatest key
    (db.upsert.may_hold_any): a batch of later results skips the lookup; one that re-sends an
    older result, or falls between stored ones, must still find it."""
    enroll(capsys, "A1001")
    enroll(capsys, "B2002")
    stored = write(tmp_path, "stored.csv", f"{HEADER}\n"
                   "A1001,2026-01-10,6690-2,5.1,10*9/L\nB2002,2026-01-20,6690-2,6.1,10*9/L\n")
    later = write(tmp_path, "later.csv", f"{HEADER}\n"
                  "A1001,2026-01-25,6690-2,5.2,10*9/L\nB2002,2026-01-26,6690-2,6.2,10*9/L\n")
    around = write(tmp_path, "around.csv", f"{HEADER}\n"
                   "A1001,2026-01-05,6690-2,5.0,10*9/L\n"   # before every stored key
                   "B2002,2026-01-20,6690-2,6.1,10*9/L\n"   # sent again
                   "A1001,2026-01-15,6690-2,5.3,10*9/L\n"   # between stored keys
                   "B2002,2026-01-30,6690-2,6.3,10*9/L\n")  # after every stored key
    assert "2 stored" in run(capsys, "ingest", str(stored)).out
    assert "2 stored" in run(capsys, "ingest", str(later)).out
    r = run(capsys, "ingest", str(around))
    assert r.code == 0 and "3 stored" in r.out and "1 duplicate" in r.out, r.out
    with Session(engine) as s:
        assert count(s, LabResult) == 7


def test_status_c_corrects_a_result_held_for_an_mrn_not_yet_enrolled(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    first = write(tmp_path, "first.csv", f"{HEADER}\nB2002,2026-01-30T09:15,6690-2,3.1,10*9/L\n")
    correction = write(tmp_path, "correction.csv",
                       f"{HEADER},status\nB2002,2026-01-30T09:15,6690-2,3.4,10*9/L,C\n")
    assert "1 held" in run(capsys, "ingest", str(first)).out
    corrected = run(capsys, "ingest", str(correction))
    assert corrected.code == 0
    assert run(capsys, "quarantine", "list", "--format", "json").json() == []
    enroll(capsys, "B2002")
    [result] = results(capsys, "B2002")
    assert (result["value"], result["status"]) == (3.4, "corrected")


def test_a_utf8_file_with_a_byte_order_mark_and_crlf_lines_is_read(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    enroll(capsys, "A1001")
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\nA1001,2026-01-30,6690-2,3.1,10*9/L\r\n".encode())
    r = run(capsys, "ingest", str(path))
    assert r.code == 0, r.err
    assert "1 stored" in r.out and "0 quarantined" in r.out
    [result] = results(capsys, "A1001")
    assert (result["analyte"], result["value"]) == ("WBC", 3.1)


def test_a_held_result_is_kept_hold_days_from_its_arrival_not_its_collection(session: Session) -> None:
    # Safety issue 9 item 10: a result collected 200 days before it arrived was held until collection + 180 days,
    # so it expired to quarantine the next morning and enrolling its MRN later attached nothing.
    collected = NOW.date() - timedelta(days=200)
    rows = f"{HEADER}\nLATE01,{collected.isoformat()}T09:00,6690-2,5.5,10*9/L\n"
    records = csv_reader.read(io.StringIO(rows), "late.csv", LONDON, packaged_library().catalog)
    report = ingest_records(session, records, ingest_context(NOW))
    assert report.held == 1
    [held] = session.exec(select(HeldResult)).all()
    assert held.expires_on == NOW.date() + timedelta(days=180)
    assert expire_held(session, today=NOW.date() + timedelta(days=1), now=NOW) == 0
    later = NOW.date() + timedelta(days=100)
    request = patients.EnrollmentRequest("LATE01", "aih-azathioprine", later, 70, tpmt="normal")
    patients.enroll(session, packaged_library(), request, today=later, now=NOW, actor="test")
    session.commit()
    assert [(r.value, r.observed_on) for r in session.exec(select(LabResult)).all()] == [(5.5, collected)]
    assert expire_held(session, today=date(2030, 1, 1), now=NOW) == 0  # attached: nothing left to expire

