"""The drug-safety schedule counted from the first azathioprine dose (CLINICAL.md §3.2)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from monitor.domain.items import DueDraw
from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import Phase
from monitor.domain.schedule import dose_changes, dose_timeline, slots
from monitor.domain.snapshot import DoseEvent, Result, Snapshot
from tests.unit.builders import PROTOCOL, START, day, on_azathioprine, result, snapshot

ALL = ("CBC", "LFT", "RENAL")


def plan(snap: Snapshot, today: date) -> Plan:
    return evaluate(snap, PROTOCOL, today=today)


def draws(snap: Snapshot, today: date, *, anchor: date = START) -> set[tuple[str, int, str]]:
    """(panel, day after the anchor, status) of every open draw."""
    return {(d.panel, (d.due_on - anchor).days, d.status) for d in plan(snap, today).draws}


def due_on(snap: Snapshot, today: date) -> list[DueDraw]:
    return [d for d in plan(snap, today).draws if d.due_on == today]


def scheduled_days(snap: Snapshot, anchor: date, until_day: int = 500) -> list[tuple[int, str]]:
    timeline = dose_timeline(snap, PROTOCOL, "azathioprine")
    return [(s.day, s.stage.id) for s in slots(PROTOCOL, anchor, dose_changes(timeline), until=day(until_day, anchor))]


# --- the draw days (§3.2: weekly to day 28, 2-weekly to day 84, monthly x3, then 12-weekly) ----------------

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
    pytest.param(252, ALL, "long-term-12-weekly", id="BSR17 12-weekly [V]: day 252"),
    pytest.param(336, ALL, "long-term-12-weekly", id="BSR17 12-weekly [V]: day 336"),
    pytest.param(420, ALL, "long-term-12-weekly", id="BSR17 12-weekly [V]: day 420"),
]


def test_the_steady_dose_schedule_is_exactly_these_days() -> None:
    assert scheduled_days(on_azathioprine(), START, until_day=400) == [
        (p.values[0], p.values[2]) for p in STEADY]


@pytest.mark.parametrize(("n", "panels", "stage"), STEADY)
def test_on_each_draw_day_its_panels_are_due(n: int, panels: tuple[str, ...], stage: str) -> None:
    found = due_on(on_azathioprine(), day(n))
    assert sorted(d.panel for d in found) == sorted(panels)
    assert {d.status for d in found} == {"due"}
    assert {d.rule_id for d in found} == {f"aih-azathioprine/safety/{stage}"}


@pytest.mark.parametrize("n", [0, 35, 49, 98, 126, 196, 224, 294])
def test_nothing_is_scheduled_between_draw_days(n: int) -> None:
    assert due_on(on_azathioprine(), day(n)) == []


def test_the_clock_starts_at_the_planned_week_3_azathioprine_step_in_induction() -> None:
    anchor = START + timedelta(days=14)  # EASL15 [S]: AZA 50 mg from week 3
    snap = snapshot(phase=Phase.INDUCTION)
    assert scheduled_days(snap, anchor, until_day=100)[:5] == [
        (7, "titration-weekly"), (14, "titration-weekly"), (21, "titration-weekly"),
        (28, "titration-weekly"), (42, "titration-2-weekly")]
    assert {d.due_on for d in plan(snap, START).draws} == {anchor + timedelta(days=7)}
    assert f"after azathioprine start on {anchor.isoformat()}" in plan(snap, START).draws[0].why


def test_a_recorded_first_dose_before_the_planned_step_moves_the_clock() -> None:
    snap = snapshot(phase=Phase.INDUCTION, doses=(DoseEvent("azathioprine", 50, day(10)),))
    assert {d.due_on for d in plan(snap, day(10)).draws} == {day(17)}


def test_a_recorded_zero_dose_does_not_start_the_clock() -> None:
    snap = snapshot(phase=Phase.MAINTENANCE, doses=(DoseEvent("azathioprine", 0, day(0)),
                                                    DoseEvent("azathioprine", 50, day(30))))
    assert {d.due_on for d in plan(snap, day(30)).draws} == {day(37)}


def test_a_patient_already_on_azathioprine_without_a_recorded_dose_is_counted_from_enrollment() -> None:
    snap = snapshot(phase=Phase.MAINTENANCE)
    assert {d.due_on for d in plan(snap, START).draws} == {day(7)}


def test_prednisolone_doses_do_not_start_the_clock() -> None:
    snap = snapshot(phase=Phase.MAINTENANCE, start=START,
                    doses=(DoseEvent("prednisolone", 10, day(-30)), DoseEvent("azathioprine", 100, day(20))))
    assert {d.due_on for d in plan(snap, day(20)).draws} == {day(27)}


# --- dose changes keep the 2-weekly stage going (§3.2 "until the dose has been unchanged >= 6 weeks") -----


def test_a_dose_change_at_day_70_keeps_2_weekly_draws_until_the_dose_is_stable_for_42_days() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(70)),))
    assert scheduled_days(snap, START, until_day=400) == [
        (7, "titration-weekly"), (14, "titration-weekly"), (21, "titration-weekly"), (28, "titration-weekly"),
        (42, "titration-2-weekly"), (56, "titration-2-weekly"), (70, "titration-2-weekly"),
        (84, "titration-2-weekly"), (98, "titration-2-weekly"), (112, "titration-2-weekly"),
        (140, "stable-monthly"), (168, "stable-monthly"), (196, "stable-monthly"),
        (280, "long-term-12-weekly"), (364, "long-term-12-weekly"), (448, "long-term-12-weekly"),
    ]
    assert sorted(d.panel for d in due_on(snap, day(98))) == list(ALL)
    assert {d.rule_id for d in due_on(snap, day(112))} == {"aih-azathioprine/safety/titration-2-weekly"}


@pytest.mark.parametrize(
    ("change_day", "extra"),
    [
        pytest.param(42, [], id="change at day 42: stable 42 days at day 84, no extension"),
        pytest.param(43, [98], id="change at day 43: stable 41 days at day 84, one more 2-weekly draw"),
        pytest.param(57, [98, 112], id="change at day 57: two more"),
        pytest.param(84, [98, 112, 126], id="change on day 84 itself: three more"),
    ],
)
def test_the_2_weekly_stage_ends_once_the_dose_has_been_stable_42_days(change_day: int, extra: list[int]) -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 125, day(change_day)),))
    two_weekly = [n for n, stage in scheduled_days(snap, START) if stage == "titration-2-weekly"]
    assert two_weekly == [42, 56, 70, 84, *extra]


def test_recording_the_same_dose_again_is_not_a_change() -> None:
    snap = on_azathioprine(doses=(DoseEvent("azathioprine", 100, day(70)),))
    assert scheduled_days(snap, START) == scheduled_days(on_azathioprine(), START)


def test_the_planned_week_5_rise_to_100_mg_is_a_dose_change() -> None:
    # anchor day 14 (50 mg), 100 mg from day 28 = anchor day 14: stable long before anchor day 84
    snap = snapshot(phase=Phase.INDUCTION)
    anchor = START + timedelta(days=14)
    two_weekly = [n for n, stage in scheduled_days(snap, anchor) if stage == "titration-2-weekly"]
    assert two_weekly == [42, 56, 70, 84]


# --- satisfying a draw ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken_day", "satisfied"),
    [
        pytest.param(37, True, id="day 42 ±5: 5 days early"),
        pytest.param(42, True, id="on the day"),
        pytest.param(47, True, id="5 days late"),
        pytest.param(36, False, id="6 days early"),
        pytest.param(48, False, id="6 days late"),
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
    snap = on_azathioprine(results=(result(analyte, 1.0, on=day(7)),))
    assert {d.panel for d in plan(snap, day(8)).draws if d.due_on == day(7)} == {"LFT"}


def test_a_preliminary_result_still_shows_the_blood_was_taken() -> None:
    snap = on_azathioprine(results=(result("ALT", 30, on=day(7), status="preliminary"),))
    assert {d.panel for d in plan(snap, day(8)).draws if d.due_on == day(7)} == {"CBC"}


def test_renal_is_satisfied_by_creatinine() -> None:
    snap = on_azathioprine(results=(result("CREAT", 80, on=day(41)),))
    assert {d.panel for d in plan(snap, day(42)).draws if d.due_on == day(42)} == {"CBC", "LFT"}


# --- statuses at the boundary days -----------------------------------------------------------------------

#: (CBC draw day, today, status), both as days after the first azathioprine dose.
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
    pytest.param(252, 237, "upcoming", id="12-weekly day 252 ±14: day 237 upcoming"),
    pytest.param(252, 238, "due", id="12-weekly: opens day 238"),
    pytest.param(252, 266, "due", id="12-weekly: closes day 266"),
    pytest.param(252, 267, "overdue", id="12-weekly: overdue day 267"),
    pytest.param(252, 322, "missed", id="12-weekly: missed when day 336's window opens (322)"),
]


@pytest.mark.parametrize(("draw_day", "today", "status"), STATUSES)
def test_a_draw_moves_from_upcoming_to_due_to_overdue_to_missed(draw_day: int, today: int, status: str) -> None:
    found = [d for d in plan(on_azathioprine(), day(today)).draws if d.panel == "CBC" and d.due_on == day(draw_day)]
    assert [d.status for d in found] == [status]


def test_only_the_first_upcoming_draw_of_each_panel_is_listed() -> None:
    assert draws(on_azathioprine(), day(40)) >= {("CBC", 42, "due"), ("RENAL", 42, "due"), ("CBC", 56, "upcoming")}
    assert ("CBC", 70, "upcoming") not in draws(on_azathioprine(), day(40))
    assert [d for d in plan(on_azathioprine(), day(40)).draws if d.status == "upcoming"] == [
        d for d in plan(on_azathioprine(), day(40)).draws if d.due_on == day(56)]


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
    # day 252's window closes on day 266 and day 336's opens on day 322: overdue for 55 days, all listed
    for n in range(267, 322):
        assert {d.status for d in plan(on_azathioprine(), day(n)).draws if d.due_on == day(252)} == {"overdue"}


def test_a_satisfied_draw_is_not_listed_whatever_the_day() -> None:
    snap = on_azathioprine(results=(result("WBC", 5, on=day(7)), result("ALT", 20, on=day(7))))
    for n in (5, 7, 11, 30, 97, 98):
        assert not [d for d in plan(snap, day(n)).draws if d.due_on == day(7)]


# --- next_review_on: the earliest day a status can change --------------------------------------------------


@pytest.mark.parametrize(
    ("today", "next_review"),
    [
        pytest.param(-10, 4, id="before the first dose: day 7's window opens day 4"),
        pytest.param(0, 4, id="first dose: day 4"),
        pytest.param(4, 11, id="day 7 due: day 11 (closes + 1 = day 14 opens)"),
        pytest.param(36, 37, id="day 42 opens on day 37"),
        pytest.param(37, 48, id="day 42 due: overdue on day 48"),
        pytest.param(48, 51, id="day 42 overdue: missed on day 51"),
        pytest.param(100, 105, id="day 84 overdue: day 112 opens on day 105"),
        pytest.param(170, 175, id="day 168 due, but missed day 84 drops off on day 175"),
        pytest.param(175, 176, id="day 168 due: overdue on day 176"),
    ],
)
def test_next_review_is_the_earliest_day_a_status_can_change(today: int, next_review: int) -> None:
    assert plan(on_azathioprine(), day(today)).next_review_on == day(next_review)


def test_next_review_includes_the_day_a_missed_draw_drops_off() -> None:
    # day 330: day 252 is missed (since 322) and drops off on 252 + 91 = 343, before day 336 closes (351)
    p = plan(on_azathioprine(), day(330))
    assert ("CBC", 252, "missed") in {(d.panel, (d.due_on - START).days, d.status) for d in p.draws}
    assert p.next_review_on == day(343)
    assert ("CBC", 252, "missed") not in draws(on_azathioprine(), day(343))


def test_next_review_includes_dose_step_dates() -> None:
    # induction, first day: prednisolone week 2 on day 7, before the first draw window (anchor 14 + 4)
    assert plan(snapshot(phase=Phase.INDUCTION), START).next_review_on == day(7)


def test_next_review_is_always_after_today_and_nothing_changes_before_it() -> None:
    snaps = [
        on_azathioprine(),
        on_azathioprine(doses=(DoseEvent("azathioprine", 150, day(70)),),
                        results=(result("WBC", 4, on=day(40)), result("CREAT", 70, on=day(58)))),
        snapshot(phase=Phase.INDUCTION),
    ]
    for snap in snaps:
        previous = plan(snap, day(-20))
        for n in range(-19, 420):
            current = plan(snap, day(n))
            assert current.next_review_on > current.as_of
            changed = (current.draws, current.dose_steps) != (previous.draws, previous.dose_steps)
            if changed:
                assert previous.next_review_on <= current.as_of, (n, previous.next_review_on)
            previous = current


# --- explanations ----------------------------------------------------------------------------------------


def test_every_draw_names_its_stage_rule_and_source() -> None:
    seen: set[str] = set()
    for n in range(0, 400, 3):
        for d in plan(on_azathioprine(), day(n)).draws:
            stage = d.rule_id.removeprefix("aih-azathioprine/safety/")
            seen.add(stage)
            assert d.why.startswith(f"{d.panel} every ")
            assert f"after azathioprine start on {START.isoformat()}: day {(d.due_on - START).days} " in d.why
            assert f"(±{d.window_days} days; " in d.why
            source = "FDA label + BSR 2017" if stage.startswith("titration") else "BSR 2017"
            assert d.why.endswith(f"; {source})")
    assert seen == {s.id for s in PROTOCOL.safety.stages}


def test_the_2_weekly_why_says_it_waits_for_a_stable_dose() -> None:
    (d, *_) = due_on(on_azathioprine(), day(42))
    assert "every 14 days to day 84 and until the dose has been stable 42 days" in d.why


def test_results_are_matched_by_panel_not_by_result_status_or_value() -> None:
    odd: tuple[Result, ...] = (result("MCV", 130, on=day(14), status="corrected"),)
    snap = on_azathioprine(results=odd)
    assert {d.panel for d in plan(snap, day(15)).draws if d.due_on == day(14)} == {"LFT"}
