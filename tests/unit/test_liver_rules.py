"""Liver, haemoglobin and kidney rules added for the clinical-safety issue ("the danger is in how rules
combine"): the CTCAE grade 2 action tier, eGFR < 60 restarting the safety clock, the AIH induction nadir,
the grading baseline of the current exposure, and the VOD/NRH pattern. Every row cites its source
(CLINICAL.md §2.2, §3.2, §4.1, §4.3, §4.5, §4.7, §9.1). Fallback limits (config/analytes.toml, §9.3):
ALT/AST ULN 40 U/L, bilirubin ULN 21 umol/L, ALP ULN 130 U/L, platelets LLN 150 × 10^9/L.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from monitor.domain.exposure import exposure
from monitor.domain.items import Flag
from monitor.domain.plan import evaluate
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import DoseEvent, PhaseEpisode, Result, Snapshot
from monitor.domain.thresholds import Baselines, breaches, impairment_restarts, reference_for
from monitor.protocols import packaged_library
from tests.unit.builders import CATALOG, PROTOCOL, START, day, on_azathioprine, result, series, snapshot
from tests.unit.config_files import PROFILE_FILE, edit, rejection

AIH = PROTOCOL
IBD = packaged_library().get("ibd-azathioprine")
RHEUM = packaged_library().get("rheum-azathioprine")
PROTOCOLS = {p.id: p for p in (AIH, IBD, RHEUM)}
EGFR_ID = {AIH.id: "bsr17/egfr-below-60", IBD.id: "sps-gastro/egfr-below-60", RHEUM.id: "bsr17/egfr-below-60"}


def kinds(flags: tuple[Flag, ...] | list[Flag], *wanted: str) -> list[Flag]:
    return [f for f in flags if f.kind in wanted]


# --- the action tier below CTCAE grade 3 (CLINICAL.md §4.5 [V] cut points, §4.7 tiers) ------------------

def _boundaries() -> list[ParameterSet]:
    """(protocol, threshold id, value, breaches?) at, just above and just below each new cut."""
    cuts = [("ctcae5-g2/bilirubin-above-1.5-uln", 31.5, "above", "CTCAE5 G2 BILI>1.5xULN(31.5)"),
            ("ctcae5-g2/alp-above-2.5-uln", 325, "above", "CTCAE5 G2 ALP>2.5xULN(325)"),
            ("ctcae5-g2/haemoglobin-below-100", 100, "below", "CTCAE5 G2 HGB<100"),
            (None, 60, "below", "eGFR<60")]
    rows: list[ParameterSet] = []
    for protocol in PROTOCOLS:
        for threshold_id, cut, direction, name in cuts:
            tid = threshold_id or EGFR_ID[protocol]
            source = "BSR17" if tid.startswith("bsr17") else "SPS" if tid.startswith("sps") else ""
            label = f"{protocol.split('-')[0]} {source} {name}".replace("  ", " ")
            rows += [pytest.param(protocol, tid, cut, False, id=f"{label} at"),
                     pytest.param(protocol, tid, cut + 0.1, direction == "above", id=f"{label} just above"),
                     pytest.param(protocol, tid, cut - 0.1, direction == "below", id=f"{label} just below")]
    return rows


BOUNDARIES = _boundaries()


@pytest.mark.parametrize(("protocol_id", "threshold_id", "value", "expected"), BOUNDARIES)
def test_the_action_tier_breaches_only_strictly_past_its_cut(protocol_id: str, threshold_id: str, value: float,
                                                              expected: bool) -> None:
    protocol = PROTOCOLS[protocol_id]
    [threshold] = [t for t in protocol.thresholds if t.id == threshold_id]
    r = result(threshold.analyte, value)
    assert (breaches(r, threshold, reference_for(r, protocol)) is not None) is expected


@pytest.mark.parametrize("protocol", [IBD, RHEUM], ids=["IBD", "rheumatology"])
def test_every_action_tier_and_egfr_threshold_of_the_other_protocols_has_boundary_rows(
        protocol: MonitoringProtocol) -> None:
    new = {t.id for t in protocol.thresholds if t.source == "CTCAE5-G2" or t.analyte == "EGFR"}
    assert new == {p.values[1] for p in BOUNDARIES if p.values[0] == protocol.id}


@pytest.mark.parametrize(("protocol", "analyte", "value", "kind", "rule"), [
    pytest.param(IBD, "BILI", 60, "bilirubin_rise", "ctcae5-g2/bilirubin-above-1.5-uln", id="IBD BILI 60: jaundice"),
    pytest.param(RHEUM, "BILI", 60, "bilirubin_rise", "ctcae5-g2/bilirubin-above-1.5-uln", id="rheum BILI 60"),
    pytest.param(RHEUM, "ALP", 400, "alp_rise", "ctcae5-g2/alp-above-2.5-uln", id="rheum ALP 400: cholestasis"),
    pytest.param(IBD, "HGB", 90, "anemia", "ctcae5-g2/haemoglobin-below-100", id="IBD HGB 90: anaemia"),
    pytest.param(AIH, "EGFR", 45, "renal_impairment", "bsr17/egfr-below-60", id="AIH BSR17 eGFR 45"),
])
def test_a_ctcae_grade_2_is_an_action_flag_naming_its_tier(protocol: MonitoringProtocol, analyte: str, value: float,
                                                           kind: str, rule: str) -> None:
    snap = snapshot(phase=Phase.INDUCTION, doses=(DoseEvent("azathioprine", 100, START),),
                    results=(result(analyte, value, on=day(30)),))
    [flag] = kinds(evaluate(snap, protocol, today=day(30)).flags, kind)
    assert (flag.severity, flag.rule_id) == ("action", f"{protocol.id}/{rule}")
    [threshold] = [t for t in protocol.thresholds if t.id == rule]
    assert flag.why.endswith(f"({protocol.cite(threshold.source)})")


def test_grade_3_stays_critical_over_the_action_tier() -> None:
    snap = snapshot(phase=Phase.INDUCTION, doses=(DoseEvent("azathioprine", 100, START),),
                    results=(result("BILI", 63.1, on=day(30)),))  # > 3 × ULN 21: CTCAE5 G3 [V]
    [flag] = kinds(evaluate(snap, IBD, today=day(30)).flags, "bilirubin_rise")
    assert (flag.severity, flag.rule_id) == ("critical", "ibd-azathioprine/ctcae-5.0/BILI/grade-3")


def test_an_action_anaemia_asks_for_a_repeat_count_within_a_week() -> None:
    # protocol [tightening] kinds include anemia since this issue (CLINICAL.md §4.7: action -> repeat <= 1 week)
    p = evaluate(on_azathioprine(results=(result("HGB", 95, on=day(30)),)), AIH, today=day(30))
    assert [(d.due_on, d.status) for d in p.draws if d.rule_id.endswith("/tightening/action")] == [(day(37), "due")]


# --- eGFR: lab-reported, the LOINC codes of CLINICAL.md §9.1 ----------------------------------------------

@pytest.mark.parametrize("code", ["98979-8", "62238-1", "33914-3"], ids=["CKD-EPI 2021", "CKD-EPI", "MDRD"])
def test_every_egfr_code_is_the_egfr_analyte(code: str) -> None:
    analyte = CATALOG.analyte_for(code)
    assert analyte is not None and (analyte.key, analyte.panel) == ("EGFR", "RENAL")
    assert CATALOG.ignored_reason(code) is None


@pytest.mark.parametrize("unit", ["mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min/1.73 m2", "ml/min/1.73m^2", "mL/min"])
def test_egfr_units_labs_send_are_the_canonical_unit(unit: str) -> None:
    assert CATALOG.to_canonical(CATALOG.analytes["EGFR"], 55, unit) == 55


# --- renal impairment restarts the drug-safety clock (CLINICAL.md §3.2) -------------------------------------

def test_only_the_onset_of_an_egfr_under_60_restarts_the_clock() -> None:
    snap = on_azathioprine(results=series("EGFR", [70, 55, 50, 65, 52], days=[100, 200, 210, 300, 400]))
    assert [d for d, _ in impairment_restarts(snap, AIH)] == [day(200), day(400)]
    assert impairment_restarts(snap, AIH)[0][1] == f"renal impairment: EGFR 55 mL/min/{{1.73_m2}} on {day(200)}"


@pytest.mark.parametrize(("protocol", "stage", "gap"), [
    pytest.param(AIH, "titration-weekly", 7, id="conservative-union: weekly from day 0"),
    pytest.param(RHEUM, "bsr-2-weekly", 14, id="bsr-2017: 2-weekly from day 0"),
    pytest.param(IBD, "sps-initial", 14, id="bsg-sps: day 14 from day 0"),
])
def test_an_egfr_under_60_restarts_each_safety_profile_at_day_0(protocol: MonitoringProtocol, stage: str,
                                                                gap: int) -> None:
    snap = on_azathioprine(results=(result("EGFR", 55, on=day(400)),))
    draws = [d for d in evaluate(snap, protocol, today=day(400)).draws if d.panel == "CBC" and d.due_on > day(400)]
    assert (draws[0].due_on, draws[0].rule_id.rsplit("/", 1)[1]) == (day(400 + gap), stage)
    assert "renal impairment: EGFR 55" in draws[0].why


def test_renal_impairment_before_azathioprine_starts_restarts_nothing() -> None:
    snap = snapshot(phase=Phase.INDUCTION, results=(result("EGFR", 50, on=START - timedelta(days=5)),))
    draws = evaluate(snap, IBD, today=day(1)).draws
    # the ordinary day-14 draw (and the baseline count before the first dose, SPS: not a restart)
    assert [d.due_on for d in draws if d.panel == "CBC" and "/safety/" in d.rule_id] == [day(14)]


# --- AIH (re)induction: rises from the patient's nadir (CLINICAL.md §2.2, §4.3; multipliers §4.5) --------------

AZA = 14  # day 0 of week 3: the EASL 2015 azathioprine start


def induction(analyte: str, values: dict[int, float], *, phase: Phase = Phase.INDUCTION) -> Snapshot:
    """An AIH patient in (re)induction from START with these results (day -> value) of one analyte, and
    (for another analyte) a bilirubin of 20 at diagnosis: azathioprine starts only with a bilirubin below
    the gate (EASL15 [S], CLINICAL.md §2.2), so without one it would be held and never given."""
    results = tuple(result(analyte, v, on=day(n), id=i + 1) for i, (n, v) in enumerate(sorted(values.items())))
    if analyte != "BILI":
        results += (result("BILI", 20, on=day(0), id=99),)
    return snapshot(phase=phase, results=results)


#: (analyte, nadir on day 21, value on day 28, flagged?) - diagnosis values 800 / 300 U/L, 150 umol/L on day 0.
NADIR_ROWS = [
    pytest.param("ALT", 120, 360, False, id="CTCAE5[V] ALT 3 x nadir 120 exactly: none"),
    pytest.param("ALT", 120, 360.1, True, id="CTCAE5[V] ALT just over 3 x nadir"),
    pytest.param("ALT", 120, 359.9, False, id="CTCAE5[V] ALT just under 3 x nadir (nadir above the BSR cut)"),
    pytest.param("ALT", 100, 100.1, True, id="BSR17[V] ALT above 100 after falling to 100"),
    pytest.param("ALT", 100, 100, False, id="BSR17[V] ALT at 100 after falling to 100: none"),
    pytest.param("ALT", 100.1, 150, False, id="BSR17[V] ALT 150, never fell to 100, < 3 x nadir: none"),
    pytest.param("ALT", 10, 40, False, id="ALT 4 x a normal nadir but at ULN: none"),
    pytest.param("ALT", 10, 40.1, True, id="ALT 4 x a normal nadir just above ULN"),
    pytest.param("AST", 120, 360.1, True, id="CTCAE5[V] AST just over 3 x nadir"),
    pytest.param("AST", 90, 100.1, True, id="BSR17[V] AST above 100 after falling to 90"),
    pytest.param("BILI", 30, 45, False, id="CTCAE5[V] BILI 1.5 x nadir exactly: none"),
    pytest.param("BILI", 30, 45.1, True, id="CTCAE5[V] BILI rising again, just over 1.5 x nadir"),
    pytest.param("BILI", 30, 44.9, False, id="CTCAE5[V] BILI just under 1.5 x nadir"),
    pytest.param("BILI", 10, 21, False, id="BILI over 1.5 x a normal nadir, at ULN: none"),
    pytest.param("BILI", 10, 21.1, True, id="BILI over 1.5 x a normal nadir, just above ULN"),
]
DIAGNOSIS = {"ALT": 800, "AST": 300, "BILI": 150}


@pytest.mark.parametrize(("analyte", "nadir", "value", "flagged"), NADIR_ROWS)
def test_an_induction_rise_is_judged_against_the_nadir_since_treatment_started(
        analyte: str, nadir: float, value: float, flagged: bool) -> None:
    snap = induction(analyte, {0: DIAGNOSIS[analyte], 21: nadir, 28: value})
    found = kinds(evaluate(snap, AIH, today=day(28)).flags, "rise_from_nadir")
    assert bool(found) is flagged
    for f in found:
        assert (f.severity, f.rule_id, f.observed_on) == ("action", f"aih-azathioprine/nadir/{analyte}", day(28))
        assert f"{nadir:g} " in f.why and f"on {day(21)} since induction started on {START}" in f.why


@pytest.mark.parametrize(("snap", "today"), [
    pytest.param(induction("ALT", {0: 800, 3: 60, 10: 700}), 10, id="before azathioprine (EASL15: the disease)"),
    pytest.param(induction("ALT", {0: 80, 30: 20, 40: 700}, phase=Phase.MAINTENANCE), 40,
                 id="maintenance: graded against the exposure baseline instead"),
])
def test_no_nadir_rule_before_azathioprine_or_outside_induction(snap: Snapshot, today: int) -> None:
    assert kinds(evaluate(snap, AIH, today=day(today)).flags, "rise_from_nadir") == []


def test_re_induction_is_judged_against_its_own_nadir() -> None:
    snap = induction("ALT", {0: 800, 21: 60, 28: 400}, phase=Phase.REINDUCTION)
    [flag] = kinds(evaluate(snap, AIH, today=day(28)).flags, "rise_from_nadir")
    assert f"since reinduction started on {START}" in flag.why


@pytest.mark.parametrize(("nadir", "value", "critical"), [
    pytest.param(60, 300, False, id="CTCAE5[V] ALT 5 x an abnormal nadir exactly: grade 2"),
    pytest.param(60, 300.1, True, id="CTCAE5[V] ALT just over 5 x an abnormal nadir: grade 3"),
    pytest.param(30, 200.1, True, id="CTCAE5[V] a normal nadir: ULN cuts, ALT > 5 x ULN 40 grade 3"),
    pytest.param(30, 200, False, id="CTCAE5[V] a normal nadir: ALT at 5 x ULN grade 2"),
])
def test_in_induction_the_nadir_is_the_ctcae_baseline(nadir: float, value: float, critical: bool) -> None:
    snap = induction("ALT", {0: 800, 21: nadir, 28: value})
    flags = kinds(evaluate(snap, AIH, today=day(28)).flags, "transaminase_rise")
    found = [f for f in flags if f.severity == "critical"]
    assert bool(found) is critical
    for f in found:
        assert f"ALT {nadir:g} U/L on {day(21)} (the nadir since induction started on {START})" in f.why


# --- the grading baseline: the current exposure, not the diagnosis (CLINICAL.md §4.5 "baseline") ------------

def ibd(*results: Result, doses: tuple[DoseEvent, ...] = ()) -> Snapshot:
    """An IBD patient on azathioprine 2 mg/kg from START (the plan's week-1 step), with these results."""
    return snapshot(phase=Phase.INDUCTION, results=results, doses=doses)


def baseline_of(snap: Snapshot, protocol: MonitoringProtocol, r: Result) -> tuple[float, date, str] | None:
    found = Baselines(snap, protocol, exposure(snap, protocol)).of(r)
    return None if found is None else (found.result.value, found.result.observed_on, found.basis)


LATER = result("BILI", 100, on=day(30), id=9)
BEFORE = f"before azathioprine started on {START}"


@pytest.mark.parametrize(("results", "doses", "expected"), [
    pytest.param((result("BILI", 40, on=day(-10), id=1),), (), (40, day(-10), BEFORE),
                 id="the last value before the exposure began"),
    pytest.param((result("BILI", 40, on=day(-90), id=1),), (), (40, day(-90), BEFORE),
                 id="90 days before the start still counts"),
    pytest.param((result("BILI", 40, on=day(-91), id=1),), (), None, id="91 days before: none, graded against ULN"),
    pytest.param((result("BILI", 40, on=day(-10), id=1), result("BILI", 15, on=day(14), id=2)), (),
                 (15, day(14), f"the last normal-range value since azathioprine started on {START}"),
                 id="a normal value since the start wins over an abnormal one before"),
    pytest.param((result("BILI", 40, on=day(-10), id=1), result("BILI", 30, on=day(14), id=2)), (),
                 (40, day(-10), BEFORE),
                 id="an abnormal value since the start is not a baseline"),
    pytest.param((result("BILI", 40, on=day(-10), id=1), result("BILI", 15, on=day(14), id=2)),
                 (DoseEvent("azathioprine", 150, START), DoseEvent("azathioprine", 0, day(20)),
                  DoseEvent("azathioprine", 150, day(25))),
                 (15, day(14), f"the last value before azathioprine started on {day(25)}"),
                 id="a restart after a hold is a new exposure, with its own baseline"),
])
def test_the_baseline_is_from_the_current_exposure(results: tuple[Result, ...], doses: tuple[DoseEvent, ...],
                                                   expected: tuple[float, date, str] | None) -> None:
    found = baseline_of(ibd(*results, LATER, doses=doses), IBD, LATER)
    if expected is None:
        assert found is None
        return
    value, on, basis = expected
    assert found is not None and (found[0], found[1]) == (value, on) and found[2].endswith(basis)


def test_after_a_hold_the_baseline_is_the_last_value_before_the_restart() -> None:
    doses = (DoseEvent("azathioprine", 150, START), DoseEvent("azathioprine", 0, day(20)),
             DoseEvent("azathioprine", 150, day(60)))
    snap = ibd(result("BILI", 50, on=day(45), id=1), result("BILI", 160, on=day(70), id=2), doses=doses)
    assert baseline_of(snap, IBD, snap.results[1]) == (50, day(45), f"the last value before azathioprine started "
                                                                     f"on {day(60)}")


def test_enrolled_already_on_azathioprine_no_on_drug_value_is_a_pre_treatment_baseline() -> None:
    on_drug = on_azathioprine(results=(result("BILI", 150, on=START, id=1), result("BILI", 120, on=day(30), id=2)))
    assert baseline_of(on_drug, AIH, on_drug.results[1]) is None  # graded against ULN: 120 > 3 x 21
    flags = kinds(evaluate(on_drug, AIH, today=day(30)).flags, "bilirubin_rise")
    # both: the enrollment-day value was taken on the drug, so it is graded too (no longer its own baseline)
    assert [(f.result_id, f.severity) for f in flags] == [(1, "critical"), (2, "critical")]
    assert all("(no baseline from before this exposure)" in f.why for f in flags)
    normal = on_azathioprine(results=(result("BILI", 12, on=START, id=1), result("BILI", 120, on=day(30), id=2)))
    assert baseline_of(normal, AIH, normal.results[1]) == (
        12, START, "the last normal-range value since azathioprine started (before enrollment)")


def test_the_diagnosis_value_no_longer_hides_jaundice_in_maintenance() -> None:
    # AIH: diagnosis bilirubin 150 (day -7), induction from START, azathioprine from day 14, normal since day 60,
    # maintenance from day 90; four years later bilirubin 120 and ALP 600 (CLINICAL.md §4.5).
    phases = (PhaseEpisode(Phase.BASELINE, day(-7)), PhaseEpisode(Phase.INDUCTION, START),
              PhaseEpisode(Phase.MAINTENANCE, day(90)))
    late = day(1500)
    results = (result("BILI", 150, on=day(-7), id=1), result("BILI", 60, on=day(14), id=2),
               result("BILI", 12, on=day(60), id=3), result("ALP", 90, on=day(60), id=4),
               result("BILI", 120, on=late, id=5), result("ALP", 600, on=late, id=6))
    snap = Snapshot(enrollment_id=1, start_on=day(-7), phases=phases, results=results,
                    doses=(DoseEvent("azathioprine", 50, day(14)), DoseEvent("azathioprine", 100, day(28))),
                    genotypes=snapshot().genotypes, weights=snapshot().weights)
    flags = evaluate(snap, AIH, today=late).flags
    [bili] = kinds(flags, "bilirubin_rise")
    assert bili.severity == "critical"
    assert (f"baseline BILI 12 umol/L on {day(60)} (the last normal-range value since azathioprine started on "
            f"{day(14)})") in bili.why
    [alp] = kinds(flags, "alp_rise")
    assert (alp.severity, alp.rule_id) == ("action", "aih-azathioprine/ctcae5-g2/alp-above-2.5-uln")


# --- VOD / NRH: raised bilirubin or ALP with low platelets (CLINICAL.md §4.3 [M]; DESIGN pattern) -----------

@pytest.mark.parametrize(("liver", "platelets", "flagged"), [
    pytest.param(("ALP", 200, 10), (140, 24), True, id="ALP > ULN, platelets < 150 14 days later"),
    pytest.param(("ALP", 200, 10), (140, 25), False, id="15 days apart: none"),
    pytest.param(("ALP", 200, 24), (140, 10), True, id="either order"),
    pytest.param(("ALP", 200, 24), (150, 24), False, id="platelets at 150: none"),
    pytest.param(("ALP", 200, 24), (149.9, 24), True, id="platelets just under 150"),
    pytest.param(("ALP", 130, 24), (100, 24), False, id="ALP at ULN 130: none"),
    pytest.param(("ALP", 130.1, 24), (100, 24), True, id="ALP just above ULN"),
    pytest.param(("BILI", 21.1, 24), (100, 24), True, id="bilirubin just above ULN 21"),
    pytest.param(("BILI", 21, 24), (100, 24), False, id="bilirubin at ULN: none"),
])
def test_a_raised_alp_or_bilirubin_with_low_platelets_suggests_vod_or_nrh(
        liver: tuple[str, float, int], platelets: tuple[float, int], flagged: bool) -> None:
    analyte, value, on = liver
    snap = ibd(result(analyte, value, on=day(on), id=1), result("PLT", platelets[0], on=day(platelets[1]), id=2))
    found = kinds(evaluate(snap, IBD, today=day(30)).flags, "vod_nrh_suspicion")
    assert len(found) == int(flagged)
    for f in found:
        assert (f.severity, f.rule_id) == ("action", "ibd-azathioprine/patterns/vod-nrh-suspicion")
        assert f.observed_on == day(max(on, platelets[1])) and "veno-occlusive" in f.why


def test_a_pattern_met_on_one_day_is_one_flag_on_the_liver_result() -> None:
    snap = ibd(result("PLT", 100, on=day(20), id=1), result("ALP", 300, on=day(20), id=2))
    [flag] = kinds(evaluate(snap, IBD, today=day(20)).flags, "vod_nrh_suspicion")
    assert (flag.analyte, flag.result_id) == ("ALP", 2)
    assert flag.why.startswith(f"ALP 300 U/L on {day(20)}, PLT 100 10*9/L on {day(20)}, within 14 days: ")


@pytest.mark.parametrize(("snap", "flagged"), [
    pytest.param(snapshot(phase=Phase.INDUCTION, results=(result("ALP", 300, on=day(20), id=1),
                                                          result("PLT", 100, on=day(20), id=2))), False,
                 id="AIH induction: the nadir rules judge the liver"),
    pytest.param(on_azathioprine(results=(result("ALP", 300, on=day(20), id=1), result("PLT", 100, on=day(20), id=2))),
                 True, id="AIH maintenance"),
    pytest.param(on_azathioprine(doses=(DoseEvent("azathioprine", 0, day(10)),),
                                 results=(result("ALP", 300, on=day(20), id=1), result("PLT", 100, on=day(20), id=2))),
                 False, id="azathioprine held: not drug toxicity"),
])
def test_the_aih_pattern_applies_in_maintenance_phases_on_the_drug(snap: Snapshot, flagged: bool) -> None:
    assert bool(kinds(evaluate(snap, AIH, today=day(20)).flags, "vod_nrh_suspicion")) is flagged


# --- the loader refuses broken entries (monitor/protocols/, monitor/protocols/schema.py) ---------------------

BROKEN = [
    pytest.param('analyte = "BILI"\nphases = ["induction", "reinduction"]',
                 'analyte = "BILLI"\nphases = ["induction", "reinduction"]', "nadir_rises[2].analyte",
                 "unknown analyte 'BILLI'", id="a nadir rule on an unknown analyte"),
    pytest.param('analyte = "AST"\nphases = ["induction"', 'analyte = "ALT"\nphases = ["induction"',
                 "nadir_rises[1].analyte", "a second nadir rule for 'ALT'", id="two nadir rules for one analyte"),
    pytest.param("above_nadir_times = 1.5 ", "above_nadir_times = 1.0 ", "nadir_rises[2].above_nadir_times",
                 "greater than 1", id="a nadir rule that flags no rise"),
    pytest.param('source = "NADIR"', 'source = "NADIR2"', "nadir_rises[0].source", "unknown source tag 'NADIR2'",
                 id="a nadir rule citing an unknown source"),
    pytest.param('{ analytes = ["PLT"], below = 150 }', '{ analytes = ["PLT"], below = 150, above = 10 }',
                 "patterns[0].conditions[1]", "give exactly one of below, above, above_uln_times",
                 id="a pattern condition with two bounds"),
    pytest.param('analytes = ["BILI", "ALP"]', 'analytes = ["BILI", "ALKP"]', "patterns[0].conditions[0].analytes",
                 "unknown analyte 'ALKP'", id="a pattern on an unknown analyte"),
    pytest.param('kind = "vod_nrh_suspicion"', 'kind = "thrombocytopenia"', "patterns[0].kind",
                 "give the pattern its own", id="a pattern sharing a threshold's kind (its flags would merge)"),
    pytest.param('phases = ["maintenance", "withdrawal", "lifelong_maintenance"]',
                 'phases = ["maintenance", "withdrawl", "lifelong_maintenance"]',
                 "patterns[0].phases[1]", "Input should be", id="a pattern in an unknown phase"),
    pytest.param("restart_safety = true             # the onset", "restart_safty = true             # the onset",
                 "thresholds[12].restart_safty",
                 "Extra inputs are not permitted", id="a typo in restart_safety"),
]




@pytest.mark.parametrize(("old", "new", "key", "reason"), BROKEN)
def test_the_loader_rejects_a_broken_liver_rule_naming_the_file_and_key(
        config: Path, old: str, new: str, key: str, reason: str) -> None:
    path = edit(config, old, new)
    message = rejection(config)
    assert message.startswith(f"aih-azathioprine.toml: {key}: "), message
    assert reason in message and message.endswith(f"(fix it in {path})")


def test_a_safety_profile_without_the_impairment_restart_is_refused(config: Path) -> None:
    edit(config, "impairment = 0", "impairmnt = 0", PROFILE_FILE)
    message = rejection(config)
    assert message.startswith("conservative-union.toml: restarts.impairment: Field required"), message
