"""The benchmark's synthetic cohort (bench/cohort.py) is what the product accepts: every row of its
files enrolled, recorded or stored, and only its deliberate bad records quarantined or held."""

from __future__ import annotations

import csv
import filecmp
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from bench.cohort import clinic_today, read_manifest, write_cohort
from bench.steps import load_events
from monitor.app import App
from monitor.db.tables import (
    DoseEvent,
    Enrollment,
    GenotypeRecord,
    HeldResult,
    LabResult,
    MedicationRecord,
    Quarantine,
    WeightRecord,
)
from monitor.domain.protocol import Phase
from tests.functional.cli import run

PATIENTS = 100
FILES = ("cohort.csv", "labs.csv", "events.csv", "labs-next-day.csv", "cohort.json")

pytestmark = pytest.mark.usefixtures("db_url")  # the CLI under test uses the test database


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    write_cohort(folder, PATIENTS, seed=7, today=clinic_today())
    return folder


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def count(s: Session, model: type, *where: object) -> int:
    return int(s.exec(select(func.count()).select_from(model).where(*where)).one())  # type: ignore[arg-type]


def test_the_cohort_is_enrolled_whole_in_every_protocol_phase_and_genotype(
        cohort: Path, capsys: pytest.CaptureFixture[str], session: Session) -> None:
    enrolled = run(capsys, "enroll", "--csv", str(cohort / "cohort.csv"))
    assert enrolled.code == 0, enrolled.err
    assert f"enrolled {PATIENTS} patients (0 already enrolled)" in enrolled.out
    phases = Counter(session.exec(select(Enrollment.protocol_id, Enrollment.phase)).all())
    assert {phase for _, phase in phases} == {p.value for p in Phase}
    assert {protocol for protocol, _ in phases} == {"aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine"}
    genotypes = set(session.exec(select(GenotypeRecord.gene, GenotypeRecord.status)).all())
    assert {("TPMT", "intermediate"), ("TPMT", "poor"), ("NUDT15", "intermediate"), ("NUDT15", "poor")} <= genotypes


def test_every_event_is_recorded_through_the_service_layer(
        cohort: Path, capsys: pytest.CaptureFixture[str], session: Session) -> None:
    assert run(capsys, "enroll", "--csv", str(cohort / "cohort.csv")).code == 0
    events = rows(cohort / "events.csv")
    kinds = Counter(e["kind"] for e in events)
    assert set(kinds) == {"dose", "weight", "med_start", "med_stop"}

    calls = load_events(cohort / "events.csv", App())

    assert calls == len({(e["mrn"], e["date"]) for e in events})
    assert count(session, DoseEvent) == kinds["dose"]
    assert count(session, WeightRecord) == PATIENTS + kinds["weight"]  # the enrollment's weight, then re-weighings
    assert count(session, MedicationRecord) == kinds["med_start"]
    assert count(session, MedicationRecord, col(MedicationRecord.stopped_on).is_not(None)) == kinds["med_stop"]


def test_every_lab_row_is_stored_or_corrected_and_only_the_deliberate_ones_are_not(
        cohort: Path, capsys: pytest.CaptureFixture[str], session: Session) -> None:
    counts = read_manifest(cohort)["counts"]  # type: ignore[index]
    labs = rows(cohort / "labs.csv")
    corrections = [r for r in labs if r["status"] == "C"]
    assert len(labs) == counts["lab_rows"] and len(corrections) == counts["corrections"] > 0
    per_draw = Counter((r["mrn"], r["collected_at"]) for r in labs[:-3] if r["status"] != "C")  # 3: deliberate
    assert min(per_draw.values()) >= 8 and len(per_draw) == counts["draws"]
    per_patient = Counter(mrn for mrn, _ in per_draw)
    assert len(per_patient) == PATIENTS and min(per_patient.values()) >= 20
    assert run(capsys, "enroll", "--csv", str(cohort / "cohort.csv")).code == 0

    ingested = run(capsys, "ingest", str(cohort / "labs.csv"))

    assert ingested.code == 0, ingested.err
    stored = counts["lab_rows"] - counts["corrections"] - counts["quarantined"] - counts["held"]
    assert (f"{stored} stored, 0 duplicate, {counts['corrections']} corrected, 0 retracted, {counts['held']} held, "
            f"{counts['quarantined']} quarantined, 0 ignored") in ingested.out
    assert count(session, LabResult) == stored
    assert count(session, Quarantine) == counts["quarantined"] == 2
    assert count(session, HeldResult) == counts["held"] == 1
    corrected = {f"csv:{r['source_id']}": r["value"] for r in corrections}
    assert dict(session.exec(select(LabResult.source_key, LabResult.raw_value).where(
        col(LabResult.status) == "corrected")).all()) == corrected
    next_day = run(capsys, "ingest", str(cohort / "labs-next-day.csv"))
    assert f"{counts['next_day_rows']} stored, 0 duplicate" in next_day.out and counts["next_day_rows"] > 0


def test_the_full_cycle_evaluates_every_enrollment_of_the_cohort(
        cohort: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "enroll", "--csv", str(cohort / "cohort.csv")).code == 0
    load_events(cohort / "events.csv", App())
    assert run(capsys, "ingest", str(cohort / "labs.csv")).code == 0

    cycle = run(capsys, "run", "--full")

    assert cycle.code == 0, cycle.err
    assert f"{PATIENTS} evaluated, 0 failed" in cycle.out


def test_the_same_seed_writes_the_same_files_and_another_seed_others(cohort: Path, tmp_path: Path) -> None:
    manifest = read_manifest(cohort)
    assert manifest is not None
    today = date.fromisoformat(manifest["today"])
    write_cohort(tmp_path / "again", PATIENTS, seed=7, today=today)
    write_cohort(tmp_path / "other", PATIENTS, seed=8, today=today)
    assert all(filecmp.cmp(cohort / name, tmp_path / "again" / name, shallow=False) for name in FILES)
    assert not filecmp.cmp(cohort / "labs.csv", tmp_path / "other" / "labs.csv", shallow=False)

