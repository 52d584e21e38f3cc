"""Courses of treatment that the schedules must follow (clinical-safety issue, "Schedules" items 10-13).

Each scenario drives the real services on named dates (tests/functional/scenario.py: the CSV lab feed,
`patients.record`, the daily cycle, the patient view that `monitor patient` prints) and was written from
its source before the fix, and failed before it. Sources: CLINICAL.md is ../shared/research/CLINICAL.md,
SOURCE-ARTICLE.md the project's source article; protocols in config/protocols/, safety profiles in
config/safety/, fallback reference ranges in config/analytes.toml.

- Baseline bloods and the infection screen before the first dose: SPS [V] (CLINICAL.md §1 BASELINE row, §8).
- Long-term counts: monthly (FDA label [V], CLINICAL.md §3.1; the source article: "CBC monthly");
  after a stop, one count 4 and 12 weeks later (delayed marrow suppression, FDA label [M], CLINICAL.md §4.3).
- Interactions: CLINICAL.md §7 (warfarin INR [M]; cytostatics, penicillamine, cimetidine, indometacin:
  SmPC ex-US [V]; trimethoprim alone [M]).
- Sex-specific fallback ranges when the lab sends none: CLINICAL.md §9.3 [M].
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.domain.protocol import Phase
from tests.functional.scenario import Clinic, d, due, due_dates, open_flags, steps

pytestmark = pytest.mark.usefixtures("db_url")
AIH, IBD, RHEUM = "aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine"
PANELS = ("CBC", "LFT", "RENAL")


@pytest.fixture
def clinic(engine: Engine) -> Clinic:
    return Clinic(engine)


def baseline_draws(view: dict[str, Any], protocol: str) -> list[tuple[str, str, str]]:
    """(panel, due on, status) of the draws asked for before the first azathioprine dose."""
    return [(x["panel"], x["due_on"], x["status"]) for x in view["due"]
            if x["rule_id"] == f"{protocol}/baseline/before-first-dose"]


def counts(view: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(due on, status, the rule's last part) of every open CBC draw."""
    return [(x["due_on"], x["status"], x["rule_id"].rsplit("/", 1)[1]) for x in due(view, "CBC")]


def on_azathioprine(clinic: Clinic, mrn: str, protocol: str, *, sex: str | None = None) -> None:
    """A patient of the clinic's cohort, already on azathioprine 150 mg, enrolled in maintenance on 2026-01-05."""
    clinic.enroll(mrn, start=d("2026-01-05"), protocol=protocol, weight_kg=75, phase=Phase.MAINTENANCE, sex=sex)
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 150})


# --- 10. Baseline bloods and the infection screen before a full-dose start ----------------------------------

def test_an_ibd_enrollment_asks_for_baseline_bloods_and_the_infection_screen_before_the_full_dose_start(
        clinic: Clinic) -> None:
    mrn = "B1001"
    clinic.enroll(mrn, start=d("2026-03-02"), protocol=IBD, weight_kg=75, phase=Phase.INDUCTION)
    clinic.run(d("2026-03-02"))
    view = clinic.view(mrn, d("2026-03-02"))
    # BSG via SPS (CLINICAL.md §10 [V]): 2 mg/kg from day 1, 150 mg at 75 kg; the first SPS count is on day 14.
    assert steps(view) == [("2026-03-02", 150, "due")]
    # SPS [V] (CLINICAL.md §1 BASELINE row): FBC, LFT and creatinine before the first dose, so today.
    assert baseline_draws(view, IBD) == [(p, "2026-03-02", "due") for p in PANELS]
    [renal] = [x for x in due(view, "RENAL") if x["rule_id"].endswith("/before-first-dose")]
    assert "before the first azathioprine dose on 2026-03-02" in renal["why"] and "SPS" in renal["why"]
    assert due_dates(view, "CBC") == ["2026-03-02", "2026-03-16"]
    # SPS [V] (CLINICAL.md §8): HBV, HCV, HIV and VZV immunity before starting; hepatitis B can reactivate.
    [screen] = open_flags(view, "infection_screen")
    assert (screen["severity"], screen["rule_id"], screen["observed_on"]) == (
        "action", f"{IBD}/screen/infection-screen", "2026-03-02")
    assert all(test in screen["why"] for test in ("HBV", "HCV", "HIV", "VZV")) and "SPS" in screen["why"]

    # Nothing drawn by the next day: the baseline draws are overdue.
    clinic.run(d("2026-03-03"))
    assert baseline_draws(clinic.view(mrn, d("2026-03-03")), IBD) == [(p, "2026-03-02", "overdue") for p in PANELS]
    # Drawn late on 03-04 (before the day-14 count's window opens): they count, and the day-14 count is next.
    clinic.normal_labs(mrn, d("2026-03-04"))
    clinic.run(d("2026-03-04"))
    view = clinic.view(mrn, d("2026-03-04"))
    assert baseline_draws(view, IBD) == []
    assert due_dates(view, "CBC") == ["2026-03-16"]

    # The screen stays open until a clinician records it: acknowledging the flag with the results.
    clinic.ack(screen["id"], d("2026-03-04"), "HBsAg and anti-HBc negative, HCV and HIV negative, VZV IgG positive")
    clinic.run(d("2026-03-05"))
    assert open_flags(clinic.view(mrn, d("2026-03-05")), "infection_screen") == []
    [stored] = [f for f in clinic.flags(mrn) if f["kind"] == "infection_screen"]
    assert stored["status"] == "acknowledged" and "HBsAg" in stored["ack_reason"]


