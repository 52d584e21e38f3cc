"""Due draws: the drug-safety clock (CLINICAL.md §3.2, config/safety/conservative-union.toml), the disease
clock per phase (§1, §2.4, §2.6) and their union, merged within windows (§1)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from monitor.domain.clocks import Run, Slot, describe, run_slots
from monitor.domain.items import DueDraw, OverduePanel
from monitor.domain.phases import effective_phases
from monitor.domain.plan import Plan
from monitor.domain.protocol import Phase, Stage
from monitor.domain.schedule import disease_runs, dose_changes, dose_timeline, merged, safety_runs
from monitor.domain.snapshot import DoseEvent, Genotype, Medication, PhaseEpisode, Result, Snapshot
from tests.unit.builders import PROTOCOL, START, day, on_azathioprine, plan, result, snapshot

ALL = ("CBC", "LFT", "RENAL")
SAFETY = "aih-azathioprine/safety/conservative-union/"
DISEASE = "aih-azathioprine/disease/"


def safety_days(snap: Snapshot, until_day: int = 500, *, anchor: date = START) -> list[tuple[int, str]]:
    """(day after `anchor`, stage id) of every drug-safety draw up to `until_day`, over all runs."""
    timeline = dose_timeline(snap, PROTOCOL, "azathioprine")
    changes = dose_changes(timeline)
    horizon = day(until_day, anchor)
    found = []
    for run in safety_runs(snap, PROTOCOL, timeline):
        slots, _ = run_slots(PROTOCOL.safety.stages, run, changes=changes, horizon=horizon, cite=PROTOCOL.cite)
        found += [((s.due_on - anchor).days, s.rule_id.removeprefix(SAFETY)) for s in slots if s.due_on <= horizon]
    return found


def draws(snap: Snapshot, today: date, *, anchor: date = START) -> set[tuple[str, int, str]]:
    """(panel, day after the anchor, status) of every open draw."""
    return {(d.panel, (d.due_on - anchor).days, d.status) for d in plan(snap, today).draws}


def due_on(snap: Snapshot, today: date) -> list[DueDraw]:
    return [d for d in plan(snap, today).draws if d.due_on == today]


def panel_days(snap: Snapshot, today: date, panel: str) -> list[tuple[int, str]]:
    return [((d.due_on - START).days, d.rule_id) for d in plan(snap, today).draws if d.panel == panel]


# --- the drug-safety clock (§3.2: weekly to day 28, 2-weekly to day 84 and until stable 6 weeks, monthly x3,
# then monthly: FDA label and the source article; changed from 12-weekly, schedules item 11) --------------------

#: (day after the first azathioprine dose, panels, stage) for a patient whose dose never changes.
STEADY = [
    pytest.param(7, ("CBC", "LFT"), "titration-weekly", id="FDA weekly month 1 [V]: day 7"),
    pytest.param(14, ("CBC", "LFT"), "titration-weekly", id="FDA weekly month 1 [V]: day 14"),
    pytest.param(21, ("CBC", "LFT"), "titration-weekly", id="FDA weekly month 1 [V]: day 21"),
    pytest.param(28, ("CBC", "LFT"), "titration-weekly", id="FDA weekly month 1 [V]: day 28"),
    pytest.param(42, ALL, "titration-2-weekly", id="FDA/BSR17 2-weekly [V]: day 42"),
    pytest.param(56, ALL, "titration-2-weekly", id="FDA/BSR17 2-weekly [V]: day 56"),
    pytest.param(70, ALL, "titration-2-weekly", id="FDA/BSR17 2-weekly [V]: day 70"),
    pytest.param(84, ALL, "titration-2-weekly", id="FDA/BSR17 2-weekly [V]: day 84"),
    pytest.param(112, ALL, "stable-monthly", id="BSR17 monthly x3 [V]: day 112"),
    pytest.param(140, ALL, "stable-monthly", id="BSR17 monthly x3 [V]: day 140"),
    pytest.param(168, ALL, "stable-monthly", id="BSR17 monthly x3 [V]: day 168"),
    # Changed (schedules item 11): long term, monthly (FDA label [V]; source article "CBC monthly"), was BSR 2017's
    # 12-weekly (days 252, 336, 420), which is not the conservative union of the two. Days 280 and 364 meet the
    # 3-monthly LFT + IgG of the disease clock (days 273 ±14 and 364): one LFT draw each (CLINICAL.md §1 merging).
    pytest.param(196, ALL, "long-term-monthly", id="FDA monthly [V]: day 196"),
    pytest.param(224, ALL, "long-term-monthly", id="FDA monthly [V]: day 224"),
    pytest.param(252, ALL, "long-term-monthly", id="FDA monthly [V]: day 252"),
    pytest.param(280, ("CBC", "RENAL"), "long-term-monthly", id="FDA monthly [V]: day 280, LFT with day 273's"),
    pytest.param(308, ALL, "long-term-monthly", id="FDA monthly [V]: day 308"),
    pytest.param(336, ALL, "long-term-monthly", id="FDA monthly [V]: day 336"),
    pytest.param(364, (*ALL, "IGG"), "long-term-monthly", id="FDA monthly [V]: day 364, with the disease IgG"),
    pytest.param(392, ALL, "long-term-monthly", id="FDA monthly [V]: day 392"),
    pytest.param(420, ALL, "long-term-monthly", id="FDA monthly [V]: day 420"),
]


def test_the_protocol_uses_the_conservative_union_safety_profile() -> None:
    assert PROTOCOL.safety.id == "conservative-union"
    assert [s.id for s in PROTOCOL.safety.stages] == [
        "titration-weekly", "titration-2-weekly", "stable-monthly", "long-term-monthly"]  # was long-term-12-weekly


def test_the_steady_dose_schedule_is_exactly_these_days() -> None:
    assert safety_days(on_azathioprine(), until_day=420) == [(p.values[0], p.values[2]) for p in STEADY]


@pytest.mark.parametrize(("n", "panels", "stage"), STEADY)
def test_on_each_safety_draw_day_its_panels_are_due(n: int, panels: tuple[str, ...], stage: str) -> None:
    found = due_on(on_azathioprine(), day(n))
    assert sorted(d.panel for d in found) == sorted(panels)
    assert {d.status for d in found} == {"due"}
    # changed (schedules item 11): on day 364 the disease clock's IgG is due too, so only the safety draws are looked at
    assert {d.rule_id for d in found if d.panel != "IGG"} == {SAFETY + stage}


@pytest.mark.parametrize("n", [0, 35, 49, 98, 126, 210, 238, 294])  # 196 and 224 are monthly draw days now
def test_nothing_is_scheduled_between_draw_days(n: int) -> None:
    assert due_on(on_azathioprine(), day(n)) == []


#: A normal bilirubin before treatment. Added on purpose (clinical-safety issue, item 6): without a bilirubin
#: result the azathioprine start is held ("bilirubin needed", EASL15 [S], CLINICAL.md §2.2), and a held planned
#: step does not start the safety clock.
BILIRUBIN = (result("BILI", 10, on=day(-1), id=99),)


def test_the_clock_starts_at_the_planned_week_3_azathioprine_step_in_induction() -> None:
    anchor = day(14)  # EASL15 [S]: AZA 50 mg from week 3
    snap = snapshot(phase=Phase.INDUCTION, results=BILIRUBIN)
    assert safety_days(snap, until_day=100, anchor=anchor)[:5] == [
        (7, "titration-weekly"), (14, "titration-weekly"), (21, "titration-weekly"),
        (28, "titration-weekly"), (42, "titration-2-weekly")]
    (first,) = [d for d in plan(snap, day(30)).draws if d.panel == "CBC" and d.rule_id.startswith(SAFETY)]
    assert first.due_on == anchor + timedelta(days=21)
    assert f"after azathioprine start on {anchor.isoformat()}: day 21 " in first.why


def test_a_recorded_first_dose_before_the_planned_step_moves_the_clock() -> None:
    snap = snapshot(phase=Phase.INDUCTION, doses=(DoseEvent("azathioprine", 50, day(10)),))
    assert safety_days(snap, until_day=30) == [(17, "titration-weekly"), (24, "titration-weekly")]


def test_a_patient_already_on_azathioprine_without_a_recorded_dose_is_counted_from_enrollment() -> None:
    snap = snapshot(phase=Phase.MAINTENANCE)
    assert safety_days(snap, until_day=14) == [(7, "titration-weekly"), (14, "titration-weekly")]
    (cbc,) = [d for d in plan(snap, START).draws if d.panel == "CBC"]
    assert f"after azathioprine treatment (on it at enrollment, {START}): day 7 " in cbc.why


def test_a_cohort_enrolled_on_azathioprine_counts_from_enrollment_not_from_a_later_first_record() -> None:
    # Changed on purpose (issue 3): enrolled in maintenance means already on the drug, dose unknown; the first
    # version counted from the first recorded dose (day 27 here).
    snap = snapshot(phase=Phase.MAINTENANCE, doses=(DoseEvent("azathioprine", 100, day(20)),))
    assert safety_days(snap, until_day=14) == [(7, "titration-weekly"), (14, "titration-weekly")]


def test_a_recorded_zero_dose_stops_the_clock_and_the_next_dose_restarts_it() -> None:
    snap = snapshot(phase=Phase.MAINTENANCE, doses=(DoseEvent("azathioprine", 0, day(0)),
                                                    DoseEvent("azathioprine", 50, day(30))))
    assert safety_days(snap, until_day=44) == [(37, "titration-weekly"), (44, "titration-weekly")]


def test_prednisolone_doses_do_not_start_the_safety_clock() -> None:
    # baseline -> induction on the first prednisolone dose (day 3); the safety clock waits for azathioprine,
    # planned for week 3 of induction (day 17)
    snap = snapshot(phase=Phase.BASELINE, doses=(DoseEvent("prednisolone", 60, day(3)),))
    effective, _ = effective_phases(snap, PROTOCOL, today=day(3))
    assert safety_days(effective, until_day=30) == [(24, "titration-weekly")]
    assert safety_days(snap, until_day=30) == []  # without the move to induction, nothing plans azathioprine


@pytest.mark.parametrize(
    "genotypes",
    [pytest.param((), id="TPMT unknown: azathioprine held"),
     pytest.param((Genotype("TPMT", "poor", day(-28)),), id="TPMT poor: no azathioprine")],
)
def test_a_held_azathioprine_start_does_not_start_the_safety_clock(genotypes: tuple[Genotype, ...]) -> None:
    # the plan's week-3 step anchors the clock only when azathioprine may be given (CPIC18 [V])
    snap = snapshot(phase=Phase.INDUCTION, genotypes=genotypes)
    assert not [d for d in plan(snap, day(20)).draws if d.rule_id.startswith(SAFETY)]


# --- dose changes keep the 2-weekly stage going (§3.2 "until the dose has been unchanged >= 6 weeks") -----


def test_a_dose_change_at_day_70_keeps_2_weekly_draws_until_the_dose_is_stable_for_42_days() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(70)),))
    assert safety_days(snap, until_day=450) == [
        (7, "titration-weekly"), (14, "titration-weekly"), (21, "titration-weekly"), (28, "titration-weekly"),
        (42, "titration-2-weekly"), (56, "titration-2-weekly"), (70, "titration-2-weekly"),
        (84, "titration-2-weekly"), (98, "titration-2-weekly"), (112, "titration-2-weekly"),
        (140, "stable-monthly"), (168, "stable-monthly"), (196, "stable-monthly"),
        # changed (schedules item 11): monthly long term (FDA label [V]), was 280, 364, 448 12-weekly
        *((n, "long-term-monthly") for n in range(224, 449, 28)),
    ]
    assert sorted(d.panel for d in due_on(snap, day(98))) == list(ALL)
    assert {d.rule_id for d in due_on(snap, day(112))} == {SAFETY + "titration-2-weekly"}


@pytest.mark.parametrize(
    ("change_day", "extra"),
    [
        pytest.param(42, [], id="BSR17: change at day 42, stable 42 days at day 84, no extension"),
        pytest.param(43, [98], id="BSR17: change at day 43, stable 41 days at day 84, one more 2-weekly draw"),
        pytest.param(57, [98, 112], id="BSR17: change at day 57, two more"),
        pytest.param(84, [98, 112, 126], id="BSR17: change on day 84 itself, three more"),
    ],
)
def test_the_2_weekly_stage_ends_once_the_dose_has_been_stable_42_days(change_day: int, extra: list[int]) -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 125, day(change_day)),))
    two_weekly = [n for n, stage in safety_days(snap) if stage == "titration-2-weekly"]
    assert two_weekly == [42, 56, 70, 84, *extra]


def test_recording_the_same_dose_again_is_not_a_change() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 100, day(70)),))
    assert safety_days(snap) == safety_days(on_azathioprine())


def test_the_planned_week_5_rise_to_100_mg_during_the_weekly_stage_restarts_nothing() -> None:
    # anchor day 14 (50 mg), 100 mg from day 28 = anchor day 14: weekly already, and stable long before day 84
    snap = snapshot(phase=Phase.INDUCTION)
    assert [n for n, stage in safety_days(snap, anchor=day(14)) if stage == "titration-2-weekly"] == [42, 56, 70, 84]
    assert len(safety_runs(snap, PROTOCOL, dose_timeline(snap, PROTOCOL, "azathioprine"))) == 1


# --- restarts (§3.2: dose increase -> 2-weekly until stable 6 weeks; restart after a hold, a new interacting
# drug or an intermediate TPMT/NUDT15 result -> from day 0) --------------------------------------------------


#: (event, the safety days from day 180 to day 420) for a patient on 100 mg since START. Changed (schedules item 11):
#: the long-term draws are monthly (FDA label [V]), were 12-weekly.
RESTARTS = [
    pytest.param(
        (DoseEvent("azathioprine", 150, day(200)),), (), (),
        [(196, "long-term-monthly"), (214, "titration-2-weekly"), (228, "titration-2-weekly"),
         (242, "titration-2-weekly"),
         (270, "stable-monthly"), (298, "stable-monthly"), (326, "stable-monthly"), (354, "long-term-monthly"),
         (382, "long-term-monthly"), (410, "long-term-monthly")],
        id="BSR17 [V]: dose increase on day 200 -> 2-weekly until stable 6 weeks, then monthly x3, monthly (FDA)"),
    pytest.param(
        (DoseEvent("azathioprine", 0, day(190)), DoseEvent("azathioprine", 100, day(200))), (), (),
        [(207, "titration-weekly"), (214, "titration-weekly"), (221, "titration-weekly"), (228, "titration-weekly"),
         (242, "titration-2-weekly"), (256, "titration-2-weekly"), (270, "titration-2-weekly"),
         (284, "titration-2-weekly"), (312, "stable-monthly"), (340, "stable-monthly"), (368, "stable-monthly"),
         (396, "long-term-monthly")],
        id="FDA/SmPC: restart after a hold (0 mg day 190, 100 mg day 200) -> weekly from day 0"),
    pytest.param(
        (), (Medication("allopurinol", day(200)),), (),
        [(196, "long-term-monthly"), (207, "titration-weekly"), (214, "titration-weekly"), (221, "titration-weekly"),
         (228, "titration-weekly"),
         (242, "titration-2-weekly"), (256, "titration-2-weekly"), (270, "titration-2-weekly"),
         (284, "titration-2-weekly"), (312, "stable-monthly"), (340, "stable-monthly"), (368, "stable-monthly"),
         (396, "long-term-monthly")],
        id="MEDSAFE98: new interacting drug (allopurinol day 200) -> from day 0"),
    pytest.param(
        (), (), (Genotype("TPMT", "intermediate", day(200)),),
        [(196, "long-term-monthly"), (207, "titration-weekly"), (214, "titration-weekly"), (221, "titration-weekly"),
         (228, "titration-weekly"),
         (242, "titration-2-weekly"), (256, "titration-2-weekly"), (270, "titration-2-weekly"),
         (284, "titration-2-weekly"), (312, "stable-monthly"), (340, "stable-monthly"), (368, "stable-monthly"),
         (396, "long-term-monthly")],
        id="CLINICAL 3.2: intermediate TPMT result on day 200 -> from day 0"),
    pytest.param(
        (), (Medication("ramipril", day(200)),), (),
        [(n, "long-term-monthly") for n in range(196, 421, 28)],
        id="SmPC: an ACE inhibitor asks for one extra count, it does not restart the clock"),
    pytest.param(
        (DoseEvent("azathioprine", 75, day(200)),), (), (),
        [(n, "long-term-monthly") for n in range(196, 421, 28)],
        id="a dose decrease restarts nothing"),
]


@pytest.mark.parametrize(("doses", "medications", "genotypes", "expected"), RESTARTS)
def test_events_restart_the_safety_clock(
    doses: tuple[DoseEvent, ...], medications: tuple[Medication, ...], genotypes: tuple[Genotype, ...],
    expected: list[tuple[int, str]]
) -> None:
    tested = (Genotype("TPMT", "normal", day(-28)), Genotype("NUDT15", "normal", day(-28)))
    snap = on_azathioprine(doses=doses, medications=medications, genotypes=(*tested, *genotypes))
    assert [(n, stage) for n, stage in safety_days(snap, until_day=420) if n >= 180] == expected


def test_the_first_run_stops_where_the_restart_begins() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(200)),))
    first, restart = safety_runs(snap, PROTOCOL, dose_timeline(snap, PROTOCOL, "azathioprine"))
    assert (first.anchor, first.stop, restart.anchor, restart.first, restart.stop) == (START, day(200), day(200), 1,
                                                                                       None)
    (cbc,) = [d for d in plan(snap, day(210)).draws if d.panel == "CBC" and d.due_on == day(214)]
    assert cbc.why.startswith("CBC every 14 days to day 84 and until the dose has been stable 42 days after "
                              f"azathioprine dose increase on {day(200)}: day 14 ")


@pytest.mark.parametrize(
    ("increase_day", "two_weekly"),
    [
        pytest.param(200, [214, 228, 242], id="BSR17: increase in the monthly stage"),
        pytest.param(400, [414, 428, 442], id="BSR17: increase in the long-term (monthly) stage"),
    ],
)
def test_a_dose_increase_after_titration_goes_back_to_2_weekly_until_stable_6_weeks(
    increase_day: int, two_weekly: list[int]
) -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(increase_day)),))
    days = [(n, stage) for n, stage in safety_days(snap, until_day=600) if n > increase_day]
    assert [n for n, stage in days if stage == "titration-2-weekly"] == two_weekly
    assert [stage for _, stage in days][:4] == ["titration-2-weekly"] * 3 + ["stable-monthly"]


def test_a_second_increase_keeps_the_2_weekly_stage_until_stable_6_weeks_after_it() -> None:
    # 2-weekly while, at the previous draw, the dose had been unchanged < 42 days: 270 (26 days), 284 (40 days)
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 125, day(200)), DoseEvent("azathioprine", 150, day(230))))
    days = [(n, stage) for n, stage in safety_days(snap, until_day=600) if n > 200]
    assert [n for n, stage in days if stage == "titration-2-weekly"] == [214, 228, 242, 256, 270, 284]


def test_no_safety_draw_is_due_while_azathioprine_is_held() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 0, day(100)), DoseEvent("azathioprine", 100, day(160))))
    assert not [n for n, _ in safety_days(snap) if 100 <= n < 160]
    assert (167, "titration-weekly") in safety_days(snap)


def test_allopurinol_adds_weekly_counts_for_12_weeks() -> None:
    # MEDSAFE98 [V]: check blood counts weekly for 3 months after cutting azathioprine to 25 %
    snap = on_azathioprine(medications=(Medication("allopurinol", day(200)),))
    weekly = sorted((n, rule) for n in range(200, 300) for d in due_on(snap, day(n)) if d.panel == "CBC"
                    for rule in [d.rule_id] if rule.endswith("/interactions/allopurinol/weekly"))
    assert [n for n, _ in weekly] == [200 + 7 * w for w in range(1, 13)]
    (draw,) = [d for d in plan(snap, day(284)).draws if d.rule_id.endswith("/allopurinol/weekly")
               and d.due_on == day(284)]
    # week 12 falls on the restarted safety clock's day 84: draws of one panel due the same day are always one draw
    # (schedule.merged; due_draw is unique per panel and day), even a drug's own draw, which then says "also:"
    assert draw.why == (f"CBC weekly for 12 weeks after allopurinol start on {day(200)}: week 12 (Medsafe 1998); "
                        "also: every 14 days to day 84 and until the dose has been stable 42 days after allopurinol "
                        f"start on {day(200)}: day 84 (±5 days; FDA label + BSR 2017)")


def test_allopurinol_asks_for_one_count_a_week_not_two() -> None:
    # Found by this tier: the interaction's weekly CBC slots are not mergeable and allopurinol also restarts the
    # safety clock weekly, so weeks 1-4 listed two CBC draws due on the same day; same-day draws now always merge.
    snap = on_azathioprine(medications=(Medication("allopurinol", day(200)),))
    for n in (207, 214, 221, 228):
        assert len([d for d in due_on(snap, day(n)) if d.panel == "CBC"]) == 1, n


# --- the clock stops off treatment -----------------------------------------------------------------------


def stopping() -> Snapshot:
    """On azathioprine from START, withdrawal (still on it) from day 400, off treatment from day 500."""
    return snapshot(phases=(PhaseEpisode(Phase.MAINTENANCE, START), PhaseEpisode(Phase.WITHDRAWAL, day(400)),
                            PhaseEpisode(Phase.OFF_TREATMENT, day(500))),
                    doses=(DoseEvent("azathioprine", 100, START),))


def test_the_safety_clock_runs_through_withdrawal_and_stops_off_treatment() -> None:
    assert PROTOCOL.safety_phases == (Phase.INDUCTION, Phase.MAINTENANCE, Phase.WITHDRAWAL, Phase.REINDUCTION,
                                      Phase.LIFELONG_MAINTENANCE)
    days = safety_days(stopping(), until_day=900)
    # changed (schedules item 11): monthly long term, was (420, "long-term-12-weekly")
    assert days[-1] == (476, "long-term-monthly")  # the last draw before day 500; 504 would be after the stop
    (run,) = safety_runs(stopping(), PROTOCOL, dose_timeline(stopping(), PROTOCOL, "azathioprine"))
    assert run.stop == day(500)


def test_off_treatment_only_the_disease_clock_asks_for_blood() -> None:
    p = plan(stopping(), day(700))
    assert not [d for d in p.draws if d.rule_id.startswith(SAFETY) and d.due_on >= day(500)]
    assert {d.rule_id for d in p.draws if d.due_on >= day(500)} <= {
        DISEASE + "off_treatment/off-3-monthly", DISEASE + "off_treatment/off-3-weekly"}


@pytest.mark.parametrize(
    ("today", "status"),
    [
        # changed (schedules item 11): the last draw before the stop is day 476 ±7 (monthly), was day 420 ±14
        pytest.param(483, "due", id="day 476 ±7 closes on day 483"),
        pytest.param(499, "overdue", id="overdue while the clock still runs"),
        pytest.param(500, "missed", id="the clock stopped off treatment on day 500: missed from then"),
        pytest.param(566, "missed", id="still listed 90 days after it was due"),
        pytest.param(567, None, id="then it drops off like any missed draw"),
    ],
)
def test_an_unmet_draw_of_a_stopped_clock_counts_as_missed_from_the_stop(today: int, status: str | None) -> None:
    # CBC and creatinine are asked for by the safety clock only; it stops off treatment (day 500) and no later
    # safety draw follows, so the last unmet one would otherwise stay overdue forever (clocks.Slot.until).
    # Changed (schedules item 11): the after-stop counts (CBC on days 528 and 584) are CBC draws too, so only the
    # last draw before the stop is looked at (earlier monthly draws are missed too and listed for 90 days).
    found = [d.status for d in plan(stopping(), day(today)).draws
             if d.panel in ("CBC", "RENAL") and d.due_on == day(476)]
    assert found == ([] if status is None else [status, status])


def test_the_stop_of_a_clock_is_a_review_date() -> None:
    assert plan(stopping(), day(499)).next_review_on == day(500)


def test_baseline_has_no_safety_clock() -> None:
    assert safety_days(snapshot(phase=Phase.BASELINE)) == []


def test_reinduction_after_off_treatment_restarts_the_safety_clock_at_the_planned_azathioprine_step() -> None:
    # Found by this tier: schedule.safety_runs never started a run when a safety phase was re-entered after
    # off_treatment (the timeline still held 100 mg from the first course, so the planned reinduction 50 mg was a
    # "decrease"); a stop with the phase now makes the next dose a restart (the first induction anchors at week 3).
    snap = snapshot(phases=(PhaseEpisode(Phase.INDUCTION, START), PhaseEpisode(Phase.OFF_TREATMENT, day(400)),
                            PhaseEpisode(Phase.REINDUCTION, day(600))))
    restarted = [(n, stage) for n, stage in safety_days(snap, until_day=700) if n >= 600]
    assert restarted[:5] == [(621, "titration-weekly"), (628, "titration-weekly"), (635, "titration-weekly"),
                             (642, "titration-weekly"), (656, "titration-2-weekly")]


# --- stage shapes (monitor/domain/clocks.py): at_days, count, until_day, open-ended ------------------------------


def stage_days(*stages: Stage, until: int = 400) -> list[tuple[int, str]]:
    run = Run(START, 0, None, "a start on 2026-01-05", "p")
    slots, _ = run_slots(stages, run, changes=[], horizon=day(until), cite=str)
    return [((s.due_on - START).days, s.rule_id.removeprefix("p/")) for s in slots if s.due_on <= day(until)]


def test_a_stage_with_at_days_draws_on_exactly_those_days_then_the_next_stage_counts_on() -> None:
    # the bsg-sps profile shape (SPS [V]): day 14, weeks 4, 8, 12, then every 3 months
    initial = Stage("initial", 0, ("CBC",), 5, at_days=(14, 28, 56, 84), source="SPS")
    later = Stage("3-monthly", 91, ("CBC",), 14, source="SPS")
    assert stage_days(initial, later, until=400) == [
        (14, "initial"), (28, "initial"), (56, "initial"), (84, "initial"),
        (175, "3-monthly"), (266, "3-monthly"), (357, "3-monthly")]


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        pytest.param(Stage("s", 7, ("CBC",), 3, until_day=28), "every 7 days to day 28", id="until_day"),
        pytest.param(Stage("s", 28, ("CBC",), 7, count=3), "every 28 days, 3 times", id="count"),
        pytest.param(Stage("s", 84, ("CBC",), 14), "every 84 days thereafter", id="open-ended"),
        pytest.param(Stage("s", 0, ("CBC",), 5, at_days=(14, 28)), "on day 14, 28", id="at_days"),
        pytest.param(Stage("s", 14, ("CBC",), 5, until_day=84, until_dose_stable_days=42),
                     "every 14 days to day 84 and until the dose has been stable 42 days", id="until stable"),
    ],
)
def test_every_stage_shape_is_described_in_words(stage: Stage, expected: str) -> None:
    assert describe(stage) == expected


def test_count_and_until_day_bound_a_stage() -> None:
    weekly = Stage("weekly", 7, ("CBC",), 3, until_day=28)
    monthly = Stage("monthly", 28, ("CBC",), 7, count=2)
    last = Stage("last", 84, ("CBC",), 14)
    assert stage_days(weekly, monthly, last, until=300) == [
        (7, "weekly"), (14, "weekly"), (21, "weekly"), (28, "weekly"), (56, "monthly"), (84, "monthly"),
        (168, "last"), (252, "last")]


# --- the disease clock per phase (counted from the phase's start) ------------------------------------------

#: (phase, the disease draws in the first 400 days: (day, panels, stage)).
DISEASE_CLOCKS = [
    pytest.param(Phase.BASELINE, [(0, ("CBC", "LFT", "IGG", "RENAL"), "baseline")],
                 id="SPS [V] baseline bloods: FBC, LFT, IgG, creatinine on day 0"),
    pytest.param(Phase.INDUCTION,
                 [(7, ("LFT", "CBC"), "induction-weekly"), (14, ("LFT", "CBC"), "induction-weekly"),
                  (21, ("LFT", "CBC"), "induction-weekly"), (28, ("LFT", "CBC"), "induction-weekly"),
                  *((n, ("LFT", "IGG"), "induction-monthly") for n in range(56, 401, 28))],
                 id="BMJBP [V]: weekly LFT+FBC for 4 weeks, then 28-day LFT+IgG"),
    pytest.param(Phase.REINDUCTION,
                 [(7, ("LFT", "CBC"), "reinduction-weekly"), (14, ("LFT", "CBC"), "reinduction-weekly"),
                  (21, ("LFT", "CBC"), "reinduction-weekly"), (28, ("LFT", "CBC"), "reinduction-weekly"),
                  *((n, ("LFT", "IGG"), "reinduction-monthly") for n in range(56, 401, 28))],
                 id="AASLD10 rec 31 [V]: as the first induction"),
    pytest.param(Phase.MAINTENANCE, [(n, ("LFT", "IGG"), "maintenance-3-monthly") for n in (91, 182, 273, 364)],
                 id="AASLD10 rec 25 [V]: 91-day LFT+IgG"),
    pytest.param(Phase.LIFELONG_MAINTENANCE, [(n, ("LFT", "IGG"), "lifelong-3-monthly") for n in (91, 182, 273, 364)],
                 id="AASLD10 rec 31 [V]: lifelong as maintenance"),
    pytest.param(Phase.WITHDRAWAL, [(n, ("LFT", "IGG"), "withdrawal-3-weekly") for n in range(21, 401, 21)],
                 id="AASLD10 [M]: 21-day LFT+IgG during the taper"),
    pytest.param(Phase.OFF_TREATMENT,
                 [*((n, ("LFT", "IGG"), "off-3-weekly") for n in (21, 42, 63, 84)),
                  *((n, ("LFT", "IGG"), "off-3-monthly") for n in (175, 266, 357))],
                 id="AASLD10 [M]: 21-day to day 91, then 91-day to day 365"),
]


def disease_days(snap: Snapshot, today: date, until_day: int) -> list[tuple[int, tuple[str, ...], str]]:
    """(day after START, panels, phase/stage) of every disease draw up to `until_day`."""
    found = []
    for run, i in disease_runs(snap, PROTOCOL):
        stages = PROTOCOL.disease[snap.phases[i].phase].stages
        slots, _ = run_slots(stages, run, changes=[], horizon=today, cite=PROTOCOL.cite)
        found += [((s.due_on - START).days, s.panels, s.rule_id.removeprefix(DISEASE)) for s in slots
                  if s.due_on <= day(until_day)]
    return found


@pytest.mark.parametrize(("phase", "expected"), DISEASE_CLOCKS)
def test_each_phase_has_its_own_disease_clock(phase: Phase, expected: list[tuple[int, tuple[str, ...], str]]) -> None:
    found = disease_days(snapshot(phase=phase), day(400), 400)
    assert found == [(n, panels, f"{phase.value}/{stage}") for n, panels, stage in expected]


def test_off_treatment_surveillance_is_182_days_after_the_first_year_for_life() -> None:
    # BMJBP [V]: after month 12, every 6-12 months, lifelong (relapses up to 22 years later, Czaja 2010)
    found = disease_days(snapshot(phase=Phase.OFF_TREATMENT), day(3000), 3000)
    later = [(n, stage) for n, _, stage in found if n > 365]
    assert later == [(357 + 182 * k, "off_treatment/off-6-monthly") for k in range(1, 15)]


def test_a_phase_clock_ends_when_the_next_phase_starts_and_the_next_counts_from_its_own_start() -> None:
    snap = snapshot(phases=(PhaseEpisode(Phase.INDUCTION, START), PhaseEpisode(Phase.MAINTENANCE, day(100))))
    found = [(n, stage) for n, _, stage in disease_days(snap, day(400), 400)]
    assert [n for n, stage in found if stage.startswith("induction/")] == [7, 14, 21, 28, 56, 84]
    assert [n for n, stage in found if stage.startswith("maintenance/")] == [191, 282, 373]


def test_a_disease_draw_names_its_phase_start_and_source() -> None:
    (igg,) = [d for d in plan(snapshot(phase=Phase.WITHDRAWAL), day(18)).draws
              if d.panel == "IGG" and d.due_on == day(21)]
    assert igg.rule_id == DISEASE + "withdrawal/withdrawal-3-weekly"
    assert igg.why == f"IGG every 21 days thereafter after withdrawal start on {START}: day 21 (±5 days; AASLD 2010)"


# --- the union, merged within windows (§1: de-duplicate draws that fall within a tolerance window) ----------


def test_safety_and_disease_draws_whose_windows_only_overlap_stay_two_draws() -> None:
    # maintenance: safety LFT day 84 (±5: 79-89) and disease LFT day 91 (±14: 77-105) overlap, but day 91 is 7 days
    # from day 84, more than the smaller window (5): not within one tolerance window (§1), so two draws
    p = plan(on_azathioprine(), day(80))
    lft = [(d.due_on, d.rule_id, "also:" in d.why) for d in p.draws if d.panel == "LFT" and d.status == "due"]
    assert lft == [(day(84), SAFETY + "titration-2-weekly", False),
                   (day(91), DISEASE + "maintenance/maintenance-3-monthly", False)]
    # IgG is asked for by the disease clock only, on its own day
    (igg,) = [d for d in p.draws if d.panel == "IGG" and d.status == "due"]
    assert (igg.due_on, igg.rule_id) == (day(91), DISEASE + "maintenance/maintenance-3-monthly")
    assert "also:" not in igg.why


def slot(due: int, window: int, rule: str, *, mergeable: bool = True) -> Slot:
    return Slot(day(due), day(due - window), day(due + window), ("CBC",), rule, f"{rule} day {due}",
                mergeable=mergeable)


@pytest.mark.parametrize(
    ("second_day", "second_window", "one_draw"),
    [
        pytest.param(105, 14, True, id="5 days apart, smaller window 5: within tolerance"),
        pytest.param(106, 14, False, id="6 days apart, smaller window 5: windows overlap, still two draws"),
        pytest.param(95, 5, True, id="5 days before, equal windows"),
        pytest.param(103, 2, False, id="3 days apart, smaller window 2"),
        pytest.param(100, 0, True, id="same day, whatever the windows"),
    ],
)
def test_draws_of_one_panel_merge_only_within_the_smaller_of_their_windows(
    second_day: int, second_window: int, one_draw: bool
) -> None:
    first, second = slot(100, 5, "a"), slot(second_day, second_window, "b")
    kept = merged([first, second], "CBC")
    if one_draw:
        (draw,) = kept
        earlier = min(first, second, key=lambda x: (x.due_on, x.closes))
        later = second if earlier is first else first
        assert (draw.due_on, draw.opens, draw.closes) == (earlier.due_on, earlier.opens, min(first.closes,
                                                                                              second.closes))
        assert draw.why == f"{earlier.why}; also: {later.why}"
    else:
        assert [x.due_on for x in kept] == sorted([first.due_on, second.due_on])


@pytest.mark.parametrize(
    ("second_day", "one_draw"),
    [pytest.param(100, True, id="same day: one draw, even from a flag or a drug"),
     pytest.param(101, False, id="a day apart: a flag's or a drug's draw is never absorbed")],
)
def test_a_draw_asked_for_by_a_flag_or_drug_merges_only_on_the_same_day(second_day: int, one_draw: bool) -> None:
    kept = merged([slot(100, 7, "routine"), slot(second_day, 3, "repeat", mergeable=False)], "CBC")
    assert len(kept) == (1 if one_draw else 2)


@pytest.mark.parametrize(
    ("taken_day", "satisfied"),
    [
        pytest.param(79, True, id="LFT day 84 ±5 opens on day 79"),
        pytest.param(89, True, id="and closes on day 89"),
        pytest.param(90, False, id="day 90 is past its window"),
    ],
)
def test_the_safety_lft_on_day_84_is_met_only_inside_its_own_window(taken_day: int, satisfied: bool) -> None:
    # the disease LFT of day 91 (±14) no longer widens it: the two are separate draws (see above)
    snap = on_azathioprine(results=(result("ALT", 20, on=day(taken_day)),))
    assert ((("LFT", 84) in {(d.panel, (d.due_on - START).days) for d in plan(snap, day(90)).draws})
            is not satisfied)


def test_a_pre_treatment_baseline_draw_does_not_absorb_the_first_on_treatment_week() -> None:
    # Found by this tier: schedule.merged merged any two draws whose windows touch. Baseline bloods (day 0 ±7)
    # and the first weekly induction draw 7 days after the first prednisolone dose on day 3 (day 10 ±3) share
    # only day 7; CLINICAL.md §1 de-duplicates draws that fall within a tolerance window, and day 10 is not
    # within 3 days of day 0, so the week-1 LFT+FBC stays its own draw.
    snap = snapshot(phase=Phase.BASELINE, doses=(DoseEvent("prednisolone", 60, day(3)),),
                    results=(result("WBC", 6, on=day(0), id=1), result("ALT", 300, on=day(0), id=2)))
    week_1 = [(d.panel, d.due_on) for d in plan(snap, day(8)).draws if "/disease/induction/" in d.rule_id
              and d.due_on == day(10)]
    assert week_1 == [("CBC", day(10)), ("LFT", day(10))]


def test_in_induction_the_clocks_share_weeks_3_and_4() -> None:
    # disease weekly CBC days 7-28 (BMJBP), safety weekly from the week-3 azathioprine start (anchor day 14)
    cbc = [(n, rule.rsplit("/", 1)[1]) for n, rule in panel_days(snapshot(), day(-10), "CBC")]
    assert cbc == [(7, "induction-weekly")]  # only the first upcoming draw of a panel is listed
    seen = {}
    for n in range(0, 60):
        for d in due_on(snapshot(results=BILIRUBIN), day(n)):
            if d.panel == "CBC":
                seen[n] = (d.rule_id.rsplit("/", 1)[1], "also:" in d.why)
    assert seen == {7: ("induction-weekly", False), 14: ("induction-weekly", False),
                    21: ("induction-weekly", True), 28: ("induction-weekly", True),
                    35: ("titration-weekly", False), 42: ("titration-weekly", False),
                    56: ("titration-2-weekly", False)}


def test_a_repeat_count_asked_for_by_a_flag_is_never_absorbed_by_a_routine_draw() -> None:
    # NEUT 1.2 (BSR17 action) on day 100: repeat within 7 days (day 107), next to the routine day-112 count
    snap = on_azathioprine(results=(result("NEUT", 1.2, on=day(100)),))
    cbc = panel_days(snap, day(101), "CBC")
    assert (107, "aih-azathioprine/tightening/action") in cbc
    assert (112, SAFETY + "stable-monthly") in cbc


# --- satisfying a draw ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken_day", "satisfied"),
    [
        pytest.param(37, True, id="day 42 ±5: 5 days early"),
        pytest.param(42, True, id="on the day"),
        pytest.param(47, True, id="5 days late"),
        pytest.param(36, False, id="6 days early"),
        # a late result still satisfies the draw until the next draw of the panel opens (day 51)
        pytest.param(48, True, id="6 days late: satisfied late"),
    ],
)
def test_a_draw_is_satisfied_by_a_result_of_its_panel_within_the_window(taken_day: int, satisfied: bool) -> None:
    snap = on_azathioprine(results=(result("WBC", 5.0, on=day(taken_day)),))
    cbc_42 = [d for d in plan(snap, day(48)).draws if d.panel == "CBC" and d.due_on == day(42)]
    assert (cbc_42 == []) is satisfied
    lft_42 = [d for d in plan(snap, day(48)).draws if d.panel == "LFT" and d.due_on == day(42)]
    assert len(lft_42) == 1  # a CBC result does not satisfy the liver panel


@pytest.mark.parametrize("analyte", ["WBC", "NEUT", "PLT", "HGB", "MCV", "EOS", "LYMPH"])
def test_any_analyte_of_the_panel_satisfies_the_draw(analyte: str) -> None:
    snap = on_azathioprine(results=(result(analyte, 7.0, on=day(7)),))
    assert {d.panel for d in plan(snap, day(8)).draws if d.due_on == day(7)} == {"LFT"}


def test_a_preliminary_result_still_shows_the_blood_was_taken() -> None:
    snap = on_azathioprine(results=(result("ALT", 30, on=day(7), status="preliminary"),))
    assert {d.panel for d in plan(snap, day(8)).draws if d.due_on == day(7)} == {"CBC"}


def test_renal_is_satisfied_by_creatinine() -> None:
    snap = on_azathioprine(results=(result("CREAT", 80, on=day(41)),))
    assert {d.panel for d in plan(snap, day(42)).draws if d.due_on == day(42)} == {"CBC", "LFT"}


def test_results_are_matched_by_panel_not_by_result_status_or_value() -> None:
    odd: tuple[Result, ...] = (result("MCV", 130, on=day(14), status="corrected"),)
    snap = on_azathioprine(results=odd)
    assert {d.panel for d in plan(snap, day(15)).draws if d.due_on == day(14)} == {"LFT"}


# --- statuses at the boundary days -----------------------------------------------------------------------

#: (CBC draw day, today, status), both as days after the first azathioprine dose (CBC: safety clock only).
STATUSES = [
    pytest.param(7, 3, "upcoming", id="weekly day 7 ±3: day 3 upcoming"),
    pytest.param(7, 4, "due", id="weekly: window opens day 4"),
    pytest.param(7, 10, "due", id="weekly: window closes day 10"),
    pytest.param(7, 11, "missed", id="weekly: day 11 = day 14's window, missed at once"),
    pytest.param(42, 36, "upcoming", id="2-weekly day 42 ±5: day 36 upcoming"),
    pytest.param(42, 37, "due", id="2-weekly: opens day 37"),
    pytest.param(42, 47, "due", id="2-weekly: closes day 47"),
    pytest.param(42, 48, "overdue", id="2-weekly: overdue day 48"),
    pytest.param(42, 50, "overdue", id="2-weekly: still overdue day 50"),
    pytest.param(42, 51, "missed", id="2-weekly: missed when day 56's window opens (51)"),
    pytest.param(112, 104, "upcoming", id="monthly day 112 ±7: day 104 upcoming"),
    pytest.param(112, 105, "due", id="monthly: opens day 105"),
    pytest.param(112, 119, "due", id="monthly: closes day 119"),
    pytest.param(112, 120, "overdue", id="monthly: overdue day 120"),
    pytest.param(112, 132, "overdue", id="monthly: overdue day 132"),
    pytest.param(112, 133, "missed", id="monthly: missed when day 140's window opens (133)"),
    # changed (schedules item 11): long-term draws are monthly ±7 (FDA label [V]), were 12-weekly ±14 (day 252)
    pytest.param(252, 244, "upcoming", id="long-term monthly day 252 ±7: day 244 upcoming"),
    pytest.param(252, 245, "due", id="long-term monthly: opens day 245"),
    pytest.param(252, 259, "due", id="long-term monthly: closes day 259"),
    pytest.param(252, 260, "overdue", id="long-term monthly: overdue day 260"),
    pytest.param(252, 273, "missed", id="long-term monthly: missed when day 280's window opens (273)"),
]


@pytest.mark.parametrize(("draw_day", "today", "status"), STATUSES)
def test_a_draw_moves_from_upcoming_to_due_to_overdue_to_missed(draw_day: int, today: int, status: str) -> None:
    found = [d for d in plan(on_azathioprine(), day(today)).draws if d.panel == "CBC" and d.due_on == day(draw_day)]
    assert [d.status for d in found] == [status]


@pytest.mark.parametrize(
    ("severity_value", "repeat_day", "today", "status"),
    [
        pytest.param(1.2, 107, 100, "due", id="DESIGN action repeat within 7 days: due the day it is asked for"),
        pytest.param(1.2, 107, 107, "due", id="action repeat: due on day 7"),
        pytest.param(1.2, 107, 108, "missed", id="action repeat: missed on day 8, the day-112 count is due (105)"),
        pytest.param(0.8, 103, 100, "due", id="DESIGN critical repeat within 3 days (48-72 h): due at once"),
        pytest.param(0.8, 103, 103, "due", id="critical repeat: due on day 3"),
        pytest.param(0.8, 103, 104, "overdue", id="critical repeat: overdue on day 4"),
    ],
)
def test_a_repeat_count_is_due_from_the_day_it_is_asked_for(
    severity_value: float, repeat_day: int, today: int, status: str
) -> None:
    snap = on_azathioprine(results=(result("NEUT", severity_value, on=day(100)),))
    found = [d for d in plan(snap, day(today)).draws if d.rule_id.startswith("aih-azathioprine/tightening/")]
    assert [((d.due_on - START).days, d.status) for d in found] == [(repeat_day, status)]


def test_a_repeat_count_falling_on_a_routine_count_day_is_still_due_from_the_day_it_is_asked_for() -> None:
    # NEUT 1.2 on day 105 asks for a repeat within 7 days: day 112, the routine monthly count's day, so the two are
    # one draw (same day). Found by this tier (fixed): schedule.merged rebuilt the kept Slot without due_from (and
    # mergeable, until), so the repeat asked for on day 105 was listed "upcoming" until day 106, while the same flag
    # on day 104 (repeat day 111, no routine count) was "due".
    for flagged_on in (104, 105):
        snap = on_azathioprine(results=(result("NEUT", 1.2, on=day(flagged_on)),))
        found = [((d.due_on - START).days, d.status) for d in plan(snap, day(flagged_on)).draws
                 if d.rule_id.startswith("aih-azathioprine/tightening/")]
        assert found == [(flagged_on + 7, "due")], flagged_on


def test_a_merged_draw_keeps_what_the_kept_draw_was_asked_with() -> None:
    # the same bug, on schedule.merged alone: the kept draw loses its due_from
    repeat = Slot(day(112), day(106), day(112), ("CBC",), "repeat", "repeat", mergeable=False, due_from=day(105))
    (kept,) = merged([repeat, slot(112, 7, "routine")], "CBC")
    assert (kept.rule_id, kept.due_from) == ("repeat", day(105))


def test_only_the_first_upcoming_draw_of_each_panel_is_listed() -> None:
    found = draws(on_azathioprine(), day(40))
    assert found >= {("CBC", 42, "due"), ("RENAL", 42, "due"), ("CBC", 56, "upcoming"), ("IGG", 91, "upcoming")}
    assert ("CBC", 70, "upcoming") not in found
    upcoming = [(d.panel, d.due_on) for d in plan(on_azathioprine(), day(40)).draws if d.status == "upcoming"]
    assert sorted(upcoming) == [("CBC", day(56)), ("IGG", day(91)), ("LFT", day(56)), ("RENAL", day(56))]


@pytest.mark.parametrize(
    ("today", "listed"),
    [
        pytest.param(7 + 90, True, id="missed day 7, 90 days later: still listed"),
        pytest.param(7 + 91, False, id="91 days later: dropped"),
    ],
)
def test_missed_draws_drop_off_after_the_missed_lookback(today: int, listed: bool) -> None:
    assert PROTOCOL.missed_lookback_days == 90
    found = [d for d in plan(on_azathioprine(), day(today)).draws if d.due_on == day(7)]
    assert bool(found) is listed
    assert all(d.status == "missed" for d in found)


def test_an_overdue_draw_never_drops_off_while_overdue() -> None:
    # day 252's window closes on day 259 and day 280's opens on day 273: overdue for 13 days, all listed (changed,
    # schedules item 11: monthly long term; with 12-weekly draws it was days 267-321)
    for n in range(260, 273):
        assert {d.status for d in plan(on_azathioprine(), day(n)).draws
                if d.due_on == day(252) and d.panel == "CBC"} == {"overdue"}


def test_a_satisfied_draw_is_not_listed_whatever_the_day() -> None:
    snap = on_azathioprine(results=(result("WBC", 5, on=day(7)), result("ALT", 20, on=day(7))))
    for n in (7, 11, 30, 97, 98):  # results count from the day they were taken
        assert not [d for d in plan(snap, day(n)).draws if d.due_on == day(7)]


# --- the stored plan: each day's statuses without a review; next_review_on: what the date alone cannot say


def listed(p: Plan, on: int) -> tuple[list[DueDraw], list[OverduePanel]]:
    """What a plan stored on an earlier day lists on day `on`."""
    return p.drawn.on(day(on))


def test_a_phase_start_is_a_review_day() -> None:
    assert plan(on_azathioprine(), day(-10)).next_review_on == day(0)  # the plan may change when a phase begins


@pytest.mark.parametrize(
    ("today", "change"),
    [
        pytest.param(0, 4, id="first dose: day 7 opens on day 4"),
        pytest.param(4, 11, id="day 7 due: day 11 (closes + 1 = day 14 opens)"),
        pytest.param(36, 37, id="day 42 opens on day 37"),
        pytest.param(37, 48, id="day 42 due: overdue on day 48"),
        pytest.param(48, 51, id="day 42 overdue: missed on day 51"),
        pytest.param(100, 105, id="day 84 overdue: day 112 opens on day 105"),
        pytest.param(170, 175, id="day 168 due, but missed day 84 drops off on day 175"),
        pytest.param(175, 176, id="day 168 due: overdue on day 176"),
    ],
)
def test_a_stored_plan_says_the_day_a_status_changes_without_a_review(today: int, change: int) -> None:
    p = plan(on_azathioprine(), day(today))
    later = plan(on_azathioprine(), day(change))
    assert listed(p, change) == (list(later.draws), list(later.overdue))
    assert listed(p, change - 1) != listed(p, change)  # the day changes what is listed
    assert p.next_review_on > day(change)  # and the plan need not be evaluated again for it


def test_a_stored_plan_drops_a_missed_draw_after_the_lookback() -> None:
    # day 330: day 252 is missed (since 273, day 280's window opening) and drops off on 252 + 91 = 343, before day
    # 336 closes (344; monthly long term since schedules item 11)
    p = plan(on_azathioprine(), day(330))
    assert ("CBC", 252, "missed") in {(d.panel, (d.due_on - START).days, d.status) for d in p.draws}
    assert ("CBC", day(252), "missed") in {(d.panel, d.due_on, d.status) for d in listed(p, 342)[0]}
    assert ("CBC", day(252)) not in {(d.panel, d.due_on) for d in listed(p, 343)[0]}
    assert ("CBC", 252, "missed") not in draws(on_azathioprine(), day(343))


def test_next_review_includes_dose_step_dates() -> None:
    # induction day 5: the day-7 disease draw is already due (opened day 4); prednisolone week 2 starts day 7
    assert plan(snapshot(phase=Phase.INDUCTION), day(5)).next_review_on == day(7)


def test_a_late_flagged_count_satisfies_the_overdue_draw_and_asks_for_its_repeat() -> None:
    # day 84 is overdue on day 100 (day 112 opens on 105): the count taken late on day 100 satisfies it, and its
    # NEUT 1.2 (BSR17 < 1.6, action) asks for a repeat within 7 days (tightening, CLINICAL.md §4.7)
    snap = on_azathioprine(results=(result("NEUT", 1.2, on=day(100)),))
    cbc = [(d.due_on, d.status) for d in plan(snap, day(100)).draws if d.panel == "CBC"]
    assert (day(84), "overdue") not in cbc and (day(107), "due") in cbc


def test_next_review_includes_the_day_an_overdue_draw_becomes_missed_behind_a_repeat_count() -> None:
    # draw_plan marks a draw missed once the next draw's window opens (`after.opens`). Found by this tier: for a
    # repeat count the review days held `due_from` (the flag's day), not `opens` (the day after). Day 252's CBC
    # is overdue on day 265; a NEUT 1.2 that day asks for a repeat (due from 265, opens 266): on day 266 the
    # day-252 draw turns missed, and next_review_on said a later day.
    # Since late results satisfy an overdue draw, the flagged count itself satisfies day 252: nothing is left to
    # turn missed, and the plan holds still until its next review.
    # Changed (schedules item 11): days 265/266, were 280/281 (252 ±14 then; monthly ±7 now, day 280 is a draw day).
    snap = on_azathioprine(results=(result("NEUT", 1.2, on=day(265)),))
    before, after = plan(snap, day(265)), plan(snap, day(266))
    statuses = [[d.status for d in p.draws if d.panel == "CBC" and d.due_on == day(252)] for p in (before, after)]
    assert statuses == [[], []]
    assert before.next_review_on > day(265)


SWEEPS = [
    pytest.param(on_azathioprine(), id="steady dose"),
    pytest.param(on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(70)),),
                                 results=(result("WBC", 4, on=day(40)), result("CREAT", 70, on=day(58)))),
                 id="dose change at day 70 with results"),
    pytest.param(snapshot(phase=Phase.INDUCTION), id="planned induction"),
    pytest.param(on_azathioprine(doses=(DoseEvent("azathioprine", 0, day(100)), DoseEvent("azathioprine", 100,
                                                                                           day(130)))),
                 id="hold and restart"),
    pytest.param(on_azathioprine(medications=(Medication("allopurinol", day(60)), Medication("ramipril", day(200)))),
                 id="allopurinol and an ACE inhibitor"),
    pytest.param(stopping(), id="withdrawal and off treatment"),
]


def input_days(snap: Snapshot) -> set[date]:
    """Days something is recorded: on those the plan may change without next_review_on saying so."""
    return ({r.observed_on for r in snap.results} | {d.on for d in snap.doses} | {w.on for w in snap.weights}
            | {g.on for g in snap.genotypes} | {e.started_on for e in snap.phases}
            | {m.started_on for m in snap.medications} | {m.stopped_on for m in snap.medications if m.stopped_on})


@pytest.mark.parametrize("snap", SWEEPS)
def test_next_review_is_always_after_today_and_the_stored_plan_holds_until_it(snap: Snapshot) -> None:
    """As the daily cycle keeps it: a plan is evaluated again on its review day or when input arrives;
    every other day, what it stored (read for that day) is what a fresh evaluation would list."""
    recorded = input_days(snap)
    reviewed = plan(snap, day(-20))
    for n in range(-19, 560):
        current = plan(snap, day(n))
        assert current.next_review_on > current.as_of
        if current.as_of >= reviewed.next_review_on or current.as_of in recorded:
            reviewed = current
            continue
        assert listed(reviewed, n) == (list(current.draws), list(current.overdue)), (n, reviewed.as_of)
        assert current.dose_steps == reviewed.dose_steps, (n, reviewed.as_of)


# --- explanations ----------------------------------------------------------------------------------------

SOURCES = {"titration-weekly": "FDA label + BSR 2017", "titration-2-weekly": "FDA label + BSR 2017",
           "stable-monthly": "BSR 2017", "long-term-monthly": "FDA label",  # was long-term-12-weekly, BSR 2017
           "maintenance-3-monthly": "AASLD 2010"}


def test_every_draw_names_its_stage_rule_and_source() -> None:
    seen: set[str] = set()
    for n in range(0, 400, 3):
        for d in plan(on_azathioprine(), day(n)).draws:
            stage = d.rule_id.rsplit("/", 1)[1]
            seen.add(stage)
            own = d.why.split("; also: ")[0]
            assert own.startswith(f"{d.panel} every ")
            assert f": day {(d.due_on - START).days} (±{d.window_days} days; {SOURCES[stage]})" in own
            assert own.endswith(f"; {SOURCES[stage]})")
            what = "maintenance start on" if d.rule_id.startswith(DISEASE) else "azathioprine treatment"
            assert f" after {what} " in own
    assert seen == {s.id for s in PROTOCOL.safety.stages} | {"maintenance-3-monthly"}


def test_the_2_weekly_why_says_it_waits_for_a_stable_dose() -> None:
    (d, *_) = due_on(on_azathioprine(), day(42))
    assert "every 14 days to day 84 and until the dose has been stable 42 days" in d.why


def test_the_monthly_why_says_how_many_times() -> None:
    (d, *_) = due_on(on_azathioprine(), day(112))
    assert "every 28 days, 3 times after azathioprine" in d.why


def test_draw_ids_are_unique_per_panel_and_day_in_a_plain_course() -> None:
    # monitor/db/tables.py: due_draw is unique on (enrollment, panel, due_on)
    for n in range(0, 400, 7):
        p = plan(on_azathioprine(), day(n))
        assert len({(d.panel, d.due_on) for d in p.draws}) == len(p.draws), n
