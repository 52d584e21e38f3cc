"""What a clinic sees must be true (safety issue 9): overdue panels, corrected results, re-sent
specimens, a daily run racing ingestion, one bad enrollment. Each test failed before its fix.

Dates are fixed; every service is handed its `today`/`now`. Thresholds: BSR 2017 WBC < 3.5
(`action`), CTCAE v5 WBC grade 3 for 1.0 <= WBC < 2.0 (`critical`, CLINICAL.md §4.1, §4.5).
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from monitor.db.snapshots import load_snapshots
from monitor.db.tables import AuditEvent, Enrollment, FlagRow, LabResult
from monitor.domain.protocol import Phase
from monitor.ingest import csv_reader, hl7_reader
from monitor.ingest.records import ReadOptions
from monitor.services import daily, views
from monitor.services.ingest import ingest_records
from monitor.services.prepare import IngestReport
from tests.functional.cli import run
from tests.functional.scenario import LONDON, Clinic, d, moment, steps
from tests.integration import dump_tables, ingest_context

pytestmark = pytest.mark.usefixtures("db_url")


@pytest.fixture
def clinic(engine: Engine) -> Clinic:
    return Clinic(engine)


def feed(clinic: Clinic, text: str, *, arrived: date, name: str = "feed.csv") -> IngestReport:
    """A lab CSV (any columns of the monitor format) ingested through the real service."""
    with clinic.session() as s:
        records = csv_reader.read(io.StringIO(text), name, LONDON, clinic.library.catalog)
        return ingest_records(s, records, ingest_context(moment(arrived, 15), library=clinic.library))


def overdue(clinic: Clinic, day: date) -> list[dict[str, Any]]:
    with clinic.session() as s:
        return views.overdue(s, today=day)


# --- 1. The overdue review lists every panel whose latest required draw is unmet ---------------

def test_a_patient_enrolled_into_induction_with_no_labs_is_on_the_overdue_list_six_weeks_later(
        clinic: Clinic) -> None:
    # The AIH disease clock draws CBC and LFT weekly in induction (config/protocols/aih-azathioprine.toml,
    # BMJ Best Practice). Nothing was ever drawn: both panels are overdue since the first draw, day 7.
    clinic.enroll("O1001", start=d("2026-01-05"), phase=Phase.INDUCTION)
    clinic.run(d("2026-02-16"))
    rows = {r["panel"]: r for r in overdue(clinic, d("2026-02-16")) if r["mrn"] == "O1001"}
    assert {"CBC", "LFT"} <= set(rows)
    cbc = rows["CBC"]
    assert (cbc["due_on"], cbc["days_overdue"], cbc["last_result_on"], cbc["days_without_result"]) == (
        "2026-01-12", 35, None, None)
    assert cbc["draws_unmet"] >= 4 and cbc["why"].startswith(f"CBC: {cbc['draws_unmet']} required draws unmet since")
    # `monitor patient` shows the same
    view = clinic.view("O1001", d("2026-02-16"))
    assert {o["panel"]: o["due_on"] for o in view["overdue"]}["CBC"] == "2026-01-12"


def test_eleven_weeks_without_a_count_during_titration_is_overdue_since_the_first_missed_count(
        clinic: Clinic) -> None:
    # Liver tests and IgG drawn every week, never a blood count, while azathioprine is titrated from
    # 2026-01-19: the safety clock's weekly counts (conservative union: FDA label + BSR 2017) are unmet from
    # the first, a week after the start; the CBC ranks first. The LFT is not behind. (The normal liver
    # tests end induction on 2026-01-12 by the response rule, so the disease clock asks no more counts.)
    start = d("2026-01-05")
    clinic.enroll("O1002", start=start, phase=Phase.INDUCTION)
    clinic.record("O1002", start + timedelta(weeks=2), doses={"azathioprine": 50})
    for week in range(1, 12):
        clinic.labs("O1002", start + timedelta(weeks=week), ALT=30, AST=28, BILI=10, ALB=42, IGG=12)
    today = start + timedelta(weeks=11, days=1)
    clinic.run(today)
    rows = [r for r in overdue(clinic, today) if r["mrn"] == "O1002"]
    assert (rows[0]["panel"], rows[0]["due_on"], rows[0]["last_result_on"]) == ("CBC", "2026-01-26", None)
    assert rows[0]["days_overdue"] == (today - d("2026-01-26")).days == 57
    assert "titration" in rows[0]["rule_id"] and rows[0]["draws_unmet"] == 6
    assert "LFT" not in {r["panel"] for r in rows}


def test_the_overdue_list_is_worst_first_and_a_late_result_takes_the_patient_off_it(clinic: Clinic) -> None:
    clinic.enroll("O1003", start=d("2026-01-05"), phase=Phase.INDUCTION)
    clinic.enroll("O1004", start=d("2026-01-19"), phase=Phase.INDUCTION)
    clinic.run(d("2026-02-16"))
    order = [(r["mrn"], r["panel"]) for r in overdue(clinic, d("2026-02-16"))]
    assert order.index(("O1003", "CBC")) < order.index(("O1004", "CBC"))
    clinic.normal_labs("O1003", d("2026-02-17"))  # the draw now open is met: caught up
    clinic.run(d("2026-02-17"))
    assert "O1003" not in {r["mrn"] for r in overdue(clinic, d("2026-02-17"))}


# --- 2. A daily run concurrent with ingestion keeps the review mark -----------------------------

def test_a_result_ingested_while_the_cycle_evaluates_its_patient_is_evaluated_again_before_the_run_ends(
        clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cycle reads the enrollment and its snapshot; before it writes the plan, an ingestion
    # commits WBC 3.0 (BSR 2017 action flag) and marks the patient for review. The cycle must not
    # overwrite that mark with the review date computed from the older data: the enrollment stays
    # due, and the run's next pass evaluates it with the new result.
    mrn = "R2001"
    clinic.enroll(mrn, start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 100})
    clinic.normal_labs(mrn, d("2026-01-05"))
    clinic.run(d("2026-01-05"))
    clinic.normal_labs(mrn, d("2026-01-12"))
    real, seen = load_snapshots, list[Any]()

    def interleaved(session: Session, enrollments: Any, *, today: date) -> Any:
        snapshots = real(session, enrollments, today=today)
        if not seen:
            seen.append(snapshots)
            assert not [f for f in clinic.flags(mrn) if f["kind"] == "leukopenia"]
            clinic.labs(mrn, d("2026-01-13"), WBC=3.0, NEUT=2.1, PLT=200)  # committed by another session
        return snapshots

    monkeypatch.setattr(daily, "load_snapshots", interleaved)
    report = clinic.run(d("2026-01-13"))
    monkeypatch.undo()
    assert (report.evaluated, report.requeued, report.done) == (2, 1, True)
    [flag] = [f for f in clinic.flags(mrn) if f["kind"] == "leukopenia"]
    assert (flag["severity"], flag["value"]) == ("action", 3.0)
    with clinic.session() as s:
        [e] = s.exec(select(Enrollment)).all()
        assert e.next_review_on > d("2026-01-13") and e.claimed_by is None


# --- 3. One bad enrollment never stops the others ----------------------------------------------

def test_an_enrollment_that_cannot_be_loaded_is_counted_and_skipped_and_the_others_are_evaluated(
        clinic: Clinic, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    # Stored before dates were checked at enrollment: a start on 0001-01-01 made every run raise
    # OverflowError while loading the batch, so nobody was evaluated.
    clinic.enroll("B3001", start=d("2026-01-05"), phase=Phase.MAINTENANCE)
    clinic.enroll("B3002", start=d("2026-01-05"), phase=Phase.MAINTENANCE)
    clinic.labs("B3002", d("2026-01-20"), WBC=3.0)
    with clinic.session() as s:
        s.execute(update(Enrollment).where(col(Enrollment.id) == 1).values(start_on=date(1, 1, 1)))  # B3001
        s.commit()
    report = clinic_run_allowing_failures(clinic, d("2026-01-21"))
    assert (report.evaluated, report.failed, report.failed_ids) == (1, 1, [1])
    assert [f["kind"] for f in clinic.flags("B3002")] == ["leukopenia"]
    assert "enrollment 1 could not be evaluated: OverflowError" in caplog.text
    assert "B3001" not in caplog.text  # by internal id only
    r = run(capsys, "run", "--date", "2026-01-22")
    assert r.code == 1 and "1 enrollments could not be evaluated" in r.err


def clinic_run_allowing_failures(clinic: Clinic, day: date) -> daily.RunReport:
    with clinic.session() as s:
        return daily.run_daily(s, clinic.library, today=day, now=moment(day, 6, 30))


def test_an_enrollment_whose_plan_cannot_be_written_is_skipped_and_the_rest_of_its_batch_is_written(
        clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    for mrn in ("B3003", "B3004", "B3005"):
        clinic.enroll(mrn, start=d("2026-01-05"), phase=Phase.MAINTENANCE)
    real = daily.sync_flags

    def fails_for_the_second(session: Session, eid: int, *args: Any, **kwargs: Any) -> Any:
        if eid == 2:
            raise RuntimeError("simulated write failure")
        return real(session, eid, *args, **kwargs)

    monkeypatch.setattr(daily, "sync_flags", fails_for_the_second)
    report = clinic_run_allowing_failures(clinic, d("2026-01-21"))
    assert (report.evaluated, report.failed, report.failed_ids) == (2, 1, [2])
    with clinic.session() as s:
        reviewed = {e.id: e.last_evaluated_on for e in s.exec(select(Enrollment)).all()}
    assert reviewed == {1: d("2026-01-21"), 2: None, 3: d("2026-01-21")}


# --- 4. A corrected or retracted result takes its flag (and the hold) with it --------------------

CSV = "mrn,collected_at,code,value,unit,status,source_id\n"


def test_a_critical_count_corrected_to_normal_resolves_its_flag_and_releases_the_hold(clinic: Clinic) -> None:
    mrn = "C4001"
    clinic.enroll(mrn, start=d("2025-06-02"), phase=Phase.MAINTENANCE, weight_kg=50, on=d("2026-01-05"))
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 100})
    clinic.normal_labs(mrn, d("2026-01-05"))
    clinic.run(d("2026-01-05"))
    sent = "C4001,2026-02-02T09:00,6690-2,{value},10*9/L,{status},LAB-77\n"
    assert feed(clinic, CSV + sent.format(value=5.0, status="F"), arrived=d("2026-02-02")).stored == 1
    corrected = feed(clinic, CSV + sent.format(value=1.4, status="C"), arrived=d("2026-02-03"))
    assert (corrected.corrected, corrected.critical_flags) == (1, 1)  # CTCAE grade 3: raised at ingestion
    [critical] = [f for f in clinic.flags(mrn, status="open") if f["kind"] == "leukopenia"]
    assert (critical["severity"], critical["value"]) == ("critical", 1.4)
    assert ("2026-02-02", 0, "held") in steps(clinic.view(mrn, d("2026-02-03")))

    again = feed(clinic, CSV + sent.format(value=4.9, status="C"), arrived=d("2026-02-04"))
    assert again.corrected == 1
    clinic.run(d("2026-02-04"))
    assert clinic.flags(mrn, status="open") == []  # the leukopenia and the 6.5 -> 1.4 rapid fall
    by_kind = {f["kind"]: f for f in clinic.flags(mrn, status="resolved")}
    assert set(by_kind) == {"leukopenia", "rapid_fall"}
    resolved = by_kind["leukopenia"]
    assert resolved["id"] == critical["id"]
    assert resolved["resolution"] == ("leukopenia: WBC of 2026-02-02 was corrected from 1.4 to 4.9 10*9/L, "
                                      "which no longer meets the rule")
    assert "held" not in [status for _, _, status in steps(clinic.view(mrn, d("2026-02-04")))]


def test_a_correction_that_still_meets_the_rule_updates_the_flag_and_a_worse_one_reopens_an_acknowledgement(
        clinic: Clinic) -> None:
    mrn = "C4002"
    clinic.enroll(mrn, start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    sent = "C4002,2026-02-02T09:00,6690-2,{value},10*9/L,{status},LAB-78\n"
    feed(clinic, CSV + sent.format(value=3.2, status="F"), arrived=d("2026-02-02"))
    clinic.run(d("2026-02-02"))
    [flag] = clinic.flags(mrn)
    assert (flag["severity"], flag["value"]) == ("action", 3.2)
    clinic.ack(flag["id"], d("2026-02-02"))
    feed(clinic, CSV + sent.format(value=3.3, status="C"), arrived=d("2026-02-03"))
    clinic.run(d("2026-02-03"))
    [same] = clinic.flags(mrn)  # still below 3.5: the same flag, still acknowledged, with the new value
    assert (same["id"], same["status"], same["value"]) == (flag["id"], "acknowledged", 3.3)
    worse = feed(clinic, CSV + sent.format(value=1.5, status="C"), arrived=d("2026-02-04"))
    assert worse.critical_flags == 1  # the acknowledgement covered an action flag, not a critical one
    [reopened] = clinic.flags(mrn)
    assert (reopened["id"], reopened["status"], reopened["severity"]) == (flag["id"], "open", "critical")


def test_a_retracted_result_resolves_its_flag(clinic: Clinic) -> None:
    def oru(control: str, status: str) -> str:  # HL7 OBX-11 "D": delete the result sent before
        return "\r".join([
            f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|202602020900||ORU^R01|{control}|P|2.5.1",
            "PID|1||C4003^^^HOSP^MR", "OBR|1|P-9|F-9|58410-2^CBC^LN|||202602020800",
            f"OBX|1|NM|6690-2^WBC^LN||3.1|10*9/L|4.0-11.0||||{status}"]) + "\r"

    clinic.enroll("C4003", start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    assert hl7(clinic, oru("MSG-1", "F"), arrived=d("2026-02-02")).stored == 1
    clinic.run(d("2026-02-02"))
    [flag] = clinic.flags("C4003", status="open")
    assert hl7(clinic, oru("MSG-2", "D"), arrived=d("2026-02-03")).retracted == 1
    clinic.run(d("2026-02-03"))
    [resolved] = clinic.flags("C4003", status="resolved")
    assert resolved["id"] == flag["id"]
    assert resolved["resolution"] == ("leukopenia: the result it was raised on (3.1, 2026-02-02) "
                                      "was retracted by the lab")


def hl7(clinic: Clinic, message: str, *, arrived: date) -> IngestReport:
    with clinic.session() as s:
        records = hl7_reader.read_text(message, "feed", ReadOptions(lab_zone=LONDON), clinic.library.catalog)
        return ingest_records(s, records, ingest_context(moment(arrived, 15), library=clinic.library))


# --- 5. The same specimen re-sent under a new order number is one flag ---------------------------

def test_a_specimen_re_sent_under_a_new_source_id_raises_no_second_flag(clinic: Clinic) -> None:
    mrn = "S5001"
    clinic.enroll(mrn, start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    row = "S5001,2026-02-02T09:00,6690-2,1.6,10*9/L,F,{order}\n"
    feed(clinic, CSV + row.format(order="ORD-1"), arrived=d("2026-02-02"))
    feed(clinic, CSV + row.format(order="ORD-2"), arrived=d("2026-02-03"))
    clinic.run(d("2026-02-03"))
    with clinic.session() as s:
        assert len(s.exec(select(LabResult)).all()) == 2  # both deliveries are kept
        assert len(s.exec(select(FlagRow)).all()) == 1


def test_an_hl7_specimen_re_sent_under_a_new_filler_order_number_raises_no_second_flag(clinic: Clinic) -> None:
    def oru(control: str, order: str) -> str:
        return "\r".join([
            f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|202602020900||ORU^R01|{control}|P|2.5.1",
            "PID|1||S5002^^^HOSP^MR", f"OBR|1|P-{order}|{order}|58410-2^CBC^LN|||202602020800",
            "OBX|1|NM|6690-2^WBC^LN||1.6|10*9/L|4.0-11.0||||F",
            "OBX|2|NM|777-3^PLT^LN||40|10*9/L|150-400||||F"]) + "\r"

    clinic.enroll("S5002", start=d("2025-06-02"), phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    for control, order in (("MSG-1", "F-100"), ("MSG-2", "F-200")):
        assert hl7(clinic, oru(control, order), arrived=d("2026-02-02")).stored == 2
    clinic.run(d("2026-02-03"))
    assert sorted(f["kind"] for f in clinic.flags("S5002")) == ["leukopenia", "thrombocytopenia"]


# --- 3. Clinical dates are checked where they enter ----------------------------------------------

@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("enroll", "--mrn", "D1", "--protocol", "aih-azathioprine", "--start", "0001-01-01",
                      "--weight-kg", "70"), id="enroll --start in year 1"),
        pytest.param(("enroll", "--mrn", "D1", "--protocol", "aih-azathioprine", "--start", "2999-01-01",
                      "--weight-kg", "70"), id="enroll --start far ahead"),
        pytest.param(("record", "D0", "--date", "9999-12-31", "--dose", "azathioprine=50"), id="record --date"),
        pytest.param(("phase", "D0", "--to", "withdrawal", "--reason", "x", "--date", "1900-01-01"), id="phase --date"),
        pytest.param(("run", "--date", "0001-01-01"), id="run --date"),
        pytest.param(("overdue", "--date", "3000-01-01"), id="overdue --date"),
    ],
)
def test_a_date_far_from_today_is_refused_with_one_line_and_nothing_changes(
        capsys: pytest.CaptureFixture[str], engine: Engine, args: tuple[str, ...]) -> None:
    r = run(capsys, "enroll", "--mrn", "D0", "--protocol", "aih-azathioprine", "--start", "2026-01-05",
            "--weight-kg", "70", "--tpmt", "normal", "--nudt15", "normal")
    assert r.code == 0, r.err
    before = dump_tables(engine)
    r = run(capsys, *args)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert "is outside" in r.err and "settings [dates]" in r.err
    assert dump_tables(engine) == before


def test_a_cohort_row_with_an_implausible_start_is_reported_by_line_and_nothing_is_enrolled(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("mrn,protocol,start,weight_kg,tpmt,nudt15,coordinator,site\n"
                      "E1,aih-azathioprine,2026-01-05,70,normal,normal,n@example.org,north\n"
                      "E2,aih-azathioprine,0001-01-01,70,normal,normal,n@example.org,north\n", encoding="utf-8")
    r = run(capsys, "enroll", "--csv", str(cohort))
    assert r.code == 2 and "line 3: start 0001-01-01 is outside" in r.err
    assert run(capsys, "patient", "E1").code == 2  # nothing enrolled


# --- 11. No false reassurance: the wrong folder, a stale plan --------------------------------------

@pytest.mark.parametrize("command", ["flags", "overdue", "quarantine", "run", "patient A1"])
def test_a_command_in_a_folder_without_a_database_exits_2_naming_it_and_creates_none(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.delenv("MONITOR_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    r = run(capsys, *command.split())
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert f"no monitor database at {tmp_path / 'monitor.db'}" in r.err and "monitor init" in r.err
    assert list(tmp_path.iterdir()) == []


def test_views_say_which_daily_run_they_show_and_warn_when_it_is_older_than_the_date_asked(
        capsys: pytest.CaptureFixture[str], clinic: Clinic) -> None:
    clinic.enroll("W1", start=d("2026-01-05"), phase=Phase.INDUCTION)
    never = run(capsys, "overdue", "--date", "2026-01-20")
    assert never.code == 0 and "warning: no daily run yet" in never.err
    clinic.run(d("2026-01-20"))
    fresh = run(capsys, "overdue", "--date", "2026-01-20")
    assert "(from the daily run of 2026-01-20)" in fresh.out and fresh.err == ""
    stale = run(capsys, "overdue", "--date", "2026-02-03", "--format", "json")
    assert stale.json() and "warning: the last daily run was for 2026-01-20, before 2026-02-03" in stale.err
    view = run(capsys, "patient", "W1", "--date", "2026-02-03", "--format", "json")
    assert view.json()["daily_run"]["date"] == "2026-01-20" and "warning" in view.err


def test_piped_tables_are_whole_rows_that_grep_finds(capsys: pytest.CaptureFixture[str], clinic: Clinic) -> None:
    clinic.enroll("W2", start=d("2026-01-05"), phase=Phase.INDUCTION)
    clinic.run(d("2026-02-16"))
    out = run(capsys, "overdue", "--date", "2026-02-16").out
    [cbc] = [line for line in out.splitlines() if "nurse@example.org" in line and "\tCBC\t" in line]
    assert cbc.split("\t")[:3] == ["W2", "CBC", "2026-01-12"]


def test_ingesting_a_file_leaves_one_audit_event_with_its_counts_and_no_patient_data(
        capsys: pytest.CaptureFixture[str], clinic: Clinic, engine: Engine, tmp_path: Path) -> None:
    # Decision 9 (every write leaves an audit row): ingestion writes one summary event per file.
    clinic.enroll("A9", start=d("2026-01-05"), phase=Phase.MAINTENANCE)
    labs = tmp_path / "smith-labs.csv"
    labs.write_text("mrn,collected_at,code,value,unit\nA9,2026-02-02T09:00,6690-2,3.3,10*9/L\n", encoding="utf-8")
    assert run(capsys, "ingest", str(labs)).code == 0
    with Session(engine) as s:
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "ingest")).all()
    assert (event.entity, event.detail["format"], event.detail["stored"], event.detail["seen"]) == ("file", "csv", 1, 1)
    assert "A9" not in str(event.detail) and "smith" not in str(event.detail) and "3.3" not in str(event.detail)