def test_a_rheumatology_enrollment_counts_bloods_from_the_4_weeks_before_the_first_dose_as_baseline(
        clinic: Clinic) -> None:
    # Bloods sent before enrollment are held and attached at enrollment (GLOSSARY: held result).
    clinic.normal_labs("B2001", d("2026-02-09"))  # 21 days before the first dose: a baseline
    clinic.normal_labs("B2002", d("2026-01-26"))  # 35 days before: too old (within 28 days, DESIGN)
    for mrn in ("B2001", "B2002"):
        clinic.enroll(mrn, start=d("2026-03-02"), protocol=RHEUM, weight_kg=70, phase=Phase.INDUCTION)
    clinic.run(d("2026-03-02"))
    fresh, stale = clinic.view("B2001", d("2026-03-02")), clinic.view("B2002", d("2026-03-02"))
    # FDA RA label (CLINICAL.md §10 [V]): about 1 mg/kg from day 1, 75 mg at 70 kg.
    assert steps(fresh)[0] == ("2026-03-02", 75, "due")
    # SPS [V]: FBC, LFT, creatinine before the first dose; BSR 2017 2-weekly counts from the start (§3.1).
    assert baseline_draws(fresh, RHEUM) == []
    assert due_dates(fresh, "CBC") == ["2026-03-16"]
    assert baseline_draws(stale, RHEUM) == [(p, "2026-03-02", "due") for p in PANELS]
    for view in (fresh, stale):
        [screen] = open_flags(view, "infection_screen")
        assert (screen["severity"], screen["rule_id"]) == ("action", f"{RHEUM}/screen/infection-screen")


# --- 11. Long-term counts and counts after a stop --------------------------------------------------------

def test_a_long_term_patient_has_monthly_counts_and_one_count_4_and_12_weeks_after_stopping(clinic: Clinic) -> None:
    mrn = "L3001"
    on_azathioprine(clinic, mrn, AIH)
    clinic.normal_labs(mrn, d("2026-01-05"))
    clinic.run(d("2026-01-05"))
    drawn = clinic.follow(mrn, d("2026-01-05"), d("2026-10-12"))
    # conservative-union (CLINICAL.md §3.2): weekly to day 28, 2-weekly to day 84, monthly x 3 (BSR 2017), then
    # monthly for as long as azathioprine is given: the FDA label [V] and the source article ("CBC monthly").
    # The 3-monthly LFT + IgG of the AIH disease clock (AASLD10 rec. 25) fall in these draws' windows until
    # day 273 (10-05, ±14 days), whose blood also meets the monthly count of 10-12 (±7 days).
    assert drawn == [d(x) for x in (
        "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-02", "2026-02-16", "2026-03-02", "2026-03-16",
        "2026-03-30", "2026-04-27", "2026-05-25", "2026-06-22", "2026-07-20", "2026-08-17", "2026-09-14",
        "2026-10-05")]
    [cbc] = due(clinic.view(mrn, d("2026-10-12")), "CBC")
    assert (cbc["due_on"], cbc["rule_id"]) == ("2026-11-09", f"{AIH}/safety/conservative-union/long-term-monthly")
    assert "FDA" in cbc["why"]

    # 2026-10-19: azathioprine stopped. Delayed marrow suppression can occur (FDA label [M], CLINICAL.md §4.3):
    # one count 4 and 12 weeks after the stop (DESIGN); the disease clock's liver tests and IgG go on.
    clinic.phase(mrn, Phase.OFF_TREATMENT, d("2026-10-19"), "azathioprine stopped")
    clinic.record(mrn, d("2026-10-19"), doses={"azathioprine": 0})
    clinic.run(d("2026-10-19"))
    view = clinic.view(mrn, d("2026-10-19"))
    assert counts(view) == [("2026-11-16", "upcoming", "after-stop")]
    assert "azathioprine stop on 2026-10-19" in due(view, "CBC")[0]["why"]
    assert due_dates(view, "LFT") == ["2026-11-09"]  # off treatment: 3-weekly (AASLD10 [M], CLINICAL.md §2.6)
    clinic.labs(mrn, d("2026-11-09"), ALT=25, AST=24, IGG=12)  # liver tests and IgG only
    clinic.run(d("2026-11-09"))
    assert counts(clinic.view(mrn, d("2026-11-16"))) == [("2026-11-16", "due", "after-stop"),
                                                         ("2027-01-11", "upcoming", "after-stop")]
    clinic.normal_labs(mrn, d("2026-11-16"))
    clinic.run(d("2026-11-16"))
    assert counts(clinic.view(mrn, d("2026-11-16"))) == [("2027-01-11", "upcoming", "after-stop")]
    clinic.normal_labs(mrn, d("2027-01-11"))
    clinic.run(d("2027-01-11"))
    view = clinic.view(mrn, d("2027-01-11"))
    assert counts(view) == []  # the disease clock alone continues
    assert due(view, "LFT") and due(view, "IGG")


