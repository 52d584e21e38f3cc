"""Liver, haemoglobin and kidney courses that used to stay silent (the clinical-safety issue: "every
number right; the danger is in how rules combine").

Each scenario drives the real services (CSV ingestion, `monitor record`, the daily cycle) through
named dates and asserts what a nurse would see. CLINICAL.md is ../shared/research/CLINICAL.md;
SOURCE-ARTICLE.md is the project's source article. Fallback limits (config/analytes.toml,
CLINICAL.md §9.3): ALT/AST ULN 40 U/L, bilirubin ULN 21 umol/L, ALP ULN 130 U/L, haemoglobin
LLN 120 g/L, platelets LLN 150 × 10^9/L.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.domain.protocol import Phase
from tests.functional.scenario import NORMAL, Clinic, d, due, kinds, open_flags

pytestmark = pytest.mark.usefixtures("db_url")


@pytest.fixture
def clinic(engine: Engine) -> Clinic:
    return Clinic(engine)


def flag(view: dict[str, Any], kind: str, analyte: str, on: str) -> dict[str, Any]:
    """The one open flag of this kind on this analyte's result of that day."""
    [found] = [f for f in open_flags(view, kind) if f["analyte"] == analyte and f["observed_on"] == on]
    return found


def liver(view: dict[str, Any], on: str) -> set[tuple[str, str, str]]:
    """(kind, analyte, severity) of the open flags raised by the liver tests of that day."""
    return {(f["kind"], f["analyte"], f["severity"]) for f in view["flags"]
            if f["analyte"] in ("ALT", "AST", "BILI", "ALP") and f["observed_on"] == on}


# --- 1. Azathioprine liver injury during AIH induction --------------------------------------------

def test_a_rise_from_the_induction_nadir_after_azathioprine_starts_is_critical_and_names_the_nadir(
        clinic: Clinic) -> None:
    mrn = "L1001"
    clinic.enroll(mrn, start=d("2026-01-05"), weight_kg=60)
    # Diagnosis: ALT 20 × ULN with jaundice (bilirubin 60 umol/L, under the EASL gate of 100).
    clinic.draw(mrn, d("2026-01-05"), NORMAL | {"ALT": 800, "AST": 700, "BILI": 60, "IGG": 30, "ALP": 180})
    # EASL 2015 (CLINICAL.md §2.1): prednisolone 60 mg from 01-12 (induction starts by itself),
    # azathioprine 50 mg from week 3 (01-26), 100 mg from week 5 (02-09) - delayed by two weeks so
    # that its hepatotoxicity can be told from the disease (§2.2, §4.3; SOURCE-ARTICLE.md).
    clinic.record(mrn, d("2026-01-12"), doses={"prednisolone": 60})
    clinic.run(d("2026-01-12"))
    falling = {"2026-01-19": (400, 360, 40), "2026-01-26": (200, 180, 25), "2026-02-02": (110, 100, 18),
               "2026-02-09": (60, 55, 15), "2026-02-16": (65, 58, 14)}
    for day, (alt, ast, bili) in falling.items():
        clinic.draw(mrn, d(day), NORMAL | {"ALT": alt, "AST": ast, "BILI": bili, "IGG": 20, "ALP": 120})
        if day == "2026-01-26":
            clinic.record(mrn, d(day), doses={"azathioprine": 50})
        if day == "2026-02-09":
            clinic.record(mrn, d(day), doses={"azathioprine": 100})
        clinic.run(d(day))
    # Falling transaminases (and ALT 60 -> 65, a wobble at the nadir) raise nothing (the infection
    # screen's reminder aside: SPS, CLINICAL.md §8).
    assert [f["kind"] for f in clinic.view(mrn, d("2026-02-16"))["flags"]] == ["infection_screen"]

    # 2026-02-23, two weeks on 100 mg: ALT 700, AST 650, bilirubin 90. Against the diagnosis values
    # (ALT 800, bilirubin 60) this was nothing at all; against the patient's own nadir since treatment
    # started (ALT 60 and AST 55 on 02-09, bilirubin 14 on 02-16) it is an 11-fold transaminase rise
    # with new jaundice.
    clinic.draw(mrn, d("2026-02-23"), NORMAL | {"ALT": 700, "AST": 650, "BILI": 90, "IGG": 20, "ALP": 140})
    clinic.run(d("2026-02-23"))
    view = clinic.view(mrn, d("2026-02-23"))
    # CTCAE v5.0 with the nadir as the baseline (CLINICAL.md §4.5: > 5 × baseline when the baseline is
    # abnormal is grade 3 [V]): ALT 700 > 5 × 60 and AST 650 > 5 × 55 -> `critical` (§4.7). The
    # nadir bilirubin 14 is normal, so bilirubin is graded against ULN: 90 > 3 × 21 -> grade 3.
    # The induction rule (protocol [[nadir_rises]]) says why in the toxicity workflow: `action`.
    assert liver(view, "2026-02-23") == {
        ("transaminase_rise", "ALT", "critical"), ("transaminase_rise", "AST", "critical"),
        ("bilirubin_rise", "BILI", "critical"),
        ("rise_from_nadir", "ALT", "action"), ("rise_from_nadir", "AST", "action"),
        ("rise_from_nadir", "BILI", "action")}
    alt_flag = flag(view, "transaminase_rise", "ALT", "2026-02-23")
    assert alt_flag["rule_id"] == "aih-azathioprine/ctcae-5.0/ALT/grade-3"
    assert "vs baseline ALT 60 U/L on 2026-02-09 (the nadir since induction started on 2026-01-12)" in alt_flag["why"]
    nadir = flag(view, "rise_from_nadir", "ALT", "2026-02-23")
    assert nadir["rule_id"] == "aih-azathioprine/nadir/ALT"
    assert "nadir 60 U/L on 2026-02-09" in nadir["why"] and "EASL 2015" in nadir["why"]
    bili_flag = flag(view, "rise_from_nadir", "BILI", "2026-02-23")
    assert "nadir 14 umol/L on 2026-02-16" in bili_flag["why"]
    # A critical flag holds azathioprine pending review until a clinician acknowledges it (§4.7).
    assert "held" in {s["status"] for s in view["dose_steps"] if s["drug"] == "azathioprine"}


