"""Dose steps: the EASL 2015 induction table scaled to weight and clamped to 1-2 mg/kg (CLINICAL.md §2.1)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from monitor.domain.dosing import clamp_to_target, dose_steps, round_to_tablet
from monitor.domain.items import DoseStep
from monitor.domain.protocol import Phase
from monitor.domain.snapshot import DoseEvent, PhaseEpisode, Weight
from tests.unit.builders import PROTOCOL, START, day, snapshot, week_starts

BEFORE = START - timedelta(days=1)

#: EASL 2015 prednisolone for 60 kg (§2.1 [V], WJG 2017 Table 1): (week the step starts, mg/day).
PREDNISOLONE_60KG = [
    pytest.param(1, 60, id="EASL15 w1 60"),
    pytest.param(2, 50, id="EASL15 w2 50"),
    pytest.param(3, 40, id="EASL15 w3 40"),
    pytest.param(4, 30, id="EASL15 w4 30"),
    pytest.param(5, 25, id="EASL15 w5 25"),
    pytest.param(6, 20, id="EASL15 w6 20"),
    pytest.param(7, 15, id="EASL15 w7 15"),
    pytest.param(8, 12.5, id="EASL15 w8-9 12.5"),
    pytest.param(10, 10, id="EASL15 w10+ 10"),
]


def steps(weight_kg: float | None = 60, *, today: date = BEFORE, **kwargs: Any) -> list[DoseStep]:
    found, _ = dose_steps(snapshot(weight_kg=weight_kg, **kwargs), PROTOCOL, today=today)
    return found


def table(drug: str, found: list[DoseStep]) -> list[tuple[date, float]]:
    return [(s.on, s.dose_mg) for s in found if s.drug == drug]


def test_the_60_kg_induction_lists_every_prednisolone_step_on_its_week() -> None:
    expected = [(week_starts(p.values[0]), p.values[1]) for p in PREDNISOLONE_60KG]
    assert table("prednisolone", steps(60)) == expected


@pytest.mark.parametrize(("week", "dose_mg"), PREDNISOLONE_60KG)
def test_the_60_kg_prednisolone_step_starts_on_day_7_times_week_minus_1(week: int, dose_mg: float) -> None:
    (step,) = [s for s in steps(60) if s.drug == "prednisolone" and s.on == START + timedelta(days=7 * (week - 1))]
    assert step.dose_mg == dose_mg
    assert step.rule_id == f"aih-azathioprine/induction/easl-2015/prednisolone/week-{week}"


def test_there_is_no_step_for_week_9_because_12_5_mg_covers_weeks_8_and_9() -> None:
    assert week_starts(9) not in dict(table("prednisolone", steps(60)))


@pytest.mark.parametrize(
    ("week", "dose_mg"),
    [pytest.param(3, 50, id="EASL15[S] AZA 50 mg from week 3"),
     pytest.param(5, 100, id="EASL15[S] AZA 100 mg from week 5")],
)
def test_azathioprine_starts_at_50_mg_in_week_3_and_rises_to_100_mg_in_week_5(week: int, dose_mg: float) -> None:
    assert (week_starts(week), dose_mg) in table("azathioprine", steps(60))


def test_azathioprine_has_exactly_two_induction_steps() -> None:
    assert table("azathioprine", steps(60)) == [(day(14), 50), (day(28), 100)]


@pytest.mark.parametrize(
    ("weight_kg", "doses"),
    [
        pytest.param(72, [60, 50, 40, 30, 25, 20, 15, 12.5, 10], id="72 kg: capped at the table (max_scale 1.0)"),
        pytest.param(150, [60, 50, 40, 30, 25, 20, 15, 12.5, 10], id="150 kg: capped at the table"),
        pytest.param(60, [60, 50, 40, 30, 25, 20, 15, 12.5, 10], id="60 kg: EASL15 reference weight"),
        # 45/60 = 0.75: 45, 37.5, 30, 22.5, 18.75->20, 15, 11.25->12.5, 9.375->10, 7.5 (2.5 mg, halves up)
        pytest.param(45, [45, 37.5, 30, 22.5, 20, 15, 12.5, 10, 7.5], id="45 kg: x0.75 rounded to 2.5 mg"),
        # 30/60 = 0.5: 30, 25, 20, 15, 12.5, 10, 7.5, 6.25->7.5, 5
        pytest.param(30, [30, 25, 20, 15, 12.5, 10, 7.5, 7.5, 5], id="30 kg: x0.5 rounded to 2.5 mg"),
    ],
)
def test_prednisolone_scales_down_with_weight_but_never_above_the_table(weight_kg: float, doses: list[float]) -> None:
    assert [dose for _, dose in table("prednisolone", steps(weight_kg))] == doses


@pytest.mark.parametrize(
    ("weight_kg", "week_5_mg"),
    [
        pytest.param(40, 75, id="40 kg: 100 > 2 mg/kg = 80, whole 25 mg tablets -> 75"),
        pytest.param(45, 75, id="45 kg: 100 > 90, 100 would exceed 2 mg/kg -> 75"),
        pytest.param(30, 50, id="30 kg: 2 mg/kg = 60 -> 50"),
        pytest.param(60, 100, id="60 kg: 100 inside 60-120"),
        pytest.param(72, 100, id="72 kg: 100 inside 72-144"),
        pytest.param(100, 100, id="100 kg: 100 = 1 mg/kg"),
        pytest.param(120, 125, id="120 kg: 100 < 1 mg/kg = 120, whole tablets -> 125"),
        pytest.param(150, 150, id="150 kg: 1 mg/kg = 150"),
    ],
)
def test_azathioprine_100_mg_is_clamped_into_1_to_2_mg_per_kg_in_whole_tablets(
    weight_kg: float, week_5_mg: float
) -> None:
    # EASL15 [S] 1-2 mg/kg/day target; 25 mg tablets
    aza = table("azathioprine", steps(weight_kg))
    assert aza == [(week_starts(3), 50), (week_starts(5), week_5_mg)]
    assert 1.0 <= week_5_mg / weight_kg <= 2.0
    assert week_5_mg % 25 == 0


def test_the_week_3_azathioprine_dose_is_the_table_dose_whatever_the_weight() -> None:
    for weight in (30, 45, 120, 150):
        assert table("azathioprine", steps(weight))[0] == (week_starts(3), 50)


def test_the_azathioprine_why_explains_the_clamp_and_cites_easl_2015() -> None:
    (step,) = [s for s in steps(40) if s.drug == "azathioprine" and s.on == week_starts(5)]
    assert "within the 1–2 mg/kg target (EASL 2015) as whole 25 mg tablets" in step.why
    assert step.why.endswith("(EASL 2015)")


@pytest.mark.parametrize(
    ("dose", "tablet", "expected"),
    [(18.75, 2.5, 20), (11.25, 2.5, 12.5), (9.375, 2.5, 10), (6.24, 2.5, 5), (87.5, 25, 100), (80, 25, 75)],
)
def test_doses_round_to_the_nearest_whole_tablet_with_halves_up(dose: float, tablet: float, expected: float) -> None:
    assert round_to_tablet(dose, tablet) == expected


def test_when_no_whole_tablet_fits_the_target_the_clamp_gives_the_nearest_tablet() -> None:
    # 1-2 mg/kg at 12 kg is 12-24 mg: no 25 mg multiple fits, so it falls back to one tablet (2.08 mg/kg)
    target = PROTOCOL.dose_targets["azathioprine"]
    assert clamp_to_target(100, target, 12, 25) == 25


# --- statuses ------------------------------------------------------------------------------------------


def test_before_the_phase_starts_every_step_is_upcoming() -> None:
    assert {s.status for s in steps(60, today=BEFORE)} == {"upcoming"}


def test_on_the_first_day_week_1_is_due_and_the_rest_upcoming() -> None:
    found = steps(60, today=START)
    assert [(s.dose_mg, s.status) for s in found if s.on == START] == [(60, "due")]
    assert {s.status for s in found if s.on > START} == {"upcoming"}


def test_only_the_current_and_coming_steps_are_listed() -> None:
    found = steps(60, today=day(50))  # week 8, day 2
    assert table("prednisolone", found) == [(week_starts(8), 12.5), (week_starts(10), 10)]
    assert [(s.dose_mg, s.status) for s in found if s.drug == "prednisolone"] == [(12.5, "due"), (10, "upcoming")]
    assert [(s.dose_mg, s.status) for s in found if s.drug == "azathioprine"] == [(100, "due")]


def test_after_the_last_step_only_the_last_step_stays_listed_as_due() -> None:
    found = steps(60, today=day(400))
    assert [(s.drug, s.dose_mg, s.status) for s in found] == [
        ("prednisolone", 10, "due"), ("azathioprine", 100, "due")]


@pytest.mark.parametrize(
    ("recorded_on", "dose_mg", "today", "status"),
    [
        pytest.param(0, 60, 0, "done", id="recorded on the step's day"),
        pytest.param(3, 60, 5, "done", id="recorded later in the step's week"),
        pytest.param(-3, 60, 0, "done", id="recorded 3 days early still counts"),
        pytest.param(-4, 60, 0, "due", id="recorded 4 days early does not"),
        pytest.param(0, 55, 0, "due", id="a different dose does not"),
        pytest.param(2, 60, 1, "due", id="recorded after today does not count yet"),
    ],
)
def test_a_recorded_dose_marks_the_step_done(recorded_on: int, dose_mg: float, today: int, status: str) -> None:
    found = steps(60, today=day(today), doses=(DoseEvent("prednisolone", dose_mg, day(recorded_on)),))
    assert [s.status for s in found if s.drug == "prednisolone" and s.on == START] == [status]


def test_a_dose_recorded_for_the_next_step_does_not_mark_the_current_one_done() -> None:
    # 50 mg on day 5 is the week-2 dose taken up to 3 days early: week 2 done, week 1 still due
    found = steps(60, today=day(5), doses=(DoseEvent("prednisolone", 50, day(5)),))
    assert [(s.dose_mg, s.status) for s in found if s.on <= day(7)] == [(60, "due"), (50, "done")]


def test_a_recorded_azathioprine_dose_matching_the_weight_adjusted_dose_marks_it_done() -> None:
    found = steps(40, today=day(29), doses=(DoseEvent("azathioprine", 75, day(28)),))
    assert [(s.dose_mg, s.status) for s in found if s.drug == "azathioprine"] == [(75, "done")]


# --- which phases have steps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "has_steps"),
    [
        pytest.param(Phase.INDUCTION, True, id="EASL15 induction"),
        pytest.param(Phase.REINDUCTION, True, id="AASLD10 rec 31 [V]: re-induce with the same regimen"),
        pytest.param(Phase.BASELINE, False, id="baseline"),
        pytest.param(Phase.MAINTENANCE, False, id="maintenance"),
        pytest.param(Phase.WITHDRAWAL, False, id="withdrawal"),
        pytest.param(Phase.OFF_TREATMENT, False, id="off treatment"),
        pytest.param(Phase.LIFELONG_MAINTENANCE, False, id="lifelong maintenance"),
    ],
)
def test_dose_steps_come_only_in_induction_and_reinduction(phase: Phase, has_steps: bool) -> None:
    assert bool(steps(60, today=START, phase=phase)) is has_steps


def test_reinduction_restarts_the_table_from_its_own_start() -> None:
    relapse = date(2028, 3, 1)
    phases = (PhaseEpisode(Phase.INDUCTION, START), PhaseEpisode(Phase.MAINTENANCE, day(200)),
              PhaseEpisode(Phase.REINDUCTION, relapse))
    found = steps(60, today=relapse, phases=phases)
    assert table("prednisolone", found)[0] == (relapse, 60)
    assert table("azathioprine", found) == [(relapse + timedelta(days=14), 50), (relapse + timedelta(days=28), 100)]
    assert "week 1 of reinduction (from 2028-03-01)" in found[0].why


def test_the_move_to_maintenance_ends_the_steps() -> None:
    phases = (PhaseEpisode(Phase.INDUCTION, START), PhaseEpisode(Phase.MAINTENANCE, day(90)))
    assert steps(60, today=day(89), phases=phases)
    assert steps(60, today=day(90), phases=phases) == []


def test_each_step_uses_the_weight_on_its_own_date() -> None:
    weights = (Weight(START, 60), Weight(day(20), 45))
    found = steps(today=BEFORE, weights=weights)
    assert table("prednisolone", found)[:4] == [(day(0), 60), (day(7), 50), (day(14), 40), (day(21), 22.5)]


def test_a_patient_without_a_weight_gets_no_steps() -> None:
    assert steps(None, today=START) == []


def test_the_step_dates_are_where_the_plan_can_next_change() -> None:
    _, changes = dose_steps(snapshot(), PROTOCOL, today=day(10))
    assert min(c for c in changes if c > day(10)) == day(14)


# --- explanations ----------------------------------------------------------------------------------------


def test_every_step_has_a_rule_id_and_a_why_citing_easl_2015() -> None:
    for weight in (40, 60, 72, 120):
        for s in steps(weight):
            assert s.rule_id.startswith("aih-azathioprine/induction/easl-2015/")
            assert s.rule_id.endswith(f"/{s.drug}/week-{(s.on - START).days // 7 + 1}")
            assert "EASL 2015" in s.why
            assert f"{s.drug} {s.dose_mg:g} mg/day" in s.why


def test_a_scaled_step_says_how_the_dose_was_reached() -> None:
    (first, *_) = steps(45)
    assert first.why == (
        "EASL 2015 induction week 1 of induction (from 2026-01-05): prednisolone 45 mg/day; "
        "60 mg at 60 kg scaled to 45 kg (at most ×1), rounded to 2.5 mg (EASL 2015)"
    )
