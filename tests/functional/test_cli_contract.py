"""The `monitor` command line contract of CLI.md, end to end through the real entry point."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from monitor.db.tables import (
    AuditEvent,
    DoseEvent,
    Enrollment,
    GenotypeRecord,
    JobRun,
    MedicationRecord,
    Patient,
    PhaseEpisode,
    WeightRecord,
)
from tests.functional.cli import Ran, run
from tests.integration import dump_tables

pytestmark = pytest.mark.usefixtures("db_url")

PROTOCOL = "aih-azathioprine"
DAY = "2026-03-01"
COHORT_HEADER = "mrn,protocol,start,weight_kg,tpmt,nudt15,coordinator,site,name,dob,sex"
PHASES = {"baseline", "induction", "maintenance", "withdrawal", "off_treatment", "reinduction",
          "lifelong_maintenance"}
DRAW_STATUS = {"upcoming", "due", "overdue", "missed"}
STEP_STATUS = {"upcoming", "due", "done", "held"}
SEVERITIES = {"critical", "action", "watch"}


def enroll(capsys: pytest.CaptureFixture[str], mrn: str = "A1001", start: str = "2026-01-05",
           *extra: str) -> Ran:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", PROTOCOL, "--start", start, "--weight-kg", "72",
            *extra)
    assert r.code == 0, r.err
    return r


def ingest(capsys: pytest.CaptureFixture[str], tmp_path: Path, rows: str, name: str = "labs.csv") -> None:
    path = tmp_path / name
    path.write_text(f"mrn,collected_at,code,value,unit\n{rows}", encoding="utf-8")
    r = run(capsys, "ingest", str(path))
    assert r.code == 0, r.err


def one_line_error(r: Ran) -> str:
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


def cohort(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join((COHORT_HEADER, *rows)) + "\n", encoding="utf-8")
    return path


# --- enroll ------------------------------------------------------------------------------------

def test_it_enrolls_one_patient_and_enrolling_them_again_changes_nothing(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    r = enroll(capsys, "A1001", "2026-01-05", "--name", "Ada Example", "--dob", "1970-02-03", "--sex", "F",
               "--tpmt", "normal", "--nudt15", "normal", "--coordinator", "nurse@example.org",
               "--site", "north")
    assert "enrolled A1001" in r.out
    view = run(capsys, "patient", "A1001", "--format", "json", "--date", "2026-01-05").json()
    assert (view["mrn"], view["protocol"], view["phase"], view["phase_since"]) == (
        "A1001", PROTOCOL, "induction", "2026-01-05")
    before = dump_tables(engine, exclude=("audit_event",))  # viewing a patient is audited
    again = enroll(capsys, "A1001", "2026-01-05")
    assert "already enrolled" in again.out
    assert dump_tables(engine, exclude=("audit_event",)) == before


def test_a_valid_cohort_csv_enrolls_every_row_and_rerunning_it_changes_nothing(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    path = cohort(tmp_path,
                  f"C1,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north,Cy One,1960-01-01,F",
                  f"C2,{PROTOCOL},2025-09-01,81.5,intermediate,normal,b@example.org,south,,,",
                  f"C3,{PROTOCOL},2026-01-05,70,unknown,unknown,a@example.org,north,,1990-12-31,M")
    r = run(capsys, "enroll", "--csv", str(path))
    assert r.code == 0, r.err
    assert re.fullmatch(rf"enrolled 3 patients \(0 already enrolled\) and attached 0 held results from {path} "
                        r"in \d+\.\d s\n", r.out), r.out
    with Session(engine) as s:
        assert sorted(p.mrn for p in s.exec(select(Patient)).all()) == ["C1", "C2", "C3"]
        enrollments = {e.start_on.isoformat(): e for e in s.exec(select(Enrollment)).all()}
        assert set(enrollments) == {"2025-03-03", "2025-09-01", "2026-01-05"}
        assert enrollments["2025-09-01"].coordinator == "b@example.org"
        assert {(g.gene, g.status) for g in s.exec(select(GenotypeRecord)).all()} >= {
            ("TPMT", "intermediate"), ("NUDT15", "normal")}

    before = dump_tables(engine)
    again = run(capsys, "enroll", "--csv", str(path))
    assert again.code == 0, again.err
    assert "enrolled 0 patients (3 already enrolled)" in again.out
    assert dump_tables(engine) == before


def test_a_cohort_csv_with_bad_rows_enrolls_nobody_and_names_every_bad_line(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    path = cohort(tmp_path,
                  f"C1,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north,,,",      # line 2 fine
                  f"C2,{PROTOCOL},2025-09-01,heavy,normal,normal,a@example.org,north,,,",   # line 3 weight
                  f"C3,{PROTOCOL},2026-01-05,70,normal,normal,a@example.org,north,,,",      # line 4 fine
                  f"C4,{PROTOCOL},01/05/2026,70,normal,normal,a@example.org,north,,,",      # line 5 date
                  "C5,no-such-protocol,2026-01-05,70,normal,normal,a@example.org,north,,,",  # line 6
                  f"C1,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north,,,")      # line 7 twice
    before = dump_tables(engine)
    r = run(capsys, "enroll", "--csv", str(path))
    assert r.code == 2 and "Traceback" not in r.err
    bad = [line for line in r.err.splitlines() if line.strip().startswith("line ")]
    assert [line.split(":")[0].strip() for line in bad] == ["line 3", "line 5", "line 6", "line 7"]
    assert "'heavy'" in bad[0] and "'01/05/2026'" in bad[1] and "no-such-protocol" in bad[2]
    assert "nothing enrolled" in r.err
    assert dump_tables(engine) == before


def test_cohort_rows_that_clash_with_existing_enrollments_enroll_nobody_and_one_line_names_their_lines(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    enroll(capsys, "C2", "2025-09-01")
    enroll(capsys, "C4", "2025-09-01")
    path = cohort(tmp_path,
                  f"C1,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north,,,",
                  f"C2,{PROTOCOL},2026-02-02,81,normal,normal,a@example.org,north,,,",  # line 3: other start
                  f"C3,{PROTOCOL},2025-03-03,64,normal,normal,a@example.org,north,,,",
                  "C4,ibd-azathioprine,2025-09-01,81,normal,normal,a@example.org,north,,,")  # line 5: other protocol
    before = dump_tables(engine)
    line = one_line_error(run(capsys, "enroll", "--csv", str(path)))
    assert f"line 3: MRN 'C2' is already enrolled in {PROTOCOL} from 2025-09-01" in line
    assert "`monitor phase`" in line and "1 more row like it, line 5" in line and "nothing enrolled" in line
    assert dump_tables(engine) == before


def test_a_cohort_csv_without_the_required_columns_exits_2_with_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text(f"mrn,protocol,start\nC1,{PROTOCOL},2025-03-03\n", encoding="utf-8")
    assert "weight_kg" in one_line_error(run(capsys, "enroll", "--csv", str(path)))


# --- record and phase --------------------------------------------------------------------------

def test_record_stores_doses_weight_interacting_drugs_and_tpmt_with_their_date(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    enroll(capsys)
    r = run(capsys, "record", "A1001", "--date", "2026-01-19", "--dose", "azathioprine=100",
            "--dose", "prednisolone=25", "--weight-kg", "70.5", "--med-start", "allopurinol",
            "--tpmt", "intermediate")
    assert r.code == 0, r.err
    assert "dose azathioprine 100 mg/day from 2026-01-19" in r.out
    stopped = run(capsys, "record", "A1001", "--date", "2026-02-02", "--med-stop", "allopurinol")
    assert stopped.code == 0, stopped.err

    with Session(engine) as s:
        assert sorted((d.drug, d.dose_mg, d.on) for d in s.exec(select(DoseEvent)).all()) == [
            ("azathioprine", 100, date(2026, 1, 19)), ("prednisolone", 25, date(2026, 1, 19))]
        assert (72, date(2026, 1, 5)) in {(w.kg, w.on) for w in s.exec(select(WeightRecord)).all()}
        assert (70.5, date(2026, 1, 19)) in {(w.kg, w.on) for w in s.exec(select(WeightRecord)).all()}
        [med] = s.exec(select(MedicationRecord)).all()
        assert (med.drug, med.started_on, med.stopped_on) == ("allopurinol", date(2026, 1, 19),
                                                              date(2026, 2, 2))
        assert ("TPMT", "intermediate", date(2026, 1, 19)) in {
            (g.gene, g.status, g.on) for g in s.exec(select(GenotypeRecord)).all()}

    before = dump_tables(engine, exclude=("audit_event",))
    again = run(capsys, "record", "A1001", "--date", "2026-01-19", "--dose", "azathioprine=100",
                "--weight-kg", "70.5", "--tpmt", "intermediate")
    assert again.code == 0, again.err
    assert dump_tables(engine, exclude=("audit_event",)) == before


@pytest.mark.parametrize(
    "args",
    [("--dose", "azathioprine"),                # no mg
     ("--dose", "azathioprine=lots"),           # not a number
     ("--dose", "azathioprine=5000"),           # outside 0-1000 mg
     ("--weight-kg", "720"),                    # a typing error, not a patient
     ("--med-stop", "warfarin"),                # never started
     ("--tpmt", "slow"),                        # not a TPMT status
     ()],                                       # nothing to record
    ids=["dose-without-mg", "dose-not-a-number", "dose-too-high", "weight", "stop-unknown", "tpmt", "empty"],
)
def test_a_bad_record_exits_2_with_one_line_and_writes_nothing(capsys: pytest.CaptureFixture[str],
                                                               engine: Engine, args: tuple[str, ...]) -> None:
    enroll(capsys)
    before = dump_tables(engine)
    one_line_error(run(capsys, "record", "A1001", "--date", "2026-01-19", *args))
    assert dump_tables(engine) == before


def test_phase_moves_a_patient_to_withdrawal_and_keeps_the_reason(capsys: pytest.CaptureFixture[str],
                                                                  engine: Engine) -> None:
    enroll(capsys, "A1001", "2024-01-08", "--phase", "maintenance")
    r = run(capsys, "phase", "A1001", "--to", "withdrawal", "--date", "2026-03-02",
            "--reason", "biochemical remission for 24 months", "--by", "dr.who")
    assert r.code == 0, r.err
    assert "withdrawal from 2026-03-02" in r.out
    view = run(capsys, "patient", "A1001", "--format", "json", "--date", "2026-03-10").json()
    assert (view["phase"], view["phase_since"]) == ("withdrawal", "2026-03-02")
    with Session(engine) as s:
        episode = s.exec(select(PhaseEpisode).where(PhaseEpisode.phase == "withdrawal")).one()
        assert (episode.reason, episode.confirmed_by) == ("biochemical remission for 24 months", "dr.who")

    assert "already in withdrawal" in one_line_error(
        run(capsys, "phase", "A1001", "--to", "withdrawal", "--date", "2026-03-05", "--reason", "again"))
    assert "before" in one_line_error(
        run(capsys, "phase", "A1001", "--to", "maintenance", "--date", "2026-01-01", "--reason", "oops"))


# --- the daily cycle and the views -------------------------------------------------------------

@pytest.fixture
def clinic(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A small clinic: one patient in induction with a low WBC, four on maintenance with no result since
    enrollment, whose safety draws are all overdue on DAY."""
    genotyped = ("--tpmt", "normal", "--nudt15", "normal")
    enroll(capsys, "I1", "2026-01-05", "--coordinator", "a@example.org", "--site", "north", *genotyped)
    for mrn, start, site in (("M3", "2025-05-12", "north"), ("M5", "2025-05-26", "south"),
                             ("M2", "2025-06-02", "south"), ("M4", "2025-06-16", "north")):
        enroll(capsys, mrn, start, "--phase", "maintenance", "--coordinator", "b@example.org", "--site", site,
               *genotyped)
    assert run(capsys, "record", "I1", "--date", "2026-01-19", "--dose", "azathioprine=50").code == 0
    ingest(capsys, tmp_path, "I1,2026-02-27T08:30,6690-2,3.1,10*9/L\n"
                             "I1,2026-02-27T08:30,777-3,210,10*9/L\n"
                             "I1,2026-02-27T08:30,1742-6,35,U/L\n"
                             "I1,2026-02-13T08:30,6690-2,5.9,10*9/L\n")