def test_above_the_bsr_cut_after_falling_below_it_is_flagged_in_induction(clinic: Clinic) -> None:
    mrn = "L1002"
    clinic.enroll(mrn, start=d("2026-01-05"), weight_kg=60)
    clinic.draw(mrn, d("2026-01-05"), NORMAL | {"ALT": 300, "AST": 280, "IGG": 25})
    clinic.record(mrn, d("2026-01-12"), doses={"prednisolone": 60})
    clinic.record(mrn, d("2026-01-26"), doses={"azathioprine": 50})
    for day, alt in (("2026-01-19", 150), ("2026-01-26", 90), ("2026-02-02", 70)):
        clinic.draw(mrn, d(day), NORMAL | {"ALT": alt, "AST": alt})
        clinic.run(d(day))
    # ALT 130 on 02-09: under 3 × the nadir of 70 and only grade 1 against it, but above the BSR 2017
    # cut of 100 after having fallen below it (CLINICAL.md §4.1) -> `action`, in the toxicity workflow.
    clinic.draw(mrn, d("2026-02-09"), NORMAL | {"ALT": 130, "AST": 60})
    clinic.run(d("2026-02-09"))
    view = clinic.view(mrn, d("2026-02-09"))
    assert liver(view, "2026-02-09") == {("rise_from_nadir", "ALT", "action")}
    why = flag(view, "rise_from_nadir", "ALT", "2026-02-09")["why"]
    assert "above 100 U/L after falling to 70 U/L on 2026-02-02" in why and "BSR 2017" in why


# --- 2. The grading baseline is the one before the current exposure, not the diagnosis ---------------

def aih_patient_years_into_maintenance(clinic: Clinic, mrn: str, bilirubin_at_diagnosis: float) -> None:
    """Diagnosed 2022-01-10, azathioprine from 2022-01-31, in maintenance from 2022-03-14, liver
    tests normal at each yearly review to 2024-12-09."""
    clinic.enroll(mrn, start=d("2022-01-10"), weight_kg=60)
    clinic.draw(mrn, d("2022-01-10"), NORMAL | {"ALT": 500, "AST": 450, "IGG": 25, "ALP": 180,
                                               "BILI": bilirubin_at_diagnosis})
    clinic.record(mrn, d("2022-01-17"), doses={"prednisolone": 60})
    bilirubin = min(bilirubin_at_diagnosis, 60)  # under the EASL gate before azathioprine (§2.2)
    for day, alt in (("2022-01-24", 250), ("2022-01-31", 120), ("2022-02-14", 60)):
        clinic.draw(mrn, d(day), NORMAL | {"ALT": alt, "AST": alt, "IGG": 18, "ALP": 120, "BILI": bilirubin})
        bilirubin = max(bilirubin / 2, 10)
    clinic.record(mrn, d("2022-01-31"), doses={"azathioprine": 50})
    clinic.record(mrn, d("2022-02-14"), doses={"azathioprine": 100})
    # Complete biochemical response (IAIHG 2022): induction -> maintenance by itself.
    clinic.draw(mrn, d("2022-03-14"), NORMAL | {"ALT": 30, "AST": 28, "IGG": 14, "ALP": 90, "BILI": 12})
    clinic.run(d("2022-03-14"))
    assert clinic.view(mrn, d("2022-03-14"))["phase"] == "maintenance"
    for day in ("2022-12-12", "2023-12-11", "2024-12-09"):
        clinic.draw(mrn, d(day), NORMAL | {"ALP": 90, "BILI": 12})
    clinic.run(d("2024-12-09"))