# --- 12. Interacting drugs started in maintenance ----------------------------------------------------------

def test_warfarin_asks_for_an_inr_check_at_its_start_and_at_each_azathioprine_change_while_taken(
        clinic: Clinic) -> None:
    mrn = "W4001"
    on_azathioprine(clinic, mrn, AIH)
    clinic.record(mrn, d("2026-08-03"), med_start=("Coumadin",))  # a brand: stored as warfarin
    clinic.run(d("2026-08-03"))
    # CLINICAL.md §7 [M]: azathioprine may reduce warfarin's effect; INR when azathioprine is started,
    # stopped or changed.
    [flag] = open_flags(clinic.view(mrn, d("2026-08-03")), "interaction")
    assert (flag["severity"], flag["rule_id"], flag["observed_on"]) == (
        "action", f"{AIH}/interactions/warfarin/warfarin", "2026-08-03")
    assert "INR" in flag["why"]
    clinic.record(mrn, d("2026-08-17"), doses={"azathioprine": 100})
    clinic.run(d("2026-08-17"))
    clinic.record(mrn, d("2026-08-31"), doses={"azathioprine": 0})
    clinic.run(d("2026-08-31"))
    reminders = [f for f in open_flags(clinic.view(mrn, d("2026-08-31")), "interaction")
                 if f["rule_id"] == f"{AIH}/interactions/warfarin/warfarin/dose-change"]
    assert sorted((f["observed_on"], f["severity"]) for f in reminders) == [
        ("2026-08-17", "action"), ("2026-08-31", "action")]
    whys = {f["observed_on"]: f["why"] for f in reminders}
    assert "azathioprine 100 mg/day from 2026-08-17" in whys["2026-08-17"] and "INR" in whys["2026-08-17"]
    assert "azathioprine stopped on 2026-08-31" in whys["2026-08-31"]
    # Warfarin stopped: restarting azathioprine afterwards asks for no INR.
    clinic.record(mrn, d("2026-09-07"), med_stop=("warfarin",))
    clinic.record(mrn, d("2026-09-14"), doses={"azathioprine": 100})
    clinic.run(d("2026-09-14"))
    assert sorted(f["observed_on"] for f in clinic.flags(mrn) if f["rule_id"].endswith("/dose-change")) == [
        "2026-08-17", "2026-08-31"]


def test_trimethoprim_alone_flags_and_asks_for_an_extra_count_3_weeks_after_it_starts(clinic: Clinic) -> None:
    mrn = "T4002"
    on_azathioprine(clinic, mrn, IBD)
    # SPS 3-monthly after week 12 (CLINICAL.md §3.1): 01-19, 02-02, 03-02, 03-30, 06-29, then 09-28.
    assert clinic.follow(mrn, d("2026-01-05"), d("2026-07-05"))[-1] == d("2026-06-29")
    clinic.record(mrn, d("2026-07-06"), med_start=("trimethoprim",))
    clinic.run(d("2026-07-06"))
    view = clinic.view(mrn, d("2026-07-06"))
    # The antifolate of co-trimoxazole (SmPC ex-US [V]: extra FBC); trimethoprim alone [M], CLINICAL.md §7.
    [flag] = open_flags(view, "interaction")
    assert (flag["severity"], flag["rule_id"]) == ("watch", f"{IBD}/interactions/trimethoprim/trimethoprim")
    assert counts(view) == [("2026-07-27", "upcoming", "extra-count")]


