"""Dose rules of the clinical-safety issue "Doses that should not be proposed" (monitor/domain/dosing.py, flags.py).

Five rules, each a parametrised table whose rows cite the source, with values at and either side of every cut:

- a flag whose rule's action withholds azathioprine (`withhold = true`: BSR 2017 / SPS "withhold and discuss",
  CLINICAL.md §4.1, §4.2) holds its pending starts and step-ups until acknowledged or resolved;
- the bilirubin gate (EASL15 [S], CLINICAL.md §2.2) needs a result, and one since the drug was last stopped;
- re-induction repeats the steroid course and keeps azathioprine given at its dose (AASLD10 rec. 31 [V], §2.8);
- the 2 mg/kg maintenance target is for steroid-free maintenance (source article; AASLD10 rec. 31 [V], §2.4);
- the prednisolone taper is the source article's table by default, the WJG 2017 reading a variant (§2.1).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from monitor.domain.dosing import dose_steps
from monitor.domain.items import DoseStep
from monitor.domain.plan import evaluate
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import DoseEvent, OpenFlag, PhaseEpisode, Result, Snapshot
from monitor.protocols import Library, packaged_library
from tests.unit.builders import PROTOCOL, START, day, result, snapshot, week_starts
from tests.unit.config_files import edit, rejection

AIH, RHEUM, IBD = (packaged_library().get(p) for p in ("aih-azathioprine", "rheum-azathioprine", "ibd-azathioprine"))
AZA = "azathioprine"


def aza_steps(snap: Snapshot, today: date, protocol: MonitoringProtocol = PROTOCOL) -> list[DoseStep]:
    return [s for s in evaluate(snap, protocol, today=today).dose_steps if s.drug == AZA]


def held(snap: Snapshot, today: date, protocol: MonitoringProtocol = PROTOCOL) -> list[DoseStep]:
    return [s for s in aza_steps(snap, today, protocol) if s.status == "held"]


# --- 1. a rule whose action withholds azathioprine holds it until reviewed ------------------------------------

def on_100_mg(results: tuple[Result, ...]) -> Snapshot:
    """A 50 kg patient in maintenance taking 100 mg (2 mg/kg) since START: nothing pending but the dose itself."""
    return snapshot(phase=Phase.MAINTENANCE, weight_kg=50, doses=(DoseEvent(AZA, 100, START),), results=results)


#: (protocol, analyte, value, held by the rule). A value exactly at a cut never breaches (docs/protocols.md).
WITHHOLD = [
    pytest.param(AIH, "WBC", 3.49, True, id="BSR17 [V] WBC<3.5 below: withhold"),
    pytest.param(AIH, "WBC", 3.5, False, id="BSR17 WBC<3.5 at"),
    pytest.param(AIH, "WBC", 3.51, False, id="BSR17 WBC<3.5 above"),
    pytest.param(AIH, "NEUT", 1.59, True, id="BSR17 [V] NEUT<1.6 below: withhold"),
    pytest.param(AIH, "NEUT", 1.6, False, id="BSR17 NEUT<1.6 at"),
    pytest.param(AIH, "NEUT", 1.61, False, id="BSR17 NEUT<1.6 above"),
    pytest.param(AIH, "PLT", 139.9, True, id="BSR17 [V] PLT<140 below: withhold"),
    pytest.param(AIH, "PLT", 140, False, id="BSR17 PLT<140 at"),
    pytest.param(AIH, "PLT", 140.1, False, id="BSR17 PLT<140 above"),
    pytest.param(AIH, "EOS", 0.51, True, id="BSR17 [V] EOS>0.5 above: withhold (if unexplained: the clinician judges)"),
    pytest.param(AIH, "EOS", 0.5, False, id="BSR17 EOS>0.5 at"),
    pytest.param(AIH, "EOS", 0.49, False, id="BSR17 EOS>0.5 below"),
    pytest.param(AIH, "MCV", 105.1, True, id="BSR17 [V] MCV>105 above: withhold (if B12/folate/TSH normal)"),
    pytest.param(AIH, "MCV", 105, False, id="BSR17 MCV>105 at"),
    pytest.param(AIH, "MCV", 104.9, False, id="BSR17 MCV>105 below"),
    pytest.param(AIH, "ALT", 100.1, True, id="BSR17 [V] ALT>100 above, normal baseline: withhold"),
    pytest.param(AIH, "ALT", 100, False, id="BSR17 ALT>100 at"),
    pytest.param(AIH, "ALT", 99.9, False, id="BSR17 ALT>100 below"),
    pytest.param(AIH, "ALB", 29.9, True, id="BSR17 [V] ALB<30 below: withhold (if unexplained)"),
    pytest.param(AIH, "ALB", 30, False, id="BSR17 ALB<30 at"),
    pytest.param(AIH, "ALB", 30.1, False, id="BSR17 ALB<30 above"),
    pytest.param(RHEUM, "WBC", 3.49, True, id="rheum BSR17 [V] WBC<3.5 below: withhold"),
    pytest.param(RHEUM, "WBC", 3.5, False, id="rheum BSR17 WBC<3.5 at"),
    pytest.param(RHEUM, "PLT", 139.9, True, id="rheum BSR17 [V] PLT<140 below: withhold"),
    pytest.param(RHEUM, "PLT", 140, False, id="rheum BSR17 PLT<140 at"),
    pytest.param(RHEUM, "PLT", 140.1, False, id="rheum BSR17 PLT<140 above"),
    pytest.param(IBD, "NEUT", 1.99, True, id="IBD SPS-GASTRO [V] NEUT<2.0 below: withhold"),
    pytest.param(IBD, "NEUT", 2.0, False, id="IBD SPS-GASTRO NEUT<2.0 at"),
    pytest.param(IBD, "NEUT", 2.01, False, id="IBD SPS-GASTRO NEUT<2.0 above"),
]


@pytest.mark.parametrize(("protocol", "analyte", "value", "holds"), WITHHOLD)
def test_a_flag_whose_rule_withholds_azathioprine_holds_it_pending_review(
        protocol: MonitoringProtocol, analyte: str, value: float, holds: bool) -> None:
    found = held(on_100_mg((result(analyte, value, on=day(100)),)), day(100), protocol)
    assert bool(found) is holds
    if holds:
        (hold,) = found
        assert (hold.dose_mg, hold.on, hold.rule_id) == (0, day(100), f"{protocol.id}/dosing/hold")
        assert f"flagged action on {day(100)} by " in hold.why and "withhold azathioprine" in hold.why
        assert hold.why.endswith("pending clinician review (acknowledging the flag releases the hold)")


def test_every_packaged_threshold_advising_to_withhold_is_marked_withhold() -> None:
    # the rule is data (`withhold = true`), never read from the action text; this only checks the files agree
    for protocol in (AIH, RHEUM, IBD):
        for t in protocol.thresholds:
            assert t.withhold is ("withhold" in t.action), f"{protocol.id}: {t.id}"


def titrating(results: tuple[Result, ...] = ()) -> Snapshot:
    """AIH induction at 60 kg, azathioprine 50 mg taken from week 3 (EASL15 [S]), the 100 mg step-up in week 5."""
    return snapshot(doses=(DoseEvent(AZA, 50, week_starts(3)),),
                    results=(result("BILI", 10, on=day(-1), id=90), *results))


def test_a_withhold_flag_holds_the_pending_step_up_and_says_why() -> None:
    snap = titrating((result("WBC", 3.0, on=day(21), id=1),))
    assert [(s.dose_mg, s.status) for s in aza_steps(snap, day(22))] == [(50, "done"), (100, "held")]
    (step_up,) = held(snap, day(22))
    assert step_up.why.endswith(
        f"held: leukopenia flagged action on {day(21)} by bsr17/wbc-below-3.5 (withhold azathioprine and discuss "
        "with the specialist team; BSR 2017): hold azathioprine pending clinician review (acknowledging the flag "
        "releases the hold)")
    assert held(snap, week_starts(5) + timedelta(days=14))  # the step's date passing does not release it


def test_acknowledging_a_withhold_flag_releases_the_hold() -> None:
    snap = titrating((result("WBC", 3.0, on=day(21), id=1),))
    (flag,) = [f for f in evaluate(snap, PROTOCOL, today=day(22)).flags if f.kind == "leukopenia"]
    assert held(replace(snap, acknowledged={"other@key": "action"}), day(22))
    assert held(replace(snap, acknowledged={flag.key: "watch"}), day(22))  # acknowledged at a lower severity
    assert held(replace(snap, acknowledged={flag.key: "action"}), day(22)) == []


def test_a_correction_that_resolves_the_withhold_flag_releases_the_hold() -> None:
    corrected = titrating((result("WBC", 4.5, on=day(21), id=1),))
    (flag,) = [f for f in evaluate(titrating((result("WBC", 3.0, on=day(21), id=1),)), PROTOCOL, today=day(22)).flags
               if f.kind == "leukopenia"]
    open_flag = OpenFlag(flag.key, flag.kind, flag.severity, flag.observed_on, 3.0, 1, 4.5, rule_id=flag.rule_id)
    plan = evaluate(replace(corrected, open_flags=(open_flag,)), PROTOCOL, today=day(22))
    assert [r.key for r in plan.resolved] == [flag.key]
    assert [s.status for s in plan.dose_steps if s.drug == AZA] == ["done", "upcoming"]


def test_an_open_withhold_flag_past_the_look_back_still_holds_and_one_of_another_rule_does_not() -> None:
    late = day(21 + PROTOCOL.flag_lookback_days + 10)
    still_open = OpenFlag(f"leukopenia@WBC@{day(21)}", "leukopenia", "action", day(21), 3.0, 1, 3.0,
                          rule_id="aih-azathioprine/bsr17/wbc-below-3.5")
    assert held(replace(titrating(), open_flags=(still_open,)), late)
    not_withholding = replace(still_open, rule_id="aih-azathioprine/relapse/tier-1")
    assert held(replace(titrating(), open_flags=(not_withholding,)), late) == []


@pytest.mark.parametrize(
    ("results", "kind"),
    [
        pytest.param((result("ALT", 80, on=day(300)),), "relapse_possible", id="RELAPSE-2TIER tier 1 (action)"),
        pytest.param(tuple(result("WBC", v, on=day(n), id=n) for v, n in ((7, 100), (6.3, 130), (5.6, 160),
                                                                          (5.0, 190))),
                     "trend_down", id="PCN trend (watch)"),
    ],
)
def test_a_flag_of_a_rule_that_does_not_withhold_does_not_hold(results: tuple[Result, ...], kind: str) -> None:
    snap = on_100_mg(results)
    today = max(r.observed_on for r in results)
    assert kind in {f.kind for f in evaluate(snap, PROTOCOL, today=today).flags}
    assert held(snap, today) == []


# --- 2. the bilirubin gate: a result is needed, and one since the last stop ------------------------------------

STOP = day(200)
RESTART = day(300)  # re-induction starts; the week-3 azathioprine step falls on day 314
#: The EASL 2015 azathioprine steps of a re-induction from RESTART (a restart after a stop).
TABLE = [(RESTART + timedelta(days=14), 50, "upcoming"), (RESTART + timedelta(days=28), 100, "upcoming")]


def restarting(results: tuple[Result, ...], *, stop_by: str = "dose") -> Snapshot:
    """Azathioprine 100 mg from START, stopped on STOP (a recorded 0, or the off-treatment phase), re-induced
    on RESTART."""
    doses = [DoseEvent(AZA, 100, START)]
    phases = [PhaseEpisode(Phase.MAINTENANCE, START)]
    if stop_by == "dose":
        doses.append(DoseEvent(AZA, 0, STOP))
    else:
        phases.append(PhaseEpisode(Phase.OFF_TREATMENT, STOP))
    phases.append(PhaseEpisode(Phase.REINDUCTION, RESTART))
    return snapshot(phase=Phase.MAINTENANCE, phases=tuple(phases), doses=tuple(doses), results=results)


@pytest.mark.parametrize(
    ("results", "is_held"),
    [
        pytest.param((), True, id="EASL15 no bilirubin result: held"),
        pytest.param((result("BILI", 10, on=STOP - timedelta(days=1)),), True,
                     id="a result from before the stop does not count"),
        pytest.param((result("BILI", 10, on=STOP),), False, id="a result on the stop day counts"),
        pytest.param((result("BILI", 99.9, on=RESTART),), False, id="EASL15 BILI<100 just below: may restart"),
        pytest.param((result("BILI", 100, on=RESTART),), True, id="EASL15 BILI<100 at: held"),
        pytest.param((result("BILI", 100.1, on=RESTART),), True, id="EASL15 BILI<100 just above: held"),
        pytest.param((result("BILI", 150, on=RESTART, id=1), result("BILI", 80, on=RESTART + timedelta(days=7), id=2)),
                     False, id="the latest result decides"),
    ],
)
@pytest.mark.parametrize("stop_by", ["dose", "phase"])
def test_every_restart_after_a_stop_passes_the_bilirubin_gate(results: tuple[Result, ...], is_held: bool,
                                                               stop_by: str) -> None:
    today = RESTART + timedelta(days=10)
    steps = aza_steps(restarting(results, stop_by=stop_by), today)
    assert [(s.on, s.dose_mg, s.status) for s in steps] == [
        (on, mg, "held" if is_held else status) for on, mg, status in TABLE]


def test_without_a_bilirubin_result_the_first_start_is_held_as_bilirubin_needed() -> None:
    steps = aza_steps(snapshot(), day(14))
    assert {s.status for s in steps} == {"held"}
    assert steps[0].why.endswith("held: bilirubin (total) needed: no BILI result yet; azathioprine (re)starts only "
                                 "when BILI is below 100 umol/L (EASL 2015)")


def test_the_restart_hold_names_the_stop() -> None:
    (first, _) = aza_steps(restarting(()), RESTART)
    assert f"no BILI result since azathioprine was stopped on {STOP}" in first.why


@pytest.mark.parametrize(
    "snap",
    [
        pytest.param(on_100_mg(()), id="taking it (recorded): no gate"),
        pytest.param(snapshot(phase=Phase.MAINTENANCE), id="enrolled on it, dose not recorded: no gate"),
    ],
)
def test_the_gate_does_not_apply_while_azathioprine_is_given(snap: Snapshot) -> None:
    assert held(snap, day(30)) == []


# --- 3. re-induction: the steroid course repeats; azathioprine given continues at its dose -----------------------

def relapsing(*doses: DoseEvent, off_treatment: bool = False) -> Snapshot:
    phases = [PhaseEpisode(Phase.MAINTENANCE, START)]
    if off_treatment:
        phases.append(PhaseEpisode(Phase.OFF_TREATMENT, STOP))
    phases.append(PhaseEpisode(Phase.REINDUCTION, RESTART))
    return snapshot(phase=Phase.MAINTENANCE, phases=tuple(phases), doses=doses,
                    results=(result("BILI", 10, on=RESTART - timedelta(days=2)),))


@pytest.mark.parametrize(
    ("snap", "expected", "five_weeks_on"),
    [
        pytest.param(relapsing(DoseEvent(AZA, 125, START)), [(RESTART, 125, "done")], [125],
                     id="AASLD10 rec 31 on 125 mg: continues at 125 mg, no 50 or 100 mg step"),
        pytest.param(relapsing(DoseEvent(AZA, 150, START), DoseEvent(AZA, 125, day(250))), [(RESTART, 125, "done")],
                     [125], id="the latest recorded dose is the current one"),
        pytest.param(relapsing(DoseEvent(AZA, 125, START), DoseEvent(AZA, 0, STOP)), TABLE, [100],
                     id="stopped (recorded 0): restarts by the table"),
        pytest.param(relapsing(DoseEvent(AZA, 125, START), off_treatment=True), TABLE, [100],
                     id="stopped (off treatment): restarts by the table"),
        pytest.param(relapsing(), [], [], id="enrolled on it, no dose recorded: no step (the dose is unknown)"),
    ],
)
def test_reinduction_keeps_azathioprine_given_at_its_dose_and_restarts_the_table_only_after_a_stop(
        snap: Snapshot, expected: list[tuple[date, float, str]], five_weeks_on: list[float]) -> None:
    assert [(s.on, s.dose_mg, s.status) for s in aza_steps(snap, RESTART)] == expected
    assert [s.dose_mg for s in aza_steps(snap, RESTART + timedelta(days=35))] == five_weeks_on


def test_the_continued_dose_cites_aasld_2010_and_the_steroid_course_repeats_from_60_mg() -> None:
    snap = relapsing(DoseEvent(AZA, 125, START), DoseEvent("prednisolone", 5, day(250)))
    (aza,) = aza_steps(snap, RESTART)
    assert aza.rule_id == "aih-azathioprine/induction/easl-2015/azathioprine/continue"
    assert aza.why == (f"EASL 2015 induction, reinduction from {RESTART}: azathioprine was being given, so it "
                       "continues at 125 mg/day (the dose recorded); it restarts by the table only after a stop "
                       "(AASLD 2010)")
    pred = [(s.on, s.dose_mg) for s in evaluate(snap, PROTOCOL, today=RESTART).dose_steps if s.drug == "prednisolone"]
    assert pred[:2] == [(RESTART, 60), (RESTART + timedelta(days=7), 50)]


# --- 4. the 2 mg/kg maintenance target is for steroid-free maintenance ---------------------------------------

MAINTENANCE = day(90)
TARGET = "aih-azathioprine/dosing/maintenance-target"


def after_induction(*doses: DoseEvent) -> Snapshot:
    """Induction from START (the table plans prednisolone), maintenance from day 90, 50 kg: target 100 mg."""
    return snapshot(weight_kg=50, phases=(PhaseEpisode(Phase.INDUCTION, START), PhaseEpisode(Phase.MAINTENANCE,
                                                                                            MAINTENANCE)),
                    doses=doses, results=(result("BILI", 10, on=day(-1)),))


@pytest.mark.parametrize(
    ("snap", "target_on"),
    [
        pytest.param(after_induction(), None, id="ARTICLE25 the table's prednisolone has no end: no target"),
        pytest.param(after_induction(DoseEvent("prednisolone", 2.5, day(120))), None,
                     id="AASLD10 rec 31 prednisolone 2.5 mg recorded: no target"),
        pytest.param(after_induction(DoseEvent("prednisolone", 0, day(150))), day(150),
                     id="AASLD10 rec 31 prednisolone 0 recorded: the target from that day"),
        pytest.param(after_induction(DoseEvent("prednisolone", 0, day(60))), MAINTENANCE,
                     id="stopped before maintenance: the target from the phase start"),
        pytest.param(after_induction(DoseEvent("prednisolone", 0, day(150)), DoseEvent("prednisolone", 5, day(170))),
                     None, id="restarted after the stop: no target again"),
        pytest.param(snapshot(phase=Phase.MAINTENANCE, weight_kg=50), START,
                     id="enrolled in maintenance, no steroid recorded: the target from the phase start"),
    ],
)
def test_the_maintenance_target_waits_until_prednisolone_is_stopped(snap: Snapshot, target_on: date | None) -> None:
    today = day(200)
    found = [s for s in aza_steps(snap, today) if s.rule_id == TARGET]
    assert [(s.on, s.dose_mg) for s in found] == ([] if target_on is None else [(target_on, 100)])


def test_the_target_says_when_prednisolone_was_stopped() -> None:
    (target,) = aza_steps(after_induction(DoseEvent("prednisolone", 0, day(150))), day(150))
    assert f"maintenance, prednisolone stopped on {day(150)} (AASLD 2010)" in target.why


# --- 5. the prednisolone taper: the article's table, the WJG 2017 reading as a variant --------------------------

def in_force(protocol: MonitoringProtocol, n: int) -> float:
    """The prednisolone dose of the step in force on day n of induction (60 kg)."""
    found, _ = dose_steps(snapshot(), protocol, today=START - timedelta(days=1))
    return max((s for s in found if s.drug == "prednisolone" and s.on <= day(n)), key=lambda s: s.on).dose_mg


@pytest.mark.parametrize(
    ("n", "mg"),
    [
        pytest.param(41, 20, id="EASL15 week 6 last day: 20"),
        pytest.param(42, 15, id="ARTICLE25 week 7 first day: 15"),
        pytest.param(55, 15, id="ARTICLE25 week 8 last day: 15"),
        pytest.param(56, 12.5, id="ARTICLE25 week 9 first day: 12.5"),
        pytest.param(69, 12.5, id="ARTICLE25 week 10 last day: 12.5"),
        pytest.param(70, 10, id="ARTICLE25 week 11 (after week 10) first day: 10"),
        pytest.param(400, 10, id="ARTICLE25 > week 10: 10"),
    ],
)
def test_the_default_taper_is_the_source_articles_table(n: int, mg: float) -> None:
    assert in_force(PROTOCOL, n) == mg




@pytest.mark.parametrize(
    ("n", "mg"),
    [
        pytest.param(42, 15, id="WJG17 week 7: 15"),
        pytest.param(48, 15, id="WJG17 week 7 last day: 15"),
        pytest.param(49, 12.5, id="WJG17 week 8 first day: 12.5"),
        pytest.param(62, 12.5, id="WJG17 week 9 last day: 12.5"),
        pytest.param(63, 10, id="WJG17 week 10 first day: 10"),
    ],
)
def test_a_site_chooses_the_wjg_2017_taper_by_naming_its_variant(config: Path, n: int, mg: float) -> None:
    edit(config, 'variant = "source-article"', 'variant = "wjg-2017"')
    protocol = Library(config).get("aih-azathioprine")
    assert in_force(protocol, n) == mg
    assert protocol.induction is not None
    assert {s.source for s in protocol.induction.steps if s.from_week >= 7} == {"WJG17"}


BROKEN = [
    pytest.param('variant = "source-article"', 'variant = "article"', "induction.variant",
                 "unknown variant 'article'; known: source-article, wjg-2017", id="an unknown variant"),
    pytest.param('variant = "source-article"', "", "induction.variant",
                 "name the variant this protocol uses: one of source-article, wjg-2017", id="variants but none named"),
    pytest.param('{ drug = "azathioprine", from_week = 3',
                 '{ drug = "prednisolone", from_week = 7, dose_mg = 15, source = "EASL15" },\n'
                 '  { drug = "azathioprine", from_week = 3', "induction.variants.source-article.steps[0]",
                 "prednisolone week 7 is already given by induction.steps[6]", id="a week given twice"),
    pytest.param('source = "ARTICLE25"\nsteps', 'source = "ARTICLE"\nsteps', "induction.variants.source-article.source",
                 "unknown source tag 'ARTICLE'", id="a variant citing an unknown source"),
    pytest.param('continue_if_given = ["azathioprine"]', 'continue_if_given = ["azathioprin"]',
                 "induction.continue_if_given", "unknown drug 'azathioprin'", id="continue_if_given: an unknown drug"),
    pytest.param('continue_source = "AASLD10"', 'continue_source = "AASLD"', "induction.continue_source",
                 "unknown source tag 'AASLD'", id="continue_if_given without a known source"),
    pytest.param('maintenance_after_stopping = ["prednisolone"]', 'maintenance_after_stopping = ["prednisone"]',
                 "dosing.maintenance_after_stopping", "unknown drug 'prednisone'",
                 id="maintenance_after_stopping: an unknown drug"),
    pytest.param("withhold = true ", 'withhold = "sometimes" ', "thresholds[0].withhold",
                 "Input should be a valid boolean", id="withhold that is not true or false"),
]


@pytest.mark.parametrize(("old", "new", "key", "reason"), BROKEN)
def test_the_loader_rejects_a_broken_dose_rule_naming_the_file_and_key(config: Path, old: str, new: str, key: str,
                                                                     reason: str) -> None:
    path = edit(config, old, new)
    message = rejection(config)
    assert message.startswith(f"aih-azathioprine.toml: {key}: "), message
    assert reason in message
    assert message.endswith(f"(fix it in {path})")