@pytest.mark.parametrize("bilirubin_at_diagnosis", [
    pytest.param(150, id="bilirubin 150 at diagnosis: the frozen baseline used to hide the jaundice"),
    pytest.param(10, id="bilirubin normal at diagnosis"),
])
def test_jaundice_years_into_maintenance_is_critical_whatever_the_bilirubin_at_diagnosis(
        clinic: Clinic, bilirubin_at_diagnosis: float) -> None:
    mrn = f"L2{int(bilirubin_at_diagnosis):03d}"
    aih_patient_years_into_maintenance(clinic, mrn, bilirubin_at_diagnosis)
    # 2025-03-10: cholestatic jaundice, bilirubin 120 umol/L and ALP 600 U/L.
    clinic.draw(mrn, d("2025-03-10"), NORMAL | {"BILI": 120, "ALP": 600})
    clinic.run(d("2025-03-10"))
    view = clinic.view(mrn, d("2025-03-10"))
    # The baseline for grading is the last normal-range value since the current azathioprine exposure
    # began (bilirubin 12 on 2024-12-09), not the diagnosis value: 120 > 3 × ULN 21 is CTCAE v5.0
    # grade 3 (CLINICAL.md §4.5) -> `critical`, with the baseline and its date in the why.
    bili = flag(view, "bilirubin_rise", "BILI", "2025-03-10")
    assert (bili["severity"], bili["rule_id"]) == ("critical", "aih-azathioprine/ctcae-5.0/BILI/grade-3")
    assert ("baseline BILI 12 umol/L on 2024-12-09 (the last normal-range value since azathioprine "
            "started on 2022-01-31)") in bili["why"]
    # ALP 600 > 2.5 × ULN 130 is CTCAE grade 2: the protocol's cholestasis action tier.
    alp = flag(view, "alp_rise", "ALP", "2025-03-10")
    assert (alp["severity"], alp["rule_id"]) == ("action", "aih-azathioprine/ctcae5-g2/alp-above-2.5-uln")


# --- 3. An action tier below CTCAE grade 3 for the liver in IBD and rheumatology -------------------------

@pytest.mark.parametrize(("protocol", "weight", "dose"), [
    pytest.param("ibd-azathioprine", 75, 150, id="IBD"),
    pytest.param("rheum-azathioprine", 70, 75, id="rheumatology"),
])
def test_jaundice_below_ctcae_grade_3_is_an_action_flag_and_low_platelets_with_it_suggest_vod_or_nrh(
        clinic: Clinic, protocol: str, weight: float, dose: float) -> None:
    mrn = f"L3{weight}"
    clinic.enroll(mrn, start=d("2026-01-05"), protocol=protocol, weight_kg=weight, phase=Phase.INDUCTION)
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": dose})
    for day in ("2026-01-05", "2026-01-19", "2026-02-02"):
        clinic.draw(mrn, d(day), NORMAL | {"ALP": 90})
        clinic.run(d(day))
    # 2026-02-16: bilirubin 60 (2.9 × ULN), ALT 95, ALP 250: CTCAE grades 2, 1, 1 - nothing critical,
    # under the BSR/SPS transaminase cut of 100. Bilirubin > 1.5 × ULN (CTCAE grade 2, CLINICAL.md
    # §4.5) is the protocol's jaundice action tier (§4.7: withhold and discuss).
    clinic.draw(mrn, d("2026-02-16"), NORMAL | {"BILI": 60, "ALT": 95, "ALP": 250})
    clinic.run(d("2026-02-16"))
    view = clinic.view(mrn, d("2026-02-16"))
    assert liver(view, "2026-02-16") == {("bilirubin_rise", "BILI", "action")}
    jaundice = flag(view, "bilirubin_rise", "BILI", "2026-02-16")
    assert jaundice["rule_id"] == f"{protocol}/ctcae5-g2/bilirubin-above-1.5-uln"
    assert "above 1.5 × ULN (31.5)" in jaundice["why"] and "CTCAE v5.0 grade 2" in jaundice["why"]

    # 2026-03-02: ALP still raised and platelets now 130: a raised ALP or bilirubin with a platelet
    # count under the lower limit is the laboratory picture of veno-occlusive disease or nodular
    # regenerative hyperplasia (FDA label [M], CLINICAL.md §4.3; SOURCE-ARTICLE.md: "permanently
    # withdraw if suspected") -> `action`.
    clinic.draw(mrn, d("2026-03-02"), NORMAL | {"BILI": 20, "ALP": 280, "PLT": 130})
    clinic.run(d("2026-03-02"))
    view = clinic.view(mrn, d("2026-03-02"))
    [vod] = open_flags(view, "vod_nrh_suspicion")
    assert (vod["severity"], vod["rule_id"], vod["observed_on"]) == (
        "action", f"{protocol}/patterns/vod-nrh-suspicion", "2026-03-02")
    assert "ALP 280 U/L on 2026-03-02" in vod["why"] and "PLT 130" in vod["why"]
    assert "veno-occlusive" in vod["why"]