def test_methotrexate_flags_and_restarts_the_safety_counts(clinic: Clinic) -> None:
    mrn = "M4003"
    on_azathioprine(clinic, mrn, RHEUM)
    # BSR 2017 (CLINICAL.md §3.1): 2-weekly to day 42, monthly x 3 (to 05-11), then 12-weekly: 08-03.
    assert clinic.follow(mrn, d("2026-01-05"), d("2026-05-31"))[-1] == d("2026-05-11")
    clinic.record(mrn, d("2026-06-01"), med_start=("methotrexate",))
    clinic.run(d("2026-06-01"))
    view = clinic.view(mrn, d("2026-06-01"))
    # Other myelosuppressants (cytostatics, penicillamine): additive myelosuppression, avoid where possible
    # (SmPC ex-US [V], CLINICAL.md §7); a new interacting drug restarts the safety clock (CLINICAL.md §3.2),
    # bsr-2017 [restarts] interacting_drug = 0: every 2 weeks again.
    [flag] = open_flags(view, "interaction")
    assert (flag["severity"], flag["rule_id"]) == ("action", f"{RHEUM}/interactions/myelosuppressants/methotrexate")
    [cbc] = due(view, "CBC")
    assert (cbc["due_on"], cbc["rule_id"].rsplit("/", 1)[1]) == ("2026-06-15", "bsr-2-weekly")
    assert "methotrexate start on 2026-06-01" in cbc["why"]


def test_indometacin_flags_and_asks_for_an_extra_count_3_weeks_after_it_starts(clinic: Clinic) -> None:
    mrn = "N4004"
    on_azathioprine(clinic, mrn, RHEUM)
    clinic.follow(mrn, d("2026-01-05"), d("2026-05-31"))
    clinic.record(mrn, d("2026-06-01"), med_start=("indomethacin",))  # the US spelling: stored as indometacin
    clinic.run(d("2026-06-01"))
    view = clinic.view(mrn, d("2026-06-01"))
    # Cimetidine, indomethacin: additive myelosuppression, avoid where possible (SmPC ex-US [V], CLINICAL.md §7);
    # an extra count 3 weeks after the start, as for the other drugs of §7 with "extra FBC" (DESIGN).
    [flag] = open_flags(view, "interaction")
    assert (flag["severity"], flag["rule_id"]) == (
        "action", f"{RHEUM}/interactions/cimetidine-indometacin/indometacin")
    assert counts(view) == [("2026-06-22", "upcoming", "extra-count")]


# --- 13. Sex-specific fallback ranges when the lab sends none ---------------------------------------------

def test_without_a_lab_range_haemoglobin_and_creatinine_are_graded_against_the_range_for_the_patients_sex(
        clinic: Clinic) -> None:
    patients = {"X5001": "F", "X5002": "M", "X5003": None}
    for mrn, sex in patients.items():
        on_azathioprine(clinic, mrn, RHEUM, sex=sex)
        clinic.labs(mrn, d("2026-02-02"), HGB=118)
        clinic.labs(mrn, d("2026-02-09"), HGB=125, CREAT=300)
    clinic.run(d("2026-02-09"))

    def grades(mrn: str) -> dict[tuple[str, str], int | None]:
        return {(r["analyte"], r["observed_on"]): r["ctcae_grade"]
                for r in clinic.view(mrn, d("2026-02-09"))["results"]}

    female, male, unknown = (grades(mrn) for mrn in patients)
    # CLINICAL.md §9.3 [M], used only when the lab sends no range: Hb women 120-150, men 130-170 g/L; creatinine
    # women 44-97, men 62-115 umol/L; sex unknown: the wider 120-170 and 44-115.
    # Hb 118 is below every one of these lower limits: CTCAE v5 anaemia grade 1 (< LLN - 100 g/L) for all three.
    assert [g[("HGB", "2026-02-02")] for g in (female, male, unknown)] == [1, 1, 1]
    # Hb 125: normal for a woman, grade 1 for a man (< 130).
    assert [g[("HGB", "2026-02-09")] for g in (female, male, unknown)] == [0, 1, 0]
    # Creatinine 300: > 3 x ULN 97 for a woman, grade 3, a critical flag (CTCAE >= 3, CLINICAL.md §4.7); for a
    # man (ULN 115) > 1.5 x but not > 3 x ULN: grade 2, no flag.
    assert [g[("CREAT", "2026-02-09")] for g in (female, male, unknown)] == [3, 2, 2]
    [critical] = open_flags(clinic.view("X5001", d("2026-02-09")), "creatinine_rise")
    assert critical["severity"] == "critical" and "grade 3" in critical["why"]
    assert open_flags(clinic.view("X5002", d("2026-02-09")), "creatinine_rise") == []
