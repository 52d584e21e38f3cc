"""Drug names at the command line (safety issue item 6, hazard H17): `monitor record` takes a drug by its
generic name, a synonym or a brand (config/drugs.toml) and stores the generic name, so a brand triggers the
same interaction rules; a mistyped name is refused with the closest names, unless the user says --unlisted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from monitor.db.tables import DoseEvent, MedicationRecord
from tests.functional.cli import Ran, run
from tests.integration import dump_tables

pytestmark = pytest.mark.usefixtures("db_url")

STARTED = "2026-02-02"
AS_OF = "2026-02-16"


def enroll_in_maintenance(capsys: pytest.CaptureFixture[str], mrn: str = "D1") -> None:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", "2025-06-02",
            "--weight-kg", "72", "--phase", "maintenance", "--tpmt", "normal", "--nudt15", "normal")
    assert r.code == 0, r.err


def error_line(r: Ran) -> str:
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    (line,) = r.err.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(("--med-start", "allopurinl"),
                     "unknown drug 'allopurinl' in --med-start; did you mean allopurinol? "
                     "(or pass --unlisted to record it unchecked)", id="a mistyped interacting drug"),
        pytest.param(("--dose", "azathiprine=100"),
                     "unknown drug 'azathiprine' in --dose; did you mean azathioprine? "
                     "(or pass --unlisted to record it unchecked)", id="a mistyped anchor drug dose"),
        pytest.param(("--med-stop", "zyloprm"),
                     "unknown drug 'zyloprm' in --med-stop; did you mean Zyloprim (allopurinol)? "
                     "(or pass --unlisted to record it unchecked)", id="a mistyped brand"),
        pytest.param(("--med-start", "xyzzy"),
                     "unknown drug 'xyzzy' in --med-start; it is not in the drug list (drugs.toml); check the "
                     "spelling (or pass --unlisted to record it unchecked)", id="nothing close"),
        pytest.param(("--weight-kg", "70", "--med-start", "allopurinol", "--med-start", "allopurinl"),
                     "unknown drug 'allopurinl' in --med-start; did you mean allopurinol? "
                     "(or pass --unlisted to record it unchecked)", id="valid events before the typo: none written"),
        pytest.param(("--dose", "ACE inhibitor=5"),
                     "--dose 'ACE inhibitor' names a class of drugs; give the drug itself, e.g. captopril",
                     id="a dose of a class"),
    ],
)
def test_an_unknown_drug_name_exits_2_with_the_closest_names_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], engine: Engine, args: tuple[str, ...], line: str) -> None:
    enroll_in_maintenance(capsys)
    before = dump_tables(engine)
    assert error_line(run(capsys, "record", "D1", "--date", STARTED, *args)) == f"monitor: error: {line}"
    assert dump_tables(engine) == before


def test_an_unlisted_drug_is_recorded_as_typed_and_shown_as_unchecked(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    enroll_in_maintenance(capsys)
    r = run(capsys, "record", "D1", "--date", STARTED, "--med-start", "St John's  Wort", "--med-start", "Zyloprim",
            "--unlisted")
    assert r.code == 0, r.err
    assert f"recorded started st john's wort on {STARTED} (unlisted: interactions not checked)" in r.out
    assert f"recorded started allopurinol on {STARTED}\n" in r.out  # a listed name is still resolved and checked
    with Session(engine) as s:
        assert sorted(m.drug for m in s.exec(select(MedicationRecord)).all()) == ["allopurinol", "st john's wort"]

    view = run(capsys, "patient", "D1", "--format", "json", "--date", AS_OF).json()
    assert view["medications"] == [
        {"drug": "st john's wort", "started_on": STARTED, "stopped_on": None, "checked": False, "interactions": []},
        {"drug": "allopurinol", "started_on": STARTED, "stopped_on": None, "checked": True,
         "interactions": ["allopurinol"]}]
    text = run(capsys, "patient", "D1", "--date", AS_OF).out
    assert "unlisted: interactions not checked" in text and "checked: allopurinol" in text

    stopped = run(capsys, "record", "D1", "--date", AS_OF, "--med-stop", "st john's wort", "--unlisted")
    assert stopped.code == 0, stopped.err
    [unlisted] = [m for m in run(capsys, "patient", "D1", "--format", "json", "--date", AS_OF).json()["medications"]
                  if not m["checked"]]
    assert unlisted["stopped_on"] == AS_OF


def plan_of(capsys: pytest.CaptureFixture[str], mrn: str) -> dict[str, Any]:
    """What the clinic sees for a patient, without what differs between patients (MRN, flag ids, times)."""
    view = run(capsys, "patient", mrn, "--format", "json", "--date", AS_OF).json()
    flags = [{k: v for k, v in f.items() if k not in ("id", "raised_at")} for f in view["flags"]]
    return {"due": view["due"], "dose_steps": view["dose_steps"], "flags": flags,
            "medications": view["medications"]}


def test_zyloprim_started_in_maintenance_gets_the_allopurinol_dose_cut_and_weekly_counts(
        capsys: pytest.CaptureFixture[str]) -> None:
    for mrn, name in (("BRAND", "Zyloprim"), ("GENERIC", "allopurinol")):
        enroll_in_maintenance(capsys, mrn)
        r = run(capsys, "record", mrn, "--date", STARTED, "--med-start", name)
        assert r.code == 0, r.err
        assert f"recorded started allopurinol on {STARTED}" in r.out
    assert run(capsys, "run", "--date", AS_OF).code == 0

    by_brand, by_generic = plan_of(capsys, "BRAND"), plan_of(capsys, "GENERIC")
    assert by_brand == by_generic
    # MEDSAFE98: azathioprine to 25 %, weekly counts for 12 weeks; the interaction flag
    assert any("× 0.25 while on allopurinol (Medsafe 1998)" in s["why"] for s in by_brand["dose_steps"])
    assert any(d["rule_id"].endswith("/interactions/allopurinol/weekly") for d in by_brand["due"])
    assert [f["rule_id"] for f in by_brand["flags"] if f["kind"] == "interaction"] == [
        "aih-azathioprine/interactions/allopurinol/allopurinol"]


def test_a_drug_started_by_one_name_is_stopped_by_another(capsys: pytest.CaptureFixture[str],
                                                          engine: Engine) -> None:
    enroll_in_maintenance(capsys)
    assert run(capsys, "record", "D1", "--date", STARTED, "--med-start", "Septrin").code == 0
    r = run(capsys, "record", "D1", "--date", AS_OF, "--med-stop", "trimethoprim-sulfamethoxazole")
    assert r.code == 0, r.err
    assert f"recorded stopped co-trimoxazole on {AS_OF}" in r.out
    with Session(engine) as s:
        [med] = s.exec(select(MedicationRecord)).all()
        assert (med.drug, med.stopped_on.isoformat() if med.stopped_on else None) == ("co-trimoxazole", AS_OF)


def test_a_dose_of_a_listed_drug_outside_the_protocol_is_recorded_under_its_generic_name(
        capsys: pytest.CaptureFixture[str], engine: Engine) -> None:
    # docs/CLI.md: the engine reads only doses of the protocol's drugs; another listed drug's dose is history
    enroll_in_maintenance(capsys)
    r = run(capsys, "record", "D1", "--date", STARTED, "--dose", "Imuran=100", "--dose", "Purinethol=50")
    assert r.code == 0, r.err
    with Session(engine) as s:
        assert sorted((d.drug, d.dose_mg) for d in s.exec(select(DoseEvent)).all()) == [
            ("azathioprine", 100), ("mercaptopurine", 50)]