# --- 4. A falling haemoglobin; an eGFR under 60 ----------------------------------------------------------

def test_haemoglobin_falling_from_140_to_85_over_eight_months_is_flagged(clinic: Clinic) -> None:
    mrn = "L4001"
    clinic.enroll(mrn, start=d("2025-01-06"), protocol="rheum-azathioprine", weight_kg=70,
                  phase=Phase.MAINTENANCE)
    clinic.record(mrn, d("2025-01-06"), doses={"azathioprine": 150})
    course = {"2025-01-06": 140, "2025-02-03": 133, "2025-03-03": 126, "2025-04-07": 119, "2025-05-05": 112,
              "2025-06-02": 105, "2025-07-07": 98, "2025-08-04": 91, "2025-09-01": 85}
    for day, hgb in course.items():
        clinic.draw(mrn, d(day), NORMAL | {"HGB": hgb})
        clinic.run(d(day))
    # Three consecutive falls of more than 10 % in all: a downward trend (BSR 2017 "a consistent
    # downward trend in any value", CLINICAL.md §4.4) -> `watch`, from the fourth result (04-07) on.
    view = clinic.view(mrn, d("2025-09-01"))
    trend = [f for f in open_flags(view, "trend_down") if f["analyte"] == "HGB"]
    assert trend and min(f["observed_on"] for f in trend) == "2025-04-07"
    # Under 100 g/L (CTCAE v5.0 grade 2, CLINICAL.md §4.5): the protocol's anaemia action tier, from
    # 98 on 07-07; 85 is grade 2 too (grade 3, critical, starts under 80).
    anaemia = [(f["observed_on"], f["severity"], f["rule_id"]) for f in open_flags(view, "anemia")]
    assert anaemia == [(day, "action", "rheum-azathioprine/ctcae5-g2/haemoglobin-below-100")
                       for day in ("2025-09-01", "2025-08-04", "2025-07-07")]
    # An action cytopenia asks for a repeat count within a week (protocol [tightening], §4.7).
    assert ("2025-09-08", "due") in [(x["due_on"], x["status"]) for x in due(view, "CBC")]


def test_an_egfr_under_60_is_flagged_and_restarts_the_safety_clock_from_day_0(clinic: Clinic) -> None:
    mrn = "L4002"
    clinic.enroll(mrn, start=d("2025-01-06"), weight_kg=60, phase=Phase.MAINTENANCE)
    clinic.record(mrn, d("2025-01-06"), doses={"azathioprine": 100})
    clinic.draw(mrn, d("2025-01-06"), NORMAL | {"EGFR": 85})
    clinic.run(d("2025-01-06"))
    drawn = clinic.follow(mrn, d("2025-01-06"), d("2025-08-01"), EGFR=85)
    # By then the conservative-union clock is in its long-term stage: monthly counts (FDA label, source article).
    view = clinic.view(mrn, drawn[-1])
    assert {x["rule_id"].rsplit("/", 1)[1] for x in due(view, "CBC")} == {"long-term-monthly"}

    # 2025-08-11: eGFR 52 with creatinine 100 (25 % above 80: under the 30 % rise rule).
    clinic.draw(mrn, d("2025-08-11"), NORMAL | {"CREAT": 100, "EGFR": 52})
    clinic.run(d("2025-08-11"))
    view = clinic.view(mrn, d("2025-08-11"))
    # BSR 2017 (CLINICAL.md §4.1 [V]): creatinine rise > 30 % and/or eGFR < 60 -> `action`.
    [renal] = open_flags(view, "renal_impairment")
    assert (renal["severity"], renal["value"], renal["rule_id"]) == (
        "action", 52, "aih-azathioprine/bsr17/egfr-below-60")
    assert "creatinine_rise" not in kinds(view)
    # Renal impairment restarts the drug-safety clock from day 0 (CLINICAL.md §3.2): weekly counts
    # and liver tests again, the first a week after the result.
    [cbc] = due(view, "CBC")
    assert (cbc["due_on"], cbc["rule_id"].rsplit("/", 1)[1]) == ("2025-08-18", "titration-weekly")
    assert "renal impairment: EGFR 52" in cbc["why"]
