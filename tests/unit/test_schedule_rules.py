"""Schedule rules of the clinical-safety issue, "Schedules" part (items 10-13), on the packaged protocols.

- Baseline bloods before the first dose (IBD, rheumatology `[baseline]`) and the infection-screen reminder
  (`[infection_screen]`, every protocol): SPS [V], CLINICAL.md §1 BASELINE row and §8; the 28-day look-back is
  DESIGN.
- Long-term counts: monthly in conservative-union (FDA label [V], CLINICAL.md §3.1; the source article), and the
  counts 4 and 12 weeks after a stop (`[after_stop]`, every safety profile; FDA label [M] delayed marrow
  suppression, CLINICAL.md §4.3; the days are DESIGN).
- Interactions (CLINICAL.md §7): warfarin (INR, [M]), trimethoprim alone ([M]), myelosuppressants (methotrexate,
  cytostatics, penicillamine; SmPC [V]), cimetidine and indometacin (SmPC [V]); the sources of the febuxostat
  and aminosalicylate rules.
- Sex-specific fallback ranges for Hb and creatinine (CLINICAL.md §9.3 [M]) and the label of LOINC 56799-0.

Every table row cites its source; rows sit exactly at each cut point and either side of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.rules import interaction_flags
from monitor.domain.schedule import dose_timeline, safety_runs
from monitor.domain.snapshot import DoseEvent, Genotype, Medication, PhaseEpisode, Result, Snapshot
from monitor.domain.thresholds import ctcae_grade
from monitor.protocols import Library, packaged_library
from tests.unit.builders import CATALOG, START, day, on_azathioprine, result, snapshot
from tests.unit.config_files import copy_config, edit, rejection

LIBRARY = packaged_library()
AIH, IBD, RHEUM = (LIBRARY.get(p) for p in ("aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine"))
PROTOCOLS = [pytest.param(p, id=p.id) for p in (AIH, IBD, RHEUM)]
PANELS = ("CBC", "LFT", "RENAL")


def plan(protocol: MonitoringProtocol, snap: Snapshot, today: int) -> Plan:
    return evaluate(snap, protocol, today=day(today))


def baseline_draws(protocol: MonitoringProtocol, snap: Snapshot, today: int) -> list[tuple[str, int, str]]:
    """(panel, day due, status) of the draws before the first dose."""
    return [(d.panel, (d.due_on - START).days, d.status) for d in plan(protocol, snap, today).draws
            if d.rule_id == f"{protocol.id}/baseline/before-first-dose"]


def bloods(on: int, first_id: int = 1) -> tuple[Result, ...]:
    """One result of each panel (CBC, LFT, creatinine) on a day."""
    return (result("WBC", 6.0, on=day(on), id=first_id), result("ALT", 25, on=day(on), id=first_id + 1),
            result("CREAT", 80, on=day(on), id=first_id + 2))


# --- 10. baseline bloods before the first dose (SPS [V]) -------------------------------------------------------

def test_ibd_and_rheumatology_ask_for_fbc_lft_and_creatinine_from_the_4_weeks_before_the_first_dose() -> None:
    for protocol in (IBD, RHEUM):
        assert protocol.baseline is not None
        assert (protocol.baseline.panels, protocol.baseline.before_days, protocol.cite(protocol.baseline.source)) == (
            PANELS, 28, "SPS")
    # AIH has a baseline phase whose disease-clock draw (FBC, LFT, IgG, creatinine) comes before treatment
    assert AIH.baseline is None
    (stage,) = AIH.disease[Phase.BASELINE].stages
    assert (stage.panels, AIH.cite(stage.source)) == (("CBC", "LFT", "IGG", "RENAL"), "SPS")  # was BMJBP


#: (day of the bloods relative to the first dose on day 0, counted as the baseline). Today is day 10; the first
#: routine count is day 14 ±5 in both protocols (SPS; BSR 2017), whose window opens on day 9.
BASELINE_RESULTS = [
    pytest.param(-29, False, id="DESIGN 29 days before the first dose: too old"),
    pytest.param(-28, True, id="DESIGN exactly 28 days before: counts"),
    pytest.param(-27, True, id="DESIGN 27 days before: counts"),
    pytest.param(0, True, id="SPS the morning of the first dose: counts"),
    pytest.param(8, True, id="late, the day before the day-14 count's window opens: counts"),
    pytest.param(9, False, id="late, in the day-14 count's window: that count's, not the baseline"),
]


@pytest.mark.parametrize("protocol", [pytest.param(IBD, id=IBD.id), pytest.param(RHEUM, id=RHEUM.id)])
@pytest.mark.parametrize(("on", "counted"), BASELINE_RESULTS)
def test_bloods_count_as_baseline_from_28_days_before_the_first_dose(
        protocol: MonitoringProtocol, on: int, counted: bool) -> None:
    snap = snapshot(phase=Phase.INDUCTION, results=bloods(on))
    assert baseline_draws(protocol, snap, 10) == ([] if counted else [(p, 0, "missed") for p in PANELS])


#: (today, status of the baseline draws due on day 0) with no bloods at all.
BASELINE_STATUSES = [
    pytest.param(-29, "upcoming", id="the day before its window opens"),
    pytest.param(-28, "due", id="DESIGN opens 28 days before the first dose"),
    pytest.param(0, "due", id="SPS due on the day of the first dose"),
    pytest.param(1, "overdue", id="overdue once the first dose is given"),
    pytest.param(8, "overdue", id="still overdue the day before the day-14 count's window opens"),
    pytest.param(9, "missed", id="missed once the day-14 count's window opens"),
    pytest.param(90, "missed", id="listed 90 days (missed_lookback_days)"),
    pytest.param(91, None, id="then dropped"),
]


@pytest.mark.parametrize(("today", "status"), BASELINE_STATUSES)
def test_the_baseline_draw_is_due_on_the_day_of_the_first_dose(today: int, status: str | None) -> None:
    snap = snapshot(phase=Phase.INDUCTION)
    assert baseline_draws(IBD, snap, today) == ([] if status is None else [(p, 0, status) for p in PANELS])


def test_the_baseline_draw_says_when_the_first_dose_is_and_which_source_asks() -> None:
    (draw, *_) = [d for d in plan(IBD, snapshot(phase=Phase.INDUCTION), 0).draws if d.panel == "RENAL"]
    assert draw.why == (f"RENAL before the first azathioprine dose on {START}: a result from the 28 days before "
                        "counts (SPS)")


@pytest.mark.parametrize(
    ("snap", "first_dose"),
    [
        pytest.param(snapshot(phase=Phase.INDUCTION), 0, id="BSG via SPS: 2 mg/kg planned from day 1"),
        pytest.param(snapshot(phase=Phase.INDUCTION, doses=(DoseEvent("azathioprine", 150, day(10)),)), 10,
                     id="a first dose recorded on day 10 is the first dose"),
        pytest.param(snapshot(phase=Phase.INDUCTION, genotypes=()), 0,
                     id="CPIC18: TPMT unknown holds the start; due by the enrollment start meanwhile"),
    ],
)
def test_the_baseline_draw_is_due_on_the_first_planned_or_recorded_dose(snap: Snapshot, first_dose: int) -> None:
    assert baseline_draws(IBD, snap, first_dose) == [(p, first_dose, "due") for p in PANELS]


@pytest.mark.parametrize(
    "phase",
    [pytest.param(Phase.MAINTENANCE, id="a cohort enrolled already on azathioprine"),
     pytest.param(Phase.OFF_TREATMENT, id="a patient followed off treatment")],
)
def test_no_baseline_draw_for_an_enrollment_that_does_not_start_treatment(phase: Phase) -> None:
    for protocol in (IBD, RHEUM):
        assert baseline_draws(protocol, snapshot(phase=phase), 0) == []


# --- 10. the infection screen (SPS [V], CLINICAL.md §8) ----------------------------------------------------------

#: (protocol, enrollment phase, reminder raised).
SCREENS = [
    pytest.param(AIH, Phase.BASELINE, True, id="AIH baseline: before prednisolone and azathioprine"),
    pytest.param(AIH, Phase.INDUCTION, True, id="AIH enrolled in induction"),
    pytest.param(AIH, Phase.REINDUCTION, True, id="AIH re-induction: a new course"),
    pytest.param(AIH, Phase.MAINTENANCE, False, id="AIH cohort already on azathioprine"),
    pytest.param(AIH, Phase.OFF_TREATMENT, False, id="AIH followed off treatment"),
    pytest.param(IBD, Phase.INDUCTION, True, id="IBD new start"),
    pytest.param(IBD, Phase.MAINTENANCE, False, id="IBD cohort"),
    pytest.param(RHEUM, Phase.INDUCTION, True, id="rheumatology new start"),
    pytest.param(RHEUM, Phase.MAINTENANCE, False, id="rheumatology cohort"),
]


@pytest.mark.parametrize(("protocol", "phase", "raised"), SCREENS)
def test_an_enrollment_that_starts_treatment_gets_the_infection_screen_reminder(
        protocol: MonitoringProtocol, phase: Phase, raised: bool) -> None:
    found = [f for f in plan(protocol, snapshot(phase=phase), 0).flags if f.kind == "infection_screen"]
    assert bool(found) is raised
    for f in found:
        assert (f.severity, f.rule_id, f.observed_on) == ("action", f"{protocol.id}/screen/infection-screen", START)
        assert f.why.startswith(f"infection screen before azathioprine starts (enrolled {START}): "
                                "HBV, HCV, HIV, VZV immunity; record the results")
        assert f.why.endswith("(SPS)")


def test_the_screen_reminder_is_one_flag_for_the_whole_enrollment() -> None:
    # a flag is stored once by key (ARCHITECTURE.md decision 4): the same key every day until acknowledged, so an
    # acknowledgement (the clinician's record of the results) holds
    snap = snapshot(phase=Phase.INDUCTION)
    keys = {f.key for n in (0, 1, 100, 400) for f in plan(RHEUM, snap, n).flags if f.kind == "infection_screen"}
    assert keys == {f"rheum-azathioprine/screen/infection-screen@{START}"}


# --- 11. long-term counts ----------------------------------------------------------------------------------------

#: (safety profile, its long-term stage: id, interval, window, source).
LONG_TERM = [
    pytest.param("conservative-union", ("long-term-monthly", 28, 7, "FDA label"),
                 id="FDA label [V] monthly, the more frequent of FDA and BSR 2017 (and the source article)"),
    pytest.param("fda", ("fda-monthly", 28, 7, "FDA label"), id="FDA label [V]: monthly"),
    pytest.param("bsr-2017", ("bsr-12-weekly", 84, 14, "BSR 2017"), id="BSR17 [V]: at least every 12 weeks"),
    pytest.param("bsg-sps", ("sps-3-monthly", 91, 14, "SPS"), id="SPS gastroenterology [V]: every 3 months"),
]


@pytest.mark.parametrize(("profile", "expected"), LONG_TERM)
def test_each_profile_says_what_its_long_term_interval_is(profile: str, expected: tuple[str, int, int, str],
                                                           tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit(config, 'profile = "conservative-union"', f'profile = "{profile}"')
    protocol = Library(config).get("aih-azathioprine")
    last = protocol.safety.stages[-1]
    assert (last.id, last.every_days, last.window_days, protocol.cite(last.source)) == expected


# --- 11. counts after a stop (FDA label [M]: delayed marrow suppression; days 28 and 84 DESIGN) -----------------

def stopped(*, restart: int | None = None) -> Snapshot:
    """On azathioprine 100 mg from START, off treatment from day 500 (AIH), back on it from `restart`."""
    phases = [PhaseEpisode(Phase.MAINTENANCE, START), PhaseEpisode(Phase.OFF_TREATMENT, day(500))]
    doses = [DoseEvent("azathioprine", 100, START)]
    if restart is not None:
        phases.append(PhaseEpisode(Phase.MAINTENANCE, day(restart)))
        doses.append(DoseEvent("azathioprine", 100, day(restart)))
    return snapshot(phases=tuple(phases), doses=tuple(doses))


def after_stop(snap: Snapshot, today: int, protocol: MonitoringProtocol = AIH) -> list[tuple[int, str]]:
    """(day due, status) of the counts after a stop."""
    return [((d.due_on - START).days, d.status) for d in plan(protocol, snap, today).draws
            if d.rule_id.endswith("/after-stop")]


@pytest.mark.parametrize("profile", ["conservative-union", "bsr-2017", "bsg-sps", "fda"])
def test_every_safety_profile_counts_4_and_12_weeks_after_a_stop(profile: str, tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    edit(config, 'profile = "conservative-union"', f'profile = "{profile}"')
    stage = Library(config).get("aih-azathioprine").safety.after_stop
    assert stage is not None
    assert (stage.at_days, stage.window_days, stage.panels) == ((28, 84), 7, ("CBC",))


#: (today, the after-stop counts listed) for a stop on day 500 and no results after it.
AFTER_STOP = [
    pytest.param(500, [(528, "upcoming")], id="the stop: the 4-week count is next"),
    pytest.param(520, [(528, "upcoming")], id="the day before its ±7-day window opens"),
    pytest.param(521, [(528, "due"), (584, "upcoming")], id="its window opens on day 521"),
    pytest.param(535, [(528, "due"), (584, "upcoming")], id="closes on day 535"),
    pytest.param(536, [(528, "overdue"), (584, "upcoming")], id="overdue from day 536"),
    pytest.param(577, [(528, "missed"), (584, "due")], id="missed when the 12-week count's window opens"),
    pytest.param(591, [(528, "missed"), (584, "due")], id="the 12-week count closes on day 591"),
    pytest.param(592, [(528, "missed"), (584, "overdue")], id="then overdue"),
    pytest.param(619, [(584, "overdue")], id="day 528 dropped after 90 days"),
    pytest.param(673, [(584, "overdue")], id="the last count stays overdue 89 days (no later count comes)"),
    pytest.param(674, [(584, "missed")], id="missed 90 days after it was due"),
    pytest.param(675, [], id="then dropped, like any missed draw"),
]


@pytest.mark.parametrize(("today", "expected"), AFTER_STOP)
def test_a_stop_asks_for_one_count_4_and_12_weeks_later(today: int, expected: list[tuple[int, str]]) -> None:
    assert after_stop(stopped(), today) == expected


def test_the_after_stop_count_says_after_which_stop_and_why() -> None:
    (draw,) = [d for d in plan(AIH, stopped(), 500).draws if d.rule_id.endswith("/after-stop")]
    assert draw.rule_id == "aih-azathioprine/safety/conservative-union/after-stop"
    assert draw.why == (f"CBC on day 28, 84 after azathioprine stop on {day(500)}: day 28 (±7 days; design choice, "
                        "delayed marrow suppression (FDA label [M]))")


@pytest.mark.parametrize(
    ("restart", "today", "expected"),
    [
        pytest.param(520, 530, [], id="restarted before day 528: the safety clock takes over"),
        pytest.param(540, 545, [(528, "missed")], id="restarted on day 540: the unmet 4-week count is missed"),
        pytest.param(540, 580, [(528, "missed")], id="and the 12-week count is never asked for"),
    ],
)
def test_a_restart_ends_the_counts_after_a_stop(restart: int, today: int, expected: list[tuple[int, str]]) -> None:
    assert after_stop(stopped(restart=restart), today) == expected


def test_a_hold_is_a_stop_too() -> None:
    # a recorded dose of 0 in maintenance (IBD cohort on bsg-sps): the same counts 4 and 12 weeks later
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 0, day(200)),))
    assert after_stop(snap, 200, IBD) == [(228, "upcoming")]


def test_the_counts_after_a_stop_are_met_by_any_count_in_their_window() -> None:
    snap = replace(stopped(), results=(result("WBC", 6.0, on=day(530)),))
    assert after_stop(snap, 540) == [(584, "upcoming")]


# --- 12. interactions (CLINICAL.md §7) --------------------------------------------------------------------------

#: (drug started on day 100, severity, interaction id, extra count 21 days later, restarts the safety clock).
NEW_INTERACTIONS = [
    pytest.param("warfarin", "action", "warfarin", False, False, id="[M] warfarin: check the INR"),
    pytest.param("trimethoprim", "watch", "trimethoprim", True, False,
                 id="[M] trimethoprim alone: extra FBC as co-trimoxazole"),
    pytest.param("methotrexate", "action", "myelosuppressants", False, True,
                 id="SmPC [V] cytostatic methotrexate: avoid, counts restart"),
    pytest.param("cyclophosphamide", "action", "myelosuppressants", False, True, id="SmPC [V] cytostatics"),
    pytest.param("penicillamine", "action", "myelosuppressants", False, True, id="SmPC [V] penicillamine"),
    pytest.param("mercaptopurine", "action", "myelosuppressants", False, True, id="another thiopurine"),
    pytest.param("myelosuppressant", "action", "myelosuppressants", False, True, id="the class recorded"),
    pytest.param("cimetidine", "action", "cimetidine-indometacin", True, False, id="SmPC [V] cimetidine"),
    pytest.param("indometacin", "action", "cimetidine-indometacin", True, False, id="SmPC [V] indometacin"),
    pytest.param("mesalazine", "watch", "aminosalicylates", True, False, id="Imuran label [V] mesalazine"),
    pytest.param("aminosalicylate", "watch", "aminosalicylates", True, False, id="the class recorded"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("drug", "severity", "interaction", "extra", "restarts"), NEW_INTERACTIONS)
def test_every_protocol_has_the_interactions_of_clinical_md_section_7(
        protocol: MonitoringProtocol, drug: str, severity: str, interaction: str, extra: bool, restarts: bool) -> None:
    snap = on_azathioprine(medications=(Medication(drug, day(100)),))
    found, slots = interaction_flags(snap, protocol, today=day(100))
    assert [(f.severity, f.rule_id) for f in found] == [
        (severity, f"{protocol.id}/interactions/{interaction}/{drug}")]
    extra_counts = [s.due_on for s in slots if s.rule_id.endswith("/extra-count")]
    assert extra_counts == ([day(121)] if extra else [])
    anchors = [r.anchor for r in safety_runs(snap, protocol, dose_timeline(snap, protocol, "azathioprine"))]
    assert (day(100) in anchors) is restarts


#: (interaction id, the source named in its why).
SOURCES = [
    pytest.param("xanthine-oxidase-contraindicated", "Japanese package inserts", id="febuxostat: Japanese inserts [V]"),
    pytest.param("aminosalicylates", "Imuran label via an interaction database", id="aminosalicylates [V]"),
    pytest.param("watch-counts", "IMURAN SmPC (ex-US)", id="ACE inhibitors, co-trimoxazole: SmPC [V]"),
    pytest.param("warfarin", "CLINICAL.md §7 warfarin row [M]", id="warfarin [M]"),
    pytest.param("trimethoprim", "trimethoprim alone, from memory [M]", id="trimethoprim [M]"),
    pytest.param("myelosuppressants", "IMURAN SmPC (ex-US)", id="myelosuppressants: SmPC [V]"),
    pytest.param("cimetidine-indometacin", "IMURAN SmPC (ex-US)", id="cimetidine, indometacin: SmPC [V]"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("interaction", "cited"), SOURCES)
def test_each_interaction_cites_its_own_source(protocol: MonitoringProtocol, interaction: str, cited: str) -> None:
    (x,) = [x for x in protocol.interactions if x.id == interaction]
    assert protocol.cite(x.source) == cited


def warfarin(*doses: DoseEvent, stopped_on: int | None = 200) -> Snapshot:
    """An AIH cohort patient on 100 mg from START, warfarin from day 100 (to `stopped_on`)."""
    med = Medication("warfarin", day(100), None if stopped_on is None else day(stopped_on))
    return on_azathioprine(doses=doses, medications=(med,))


def reminders(snap: Snapshot, today: int, protocol: MonitoringProtocol = AIH) -> list[tuple[int, str]]:
    return [((f.observed_on - START).days, f.why) for f in plan(protocol, snap, today).flags
            if f.rule_id == f"{protocol.id}/interactions/warfarin/warfarin/dose-change"]


#: (day azathioprine changes to 150 mg, reminded). Warfarin is taken from day 100 to day 200 (CLINICAL.md §7 [M]:
#: INR when azathioprine is started, stopped or changed).
WARFARIN_CHANGES = [
    pytest.param(99, False, id="a change before warfarin starts"),
    pytest.param(100, False, id="a change on warfarin's first day: its start flag says it"),
    pytest.param(101, True, id="a change the day after warfarin starts"),
    pytest.param(199, True, id="a change on warfarin's last day"),
    pytest.param(200, False, id="a change the day warfarin stops"),
]


@pytest.mark.parametrize(("change", "reminded"), WARFARIN_CHANGES)
def test_warfarin_asks_for_an_inr_again_when_the_azathioprine_dose_changes(change: int, reminded: bool) -> None:
    found = reminders(warfarin(DoseEvent("azathioprine", 150, day(change))), change + 1)
    assert [n for n, _ in found] == ([change] if reminded else [])


@pytest.mark.parametrize(
    ("snap", "what"),
    [
        pytest.param(warfarin(DoseEvent("azathioprine", 150, day(150))), f"azathioprine 150 mg/day from {day(150)}",
                     id="a dose change"),
        pytest.param(warfarin(DoseEvent("azathioprine", 0, day(150))), f"azathioprine stopped on {day(150)}",
                     id="a hold"),
        pytest.param(replace(warfarin(), phases=(PhaseEpisode(Phase.MAINTENANCE, START),
                                                 PhaseEpisode(Phase.OFF_TREATMENT, day(150)))),
                     f"azathioprine stopped with off_treatment from {day(150)}", id="off treatment"),
    ],
)
def test_the_inr_reminder_says_what_changed(snap: Snapshot, what: str) -> None:
    ((n, why),) = reminders(snap, 160)
    assert n == 150
    assert why == (f"{what} while on warfarin (since {day(100)}): check the INR (azathioprine may reduce the effect "
                   "of warfarin) and tell whoever manages the anticoagulation (CLINICAL.md §7 warfarin row [M])")


@pytest.mark.parametrize(
    ("today", "listed"),
    [pytest.param(240, True, id="90 days after the change (flag_lookback_days)"),
     pytest.param(241, False, id="91 days: out of the plan (the stored flag stays until acknowledged)")],
)
def test_an_inr_reminder_leaves_the_plan_after_the_flag_look_back(today: int, listed: bool) -> None:
    assert bool(reminders(warfarin(DoseEvent("azathioprine", 150, day(150)), stopped_on=None), today)) is listed


def test_a_planned_titration_step_on_warfarin_is_a_review_date_and_then_a_reminder() -> None:
    # FDA RA label (rheumatology): 1.5 mg/kg from week 7 (day 42), planned, not yet recorded
    snap = snapshot(phase=Phase.INDUCTION, weight_kg=70, medications=(Medication("warfarin", day(10)),))
    assert reminders(snap, 41, RHEUM) == []
    assert plan(RHEUM, snap, 41).next_review_on == day(42)
    assert [n for n, _ in reminders(snap, 42, RHEUM)] == [42]


# --- 13. sex-specific fallback ranges (CLINICAL.md §9.3 [M]) -----------------------------------------------------

#: (sex, analyte, value with no lab range, CTCAE v5 grade). Hb: grade 1 below the LLN (women 120, men 130, unknown
#: 120). Creatinine: grade 1 above the ULN, grade 2 above 1.5 × and grade 3 above 3 × ULN (women 97, men 115,
#: unknown 115).
SEXED = [
    pytest.param("F", "HGB", 119.9, 1, id="F Hb just below 120"),
    pytest.param("F", "HGB", 120, 0, id="F Hb at the LLN 120"),
    pytest.param("M", "HGB", 129.9, 1, id="M Hb just below 130"),
    pytest.param("M", "HGB", 130, 0, id="M Hb at the LLN 130"),
    pytest.param("M", "HGB", 118, 1, id="M Hb 118"),
    pytest.param("F", "HGB", 118, 1, id="F Hb 118: below 120 too"),
    pytest.param(None, "HGB", 125, 0, id="sex unknown: the wider range, LLN 120"),
    pytest.param("U", "HGB", 125, 0, id="sex U: the wider range"),
    pytest.param("F", "CREAT", 97, 0, id="F creatinine at the ULN 97"),
    pytest.param("F", "CREAT", 97.1, 1, id="F creatinine just above 97"),
    pytest.param("F", "CREAT", 291, 2, id="F creatinine at 3 × ULN (291)"),
    pytest.param("F", "CREAT", 291.1, 3, id="F creatinine just above 3 × ULN: critical"),
    pytest.param("M", "CREAT", 115, 0, id="M creatinine at the ULN 115"),
    pytest.param("M", "CREAT", 115.1, 1, id="M creatinine just above 115"),
    pytest.param("M", "CREAT", 345, 2, id="M creatinine at 3 × ULN (345)"),
    pytest.param("M", "CREAT", 345.1, 3, id="M creatinine just above 3 × ULN"),
    pytest.param(None, "CREAT", 300, 2, id="sex unknown: the wider range, ULN 115"),
]


@pytest.mark.parametrize(("sex", "analyte", "value", "grade"), SEXED)
def test_without_a_lab_range_the_fallback_of_the_patients_sex_grades(
        sex: str | None, analyte: str, value: float, grade: int) -> None:
    assert ctcae_grade(result(analyte, value), AIH.for_sex(sex)) == grade


def test_the_labs_own_range_wins_over_the_fallback_for_the_patients_sex() -> None:
    assert ctcae_grade(result("HGB", 125, ref_low=115, ref_high=165), AIH.for_sex("M")) == 0


def test_the_fallback_ranges_come_from_the_analyte_catalog() -> None:
    for analyte, by_sex in (("HGB", {"F": (120, 150), "M": (130, 170)}), ("CREAT", {"F": (44, 97), "M": (62, 115)})):
        a = CATALOG.analytes[analyte]
        assert {sex: (r.low, r.high) for sex, r in a.reference_by_sex.items()} == by_sex
        assert (a.reference.low, a.reference.high) == (min(r[0] for r in by_sex.values()),
                                                        max(r[1] for r in by_sex.values()))
    assert set(AIH.sex_reference_ranges) == {"F", "M"}


@pytest.mark.parametrize(("sex", "critical"), [("F", True), ("M", False), (None, False)])
def test_the_plan_grades_by_the_patients_sex(sex: str | None, critical: bool) -> None:
    snap = replace(on_azathioprine(results=(result("CREAT", 300, on=day(50)),)), sex=sex)
    found = [f.severity for f in plan(RHEUM, snap, 50).flags if f.kind == "creatinine_rise"]
    assert found == (["critical"] if critical else [])


def test_the_same_day_screen_at_ingestion_grades_against_every_fallback() -> None:
    # the ingestion screen does not look the patient's sex up (services.ingest _Store._screen): one grader per
    # grading and per fallback, so creatinine 300 is critical for someone (a woman) and her plan is evaluated at once
    graders = LIBRARY.graders
    assert any(ctcae_grade(result("CREAT", 300), g) == 3 for g in graders)
    assert len(graders) == 3  # the packaged protocols all grade by CTCAE v5: sex unknown, F, M


# --- 13. traceability ----------------------------------------------------------------------------------------

def test_loinc_56799_0_is_the_address_question_not_a_lab_result() -> None:
    assert CATALOG.ignored_reason("56799-0") == "Address"


# --- the plan holds still until its next review (ARCHITECTURE.md decision 3) ---------------------------------

SWEEPS = [
    pytest.param(IBD, snapshot(phase=Phase.INDUCTION, results=bloods(-40)), id="IBD new start, old bloods"),
    pytest.param(RHEUM, snapshot(phase=Phase.INDUCTION, weight_kg=70, results=bloods(5),
                                 medications=(Medication("warfarin", day(10)),)),
                 id="rheumatology titration on warfarin"),
    # (a restart known more than 120 days ahead shows its first creatinine draw on a day that is no review date:
    # schedule.LOOKAHEAD, found here, reported; a restart is recorded on its day)
    pytest.param(AIH, replace(stopped(restart=560), medications=(Medication("warfarin", day(450)),)),
                 id="AIH stop and restart on warfarin"),
    pytest.param(IBD, on_azathioprine(doses=(DoseEvent("azathioprine", 0, day(100)),),
                                      medications=(Medication("methotrexate", day(300)),)), id="IBD hold"),
    pytest.param(RHEUM, snapshot(phase=Phase.INDUCTION, genotypes=(Genotype("TPMT", "intermediate", day(-28)),)),
                 id="rheumatology, TPMT intermediate"),
]


def recorded_days(snap: Snapshot) -> set[date]:
    return ({r.observed_on for r in snap.results} | {d.on for d in snap.doses} | {e.started_on for e in snap.phases}
            | {m.started_on for m in snap.medications} | {m.stopped_on for m in snap.medications if m.stopped_on}
            | {g.on for g in snap.genotypes})


@pytest.mark.parametrize(("protocol", "snap"), SWEEPS)
def test_nothing_changes_before_next_review_without_new_input(protocol: MonitoringProtocol, snap: Snapshot) -> None:
    """As the daily cycle keeps it: evaluated again on its review day or when input arrives; every other
    day, the stored plan read for that day (`drawn`) is what a fresh evaluation would show."""
    def shown(p: Plan, on: date) -> object:
        return p.drawn.on(on), p.dose_steps, sorted(f.key for f in p.flags)

    reviewed = evaluate(snap, protocol, today=day(-45))
    for n in range(-44, 720):
        current = evaluate(snap, protocol, today=day(n))
        assert current.next_review_on > current.as_of
        if day(n) >= reviewed.next_review_on or day(n) in recorded_days(snap):
            reviewed = current
            continue
        assert shown(current, day(n)) == shown(reviewed, day(n)), (n, reviewed.as_of)


# --- the loader refuses broken entries (one line naming the file and the key) -----------------------------------

BROKEN = [
    pytest.param("protocols/ibd-azathioprine.toml", 'panels = ["CBC", "LFT", "RENAL"]\nbefore_days',
                 'panels = ["CBC", "LFTS", "RENAL"]\nbefore_days', "ibd-azathioprine.toml: baseline.panels: ",
                 "unknown panel 'LFTS'", id="a baseline draw of an unknown panel"),
    pytest.param("protocols/ibd-azathioprine.toml", "before_days = 28", "before_days = -1",
                 "ibd-azathioprine.toml: baseline.before_days: ", "greater than or equal to 0",
                 id="a baseline look-back below zero"),
    pytest.param("protocols/rheum-azathioprine.toml", 'source = "SPS"\n\n# Infection', 'source = "SPZ"\n\n# Infection',
                 "rheum-azathioprine.toml: baseline.source: ", "unknown source tag 'SPZ'",
                 id="a baseline draw citing an unknown source"),
    pytest.param("protocols/aih-azathioprine.toml", 'severity = "action"\naction = "record',
                 'severity = "urgent"\naction = "record', "aih-azathioprine.toml: infection_screen.severity: ",
                 "Input should be 'watch', 'action' or 'critical'", id="an infection screen of an unknown severity"),
    pytest.param("protocols/aih-azathioprine.toml", "tests = [\"HBV\"", "tested = true\ntests = [\"HBV\"",
                 "aih-azathioprine.toml: infection_screen.tested: ", "Extra inputs are not permitted",
                 id="a typo key in the infection screen"),
    pytest.param("protocols/aih-azathioprine.toml", 'vaccinate before starting"\nsource = "SPS"',
                 'vaccinate before starting"\nsource = "SPSS"', "aih-azathioprine.toml: infection_screen.source: ",
                 "unknown source tag 'SPSS'", id="an infection screen citing an unknown source"),
    pytest.param("protocols/aih-azathioprine.toml", "remind_on_dose_change = true", "remind_on_dose_changes = true",
                 "aih-azathioprine.toml: interactions[5].remind_on_dose_changes: ", "Extra inputs are not permitted",
                 id="a typo in the INR reminder key"),
    pytest.param("safety/conservative-union.toml", "at_days = [28, 84]", "every_days = 28",
                 "conservative-union.toml: after_stop: ", "the counts after a stop must end",
                 id="after-stop counts that never end"),
    pytest.param("safety/conservative-union.toml", 'source = "AFTER-STOP"', 'source = "AFTER"',
                 "conservative-union.toml: after_stop.source: ", "unknown source tag 'AFTER'",
                 id="after-stop counts citing an unknown source"),
    pytest.param("safety/bsg-sps.toml", 'panels = ["CBC"]\nsource = "AFTER-STOP"', 'panels = ["FBC"]\nsource = '
                 '"AFTER-STOP"', "bsg-sps.toml: after_stop.panels: ", "unknown panel 'FBC'",
                 id="after-stop counts of an unknown panel"),
    pytest.param("analytes.toml", "reference_by_sex = { F = { low = 120", "reference_by_sex = { W = { low = 120",
                 "analytes.toml: analytes.HGB.reference_by_sex.W", "Input should be 'F' or 'M'",
                 id="a fallback range for a sex that is not F or M"),
]


@pytest.mark.parametrize(("file", "old", "new", "start", "reason"), BROKEN)
def test_the_loader_refuses_a_broken_schedule_entry(tmp_path: Path, file: str, old: str, new: str, start: str,
                                                    reason: str) -> None:
    config = copy_config(tmp_path)
    edit(config, old, new, file)
    message = rejection(config)
    assert message.startswith(start) and reason in message, message