@pytest.mark.usefixtures("clinic")
def test_running_the_daily_cycle_twice_on_one_date_changes_no_row_but_the_job_run_and_the_audit(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    first = run(capsys, "run", "--date", DAY)
    assert first.code == 0, first.err
    assert "5 evaluated, 0 failed" in first.out
    bookkeeping = ("job_run", "audit_event")
    before = dump_tables(engine, exclude=bookkeeping)
    assert before["due_draw"] and before["dose_step"] and before["flag"]

    second = run(capsys, "run", "--date", DAY)
    assert second.code == 0, second.err
    assert dump_tables(engine, exclude=bookkeeping) == before
    full = run(capsys, "run", "--date", DAY, "--full")
    assert full.code == 0, full.err
    assert dump_tables(engine, exclude=bookkeeping) == before
    with Session(engine) as s:
        [job] = s.exec(select(JobRun)).all()
        assert (job.job_name, job.run_key, job.status) == ("daily", DAY, "done")
        # Each run leaves one audit event (decision 9): its counts, by internal ids only, and the day's
        # job_run it took part in; the row counts every evaluation of the day.
        runs = s.exec(select(AuditEvent).where(AuditEvent.action == "daily_cycle")).all()
        assert [(r.detail["evaluated"], r.entity_id) for r in runs] == [(5, job.id), (0, job.id), (5, job.id)]
        assert (job.stats["evaluated"], job.stats["failed"]) == (10, 0)


@pytest.mark.usefixtures("clinic")
def test_patient_json_has_every_key_the_contract_requires(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "run", "--date", DAY).code == 0
    r = run(capsys, "patient", "I1", "--format", "json", "--date", DAY)
    assert r.code == 0, r.err
    view = r.json()
    assert {"mrn", "protocol", "phase", "phase_since", "as_of", "due", "dose_steps", "flags", "proposals",
            "results"} <= set(view)
    assert (view["mrn"], view["protocol"], view["phase"], view["phase_since"], view["as_of"]) == (
        "I1", PROTOCOL, "induction", "2026-01-05", DAY)
    assert view["phase"] in PHASES

    assert view["due"] and {d["panel"] for d in view["due"]} >= {"CBC", "LFT"}
    for d in view["due"]:
        assert {"panel", "due_on", "status", "rule_id", "why"} <= set(d)
        assert d["status"] in DRAW_STATUS and date.fromisoformat(d["due_on"]) and d["rule_id"] and d["why"]
    assert view["dose_steps"]
    for step in view["dose_steps"]:
        assert {"drug", "dose_mg", "on", "status", "rule_id", "why"} <= set(step)
        assert step["status"] in STEP_STATUS and isinstance(step["dose_mg"], int | float)
    assert view["flags"]
    for f in view["flags"]:
        assert {"id", "kind", "severity", "status", "analyte", "value", "unit", "observed_on", "rule_id",
                "why"} <= set(f)
        assert f["severity"] in SEVERITIES and f["status"] == "open" and isinstance(f["id"], int)
    [flag] = [f for f in view["flags"] if f["kind"] == "leukopenia"]
    assert {"id", "kind", "severity", "status", "analyte", "value", "unit", "observed_on", "rule_id",
            "why"} <= set(flag)
    assert (flag["kind"], flag["severity"], flag["status"], flag["analyte"], flag["value"], flag["unit"],
            flag["observed_on"]) == ("leukopenia", "action", "open", "WBC", 3.1, "10*9/L", "2026-02-27")
    assert flag["severity"] in SEVERITIES and isinstance(flag["id"], int)
    assert isinstance(view["proposals"], list)
    for proposal in view["proposals"]:
        assert {"to_phase", "rule_id", "why"} <= set(proposal)

    results = view["results"]
    assert len(results) == 4
    for result in results:
        assert {"analyte", "code", "value", "unit", "observed_on", "status", "ctcae_grade",
                "ctcae_version"} <= set(result)
    assert [r["observed_on"] for r in results] == sorted((r["observed_on"] for r in results), reverse=True)
    wbc = next(r for r in results if r["analyte"] == "WBC" and r["value"] == 3.1)
    assert (wbc["code"], wbc["unit"], wbc["status"], wbc["ctcae_grade"], wbc["ctcae_version"]) == (
        "6690-2", "10*9/L", "final", 1, "5.0")  # CTCAE v5: 3.0 <= WBC < LLN 4.0 is grade 1
    alt = next(r for r in results if r["analyte"] == "ALT")
    assert (alt["value"], alt["unit"]) == (35, "U/L")


@pytest.mark.usefixtures("clinic")
def test_overdue_lists_the_most_overdue_draw_first_as_json_and_csv(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "run", "--date", DAY).code == 0
    as_json = run(capsys, "overdue", "--format", "json", "--date", DAY)
    assert as_json.code == 0, as_json.err
    rows = as_json.json()
    keys = ["mrn", "panel", "due_on", "days_overdue", "phase", "coordinator", "site"]
    for row in rows:
        assert set(keys) <= set(row)
    days = [r["days_overdue"] for r in rows]
    assert days == sorted(days, reverse=True)  # most overdue first
    for row in rows:
        assert row["days_overdue"] == (date.fromisoformat(DAY) - date.fromisoformat(row["due_on"])).days > 0
    # The four maintenance patients have no result at all: every panel is overdue since the first draw after
    # enrollment (the safety clock restarts weekly for a patient enrolled already on azathioprine), with every
    # draw since unmet. I1 had a count on 2026-02-27 and is not behind.
    first = {(r["mrn"], r["panel"]): (r["due_on"], r["days_overdue"], r["last_result_on"], r["days_without_result"])
             for r in rows}
    assert first[("M3", "CBC")] == ("2025-05-19", 286, None, None)
    assert first[("M2", "LFT")] == ("2025-06-09", 265, None, None)
    assert {mrn for mrn, _ in first} == {"M2", "M3", "M4", "M5"}
    m3_cbc = next(r for r in rows if (r["mrn"], r["panel"]) == ("M3", "CBC"))
    # changed (schedules item 11): 15 draws, was 12: the long-term counts are monthly (FDA label [V]), were 12-weekly
    assert m3_cbc["draws_unmet"] == 15 and m3_cbc["why"].startswith("CBC: 15 required draws unmet since 2025-05-19")
    m3 = next(r for r in rows if r["mrn"] == "M3")
    assert (m3["phase"], m3["coordinator"], m3["site"]) == ("maintenance", "b@example.org", "north")

    as_csv = run(capsys, "overdue", "--format", "csv", "--date", DAY)
    assert as_csv.code == 0, as_csv.err
    table = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert list(table[0]) == ["mrn", "panel", "due_on", "days_overdue", "draws_unmet", "last_result_on",
                              "days_without_result", "phase", "coordinator", "site"]
    assert [{k: r[k] for k in keys} for r in table] == [{k: str(r[k]) for k in keys} for r in rows]

    south = run(capsys, "overdue", "--format", "json", "--date", DAY, "--site", "south").json()
    assert {r["mrn"] for r in south} == {"M5", "M2"} and {r["site"] for r in south} == {"south"}


@pytest.mark.usefixtures("clinic")
def test_a_flag_is_acknowledged_once_and_a_second_ack_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "run", "--date", DAY).code == 0
    listed = run(capsys, "flags", "--format", "json").json()
    [flag] = [f for f in listed if f["kind"] == "leukopenia"]
    assert (flag["mrn"], flag["severity"], flag["status"]) == ("I1", "action", "open")

    r = run(capsys, "ack", str(flag["id"]), "--reason", "azathioprine withheld; repeat FBC Friday",
            "--by", "nurse@example.org")
    assert r.code == 0, r.err
    assert [f["id"] for f in run(capsys, "flags", "--format", "json").json()] == [
        f["id"] for f in listed if f["id"] != flag["id"]]
    [acked] = run(capsys, "flags", "--status", "acknowledged", "--format", "json").json()
    assert (acked["id"], acked["status"], acked["acknowledged_by"], acked["ack_reason"]) == (
        flag["id"], "acknowledged", "nurse@example.org", "azathioprine withheld; repeat FBC Friday")

    assert "already acknowledged" in one_line_error(run(capsys, "ack", str(flag["id"]), "--reason", "again"))
    assert "no flag" in one_line_error(run(capsys, "ack", "99999", "--reason", "x"))
    assert run(capsys, "flags").code == 0  # the table renders


# --- user errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args",
    [("patient", "ZZ9999"),
     ("record", "ZZ9999", "--weight-kg", "70"),
     ("phase", "ZZ9999", "--to", "withdrawal", "--reason", "remission"),
     ("run", "--date", "2026-02-30"),
     ("patient", "A1001", "--date", "tomorrow"),
     ("enroll", "--mrn", "B2002", "--protocol", PROTOCOL, "--start", "05/01/2026", "--weight-kg", "70"),
     ("enroll", "--mrn", "B2002", "--protocol", "no-such-protocol", "--start", "2026-01-05",
      "--weight-kg", "70"),
     ("enroll", "--mrn", "B2002"),
     ("ingest", "/nonexistent/labs.csv"),
     ("phase", "A1001", "--reason", "remission"),
     ("phase", "A1001", "--to", "withdrawal"),
     ("phase", "A1001", "--to", "remission", "--reason", "x"),
     ("ack", "--reason", "x"),
     ("overdue", "--format", "xml"),
     ("flags", "--status", "closed")],
    ids=["patient-unknown-mrn", "record-unknown-mrn", "phase-unknown-mrn", "run-bad-date", "patient-bad-date",
         "enroll-bad-date", "enroll-unknown-protocol", "enroll-missing-options", "ingest-missing-file",
         "phase-missing-to", "phase-missing-reason", "phase-unknown-phase", "ack-missing-flag-id",
         "overdue-unknown-format", "flags-unknown-status"],
)
def test_a_user_error_exits_2_with_one_line_on_stderr_and_no_traceback(
        capsys: pytest.CaptureFixture[str], engine: Engine, args: tuple[str, ...]) -> None:
    enroll(capsys)
    before = dump_tables(engine)
    line = one_line_error(run(capsys, *args))
    assert line.strip()
    assert dump_tables(engine) == before


def test_python_dash_m_monitor_help_lists_the_commands(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "monitor", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    for command in ("enroll", "record", "phase", "ingest", "run", "patient", "overdue", "flags", "ack",
                    "quarantine"):
        assert command in done.stdout
    assert not list(tmp_path.iterdir())  # --help touches no database
