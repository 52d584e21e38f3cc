"""Dose courses that must not be proposed (the clinical-safety issue "Doses that should not be proposed").

Each scenario drives the real services (enrollment, dose records, lab CSV ingestion, the daily cycle,
acknowledgements) on named dates and asserts the dose steps a nurse would see. Every expected value
cites its rule: CLINICAL.md is ../shared/research/CLINICAL.md, the source article
../shared/research/SOURCE-ARTICLE.md, the protocols config/protocols/*.toml. Fallback upper limits
of normal (config/analytes.toml, CLINICAL.md §9.3): ALT 40 U/L, AST 40 U/L, IgG 16 g/L.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.domain.protocol import Phase
from tests.functional.scenario import Clinic, d, open_flags, proposals, steps

pytestmark = pytest.mark.usefixtures("db_url")
RHEUM = "rheum-azathioprine"

#: The source article's combination table (SOURCE-ARTICLE.md; CLINICAL.md §2.1, the default since the
#: article wins): prednisolone mg/day by week of induction for 60 kg.
ARTICLE_PREDNISOLONE = {1: 60, 2: 50, 3: 40, 4: 30, 5: 25, 6: 20, 7: 15, 8: 15, 9: 12.5, 10: 12.5, 11: 10, 12: 10}


@pytest.fixture
def clinic(engine: Engine) -> Clinic:
    return Clinic(engine)


def week(n: int, start: date) -> date:
    """Week N of a regimen starts 7 × (N - 1) days after the phase starts."""
    return start + timedelta(weeks=n - 1)


def aza_why(view: dict[str, Any]) -> str:
    return " | ".join(s["why"] for s in view["dose_steps"] if s["drug"] == "azathioprine")


def flag_id(clinic: Clinic, mrn: str, kind: str) -> int:
    [flag] = [f for f in clinic.flags(mrn, status="open") if f["kind"] == kind]
    return int(flag["id"])


def start_aih_induction(clinic: Clinic, mrn: str, *, weight_kg: float = 60) -> date:
    """Baseline bloods of active AIH on 2026-01-05, the first prednisolone dose on 2026-01-12 (induction
    begins that day by itself: protocol [phases] start_on_first_dose_of)."""
    clinic.enroll(mrn, start=d("2026-01-05"), weight_kg=weight_kg, phase=Phase.BASELINE)
    clinic.normal_labs(mrn, d("2026-01-05"), ALT=420, AST=380, IGG=28, BILI=30)
    clinic.record(mrn, d("2026-01-12"), doses={"prednisolone": 60})
    clinic.run(d("2026-01-12"))
    return d("2026-01-12")


# --- 1. An action-tier cytopenia whose rule says "withhold" holds the titration (AIH) -------------

def test_an_action_tier_leukopenia_during_aih_titration_holds_the_100_mg_step_until_acknowledged(
        clinic: Clinic) -> None:
    mrn = "W1001"
    start = start_aih_induction(clinic, mrn)
    # EASL 2015 [S] via the article (CLINICAL.md §2.1): azathioprine 50 mg from week 3 (01-26), 100 mg from week 5.
    clinic.normal_labs(mrn, week(3, start), ALT=150, AST=140, IGG=22)
    clinic.record(mrn, week(3, start), doses={"azathioprine": 50, "prednisolone": 40})
    clinic.run(week(3, start))
    assert steps(clinic.view(mrn, week(3, start))) == [("2026-01-26", 50, "done"), ("2026-02-09", 100, "upcoming")]

    # 2026-02-02 (week 4): WBC 3.0 < 3.5 and neutrophils 1.2 < 1.6: BSR 2017 `action`, whose action is
    # "withhold azathioprine and discuss" (CLINICAL.md §4.1 [V]); CTCAE v5 grades 1 and 2 only, so not critical.
    clinic.labs(mrn, week(4, start), WBC=3.0, NEUT=1.2, PLT=230)
    clinic.run(week(4, start))
    view = clinic.view(mrn, week(4, start))
    assert {(f["kind"], f["severity"]) for f in view["flags"]} >= {("leukopenia", "action"), ("neutropenia", "action")}
    # The pending step-up is held, with the why naming the flag, the rule, its source and how it is released.
    assert steps(view) == [("2026-01-26", 50, "done"), ("2026-02-09", 100, "held")]
    why = aza_why(view)
    assert "leukopenia flagged action on 2026-02-02" in why and "bsr17/wbc-below-3.5" in why
    assert "withhold azathioprine" in why and "BSR 2017" in why
    assert "acknowledging the flag releases the hold" in why
    stored = {(r[1], r[2].isoformat(), r[3], r[4]) for r in clinic.plan_rows()["dose_step"] if r[0] == mrn}
    assert ("azathioprine", "2026-02-09", 100, "held") in stored  # the daily cycle stored the hold

    # 2026-02-09: the step's date comes, nobody has reviewed the flags: still held, not due.
    clinic.run(week(5, start))
    assert ("2026-02-09", 100, "held") in steps(clinic.view(mrn, week(5, start)))

    # 2026-02-10: the clinician acknowledges the leukopenia; the neutropenia (its own withhold rule) still holds.
    clinic.ack(flag_id(clinic, mrn, "leukopenia"), d("2026-02-10"), "counts reviewed: continue 50 mg, repeat FBC")
    clinic.run(d("2026-02-10"))
    view = clinic.view(mrn, d("2026-02-10"))
    assert ("2026-02-09", 100, "held") in steps(view)
    assert "neutropenia flagged action on 2026-02-02 by bsr17/neutrophils-below-1.6" in aza_why(view)

    # Both acknowledged: the hold is released (in the stored plan too, at the next incremental run).
    clinic.ack(flag_id(clinic, mrn, "neutropenia"), d("2026-02-10"), "neutrophils reviewed")
    clinic.run(d("2026-02-10"))
    view = clinic.view(mrn, d("2026-02-10"))
    assert steps(view) == [("2026-01-26", 50, "done"), ("2026-02-09", 100, "due")]
    assert not [r for r in clinic.plan_rows()["dose_step"] if r[0] == mrn and r[4] == "held"]


# --- 2. Rheumatology: BSR withhold thresholds hold the FDA-label step-ups --------------------------

def test_rheumatology_titration_with_wbc_3_1_and_platelets_120_holds_every_step_up(clinic: Clinic) -> None:
    mrn = "H9001"
    clinic.enroll(mrn, start=d("2026-01-05"), protocol=RHEUM, weight_kg=70, phase=Phase.INDUCTION)
    clinic.normal_labs(mrn, d("2026-01-05"))
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 75})
    clinic.record(mrn, d("2026-02-16"), doses={"azathioprine": 100})
    clinic.run(d("2026-02-16"))
    # FDA label RA (CLINICAL.md §10 [V]) at 70 kg: 75 -> 100 (week 7) -> 150 (week 11) -> 175 mg (week 15).
    assert steps(clinic.view(mrn, d("2026-02-16"))) == [
        ("2026-02-16", 100, "done"), ("2026-03-16", 150, "upcoming"), ("2026-04-13", 175, "upcoming")]

    # 2026-03-02: WBC 3.1 < 3.5 and platelets 120 < 140: BSR 2017 "withhold and discuss" (§4.1 [V]).
    clinic.labs(mrn, d("2026-03-02"), WBC=3.1, NEUT=2.0, PLT=120)
    clinic.run(d("2026-03-02"))
    view = clinic.view(mrn, d("2026-03-02"))
    assert {(f["kind"], f["severity"]) for f in view["flags"]} >= {("leukopenia", "action"),
                                                                   ("thrombocytopenia", "action")}
    assert steps(view) == [("2026-02-16", 100, "done"), ("2026-03-16", 150, "held"), ("2026-04-13", 175, "held")]
    assert "withhold azathioprine" in aza_why(view) and "BSR 2017" in aza_why(view)
    # The week-11 date passes without review: the step-up stays held.
    clinic.run(d("2026-03-16"))
    assert ("2026-03-16", 150, "held") in steps(clinic.view(mrn, d("2026-03-16")))

    for kind in ("leukopenia", "thrombocytopenia"):
        clinic.ack(flag_id(clinic, mrn, kind), d("2026-03-17"), "repeat counts normal; continue titration")
    clinic.run(d("2026-03-17"))
    assert steps(clinic.view(mrn, d("2026-03-17"))) == [
        ("2026-02-16", 100, "done"), ("2026-03-16", 150, "due"), ("2026-04-13", 175, "upcoming")]


# --- 3. The bilirubin gate guards every (re)start after a stop -------------------------------------

def test_a_reinduction_restart_needs_a_bilirubin_result_since_the_stop_and_one_below_the_gate(
        clinic: Clinic) -> None:
    mrn = "B9001"
    clinic.enroll(mrn, start=d("2024-01-08"), weight_kg=60, phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 100})
    clinic.normal_labs(mrn, d("2026-01-05"))  # bilirubin 10 umol/L, months before the stop
    clinic.phase(mrn, Phase.WITHDRAWAL, d("2026-01-12"), "withdrawal attempt agreed")
    clinic.phase(mrn, Phase.OFF_TREATMENT, d("2026-04-13"), "taper completed")
    clinic.record(mrn, d("2026-04-13"), doses={"azathioprine": 0})
    clinic.run(d("2026-04-13"))

    # Relapse: bloods without a bilirubin; the clinician re-induces on 2026-10-07.
    clinic.labs(mrn, d("2026-10-05"), ALT=150, AST=130, IGG=21, WBC=6.0, NEUT=3.5, PLT=240)
    clinic.phase(mrn, Phase.REINDUCTION, d("2026-10-07"), "relapse: re-treat")
    clinic.record(mrn, d("2026-10-07"), doses={"prednisolone": 60})
    clinic.run(d("2026-10-07"))
    view = clinic.view(mrn, d("2026-10-07"))
    # Azathioprine was stopped: it restarts by the table (50 mg week 3, 100 mg week 5), and only when
    # bilirubin is below 100 umol/L (EASL 2015 [S], CLINICAL.md §2.2) - no result since the stop: held.
    assert steps(view) == [("2026-10-21", 50, "held"), ("2026-11-04", 100, "held")]
    assert "bilirubin (total) needed: no BILI result since azathioprine was stopped on 2026-04-13" in aza_why(view)
    assert "held" not in [status for _, _, status in steps(view, "prednisolone")]  # steroids go on

    # 2026-10-14: bilirubin 120 >= 100: still held, now by the gate, with its action flag.
    clinic.labs(mrn, d("2026-10-14"), BILI=120, ALT=110, AST=100)
    clinic.run(d("2026-10-14"))
    view = clinic.view(mrn, d("2026-10-14"))
    assert steps(view) == [("2026-10-21", 50, "held"), ("2026-11-04", 100, "held")]
    assert "BILI 120 umol/L on 2026-10-14 is not below 100" in aza_why(view)
    assert [(f["severity"], f["value"]) for f in open_flags(view, "bilirubin_gate")] == [("action", 120)]

    # 2026-10-21: bilirubin 60: the week-3 restart is due.
    clinic.labs(mrn, d("2026-10-21"), BILI=60, ALT=80, AST=75)
    clinic.run(d("2026-10-21"))
    assert steps(clinic.view(mrn, d("2026-10-21"))) == [("2026-10-21", 50, "due"), ("2026-11-04", 100, "upcoming")]


# --- 4. A relapse on 125 mg: the steroid course repeats, azathioprine continues --------------------

def test_a_relapse_on_125_mg_repeats_the_prednisolone_course_and_keeps_azathioprine_at_125_mg(
        clinic: Clinic) -> None:
    mrn = "K9001"
    clinic.enroll(mrn, start=d("2024-01-08"), weight_kg=70, phase=Phase.MAINTENANCE, on=d("2026-01-05"))
    clinic.record(mrn, d("2026-01-05"), doses={"azathioprine": 125})
    clinic.normal_labs(mrn, d("2026-01-05"))
    clinic.run(d("2026-01-05"))
    # Possible relapse (ALT 90 > ULN) confirmed on the repeat 3 weeks later (CLINICAL.md §2.7): re-induction proposed.
    clinic.normal_labs(mrn, d("2026-03-02"), ALT=90, AST=80)
    clinic.normal_labs(mrn, d("2026-03-23"), ALT=95, AST=85)
    clinic.run(d("2026-03-23"))
    assert proposals(clinic.view(mrn, d("2026-03-23"))) == ["reinduction"]

    clinic.phase(mrn, Phase.REINDUCTION, d("2026-03-25"), "relapse on azathioprine 125 mg: re-treat")
    clinic.record(mrn, d("2026-03-25"), doses={"prednisolone": 60})
    clinic.run(d("2026-03-25"))
    start = d("2026-03-25")
    # AASLD 2010 rec. 31 [V] (CLINICAL.md §2.8): re-treatment repeats the steroid course (the article's table
    # from 60 mg) ...
    view = clinic.view(mrn, start)
    assert steps(view, "prednisolone")[:3] == [("2026-03-25", 60, "done"), ("2026-04-01", 50, "upcoming"),
                                               ("2026-04-08", 40, "upcoming")]
    # ... while azathioprine, never stopped, continues at 125 mg: no 50 mg (week 3) or 100 mg (week 5) proposal.
    assert steps(view) == [("2026-03-25", 125, "done")]
    assert "continues at 125 mg/day" in aza_why(view) and "AASLD 2010" in aza_why(view)
    for n in (3, 5, 8):
        clinic.normal_labs(mrn, week(n, start), ALT=60, AST=55)
        clinic.run(week(n, start))
        assert steps(clinic.view(mrn, week(n, start))) == [("2026-03-25", 125, "done")], n


# --- 5. The 2 mg/kg target is for steroid-free maintenance -------------------------------------------

def test_the_automatic_switch_to_maintenance_proposes_no_2_mg_per_kg_target_until_prednisolone_stops(
        clinic: Clinic) -> None:
    mrn = "S9001"
    start = start_aih_induction(clinic, mrn, weight_kg=75)
    falling = {2: (250, 230, 25), 3: (150, 140, 22), 4: (90, 85, 19), 5: (60, 55, 17.5), 6: (50, 47, 17),
               7: (45, 42, 16.5)}
    for n, (alt, ast, igg) in falling.items():
        clinic.normal_labs(mrn, week(n, start), ALT=alt, AST=ast, IGG=igg)
        doses = {"prednisolone": ARTICLE_PREDNISOLONE[n]}
        if n == 3:
            doses["azathioprine"] = 50
        if n == 5:
            doses["azathioprine"] = 100
        clinic.record(mrn, week(n, start), doses=doses)
        clinic.run(week(n, start))
    # 2026-03-02 (week 8): complete biochemical response -> maintenance by itself (IAIHG 2022), on 15 mg prednisolone.
    clinic.normal_labs(mrn, week(8, start), ALT=35, AST=33, IGG=15)
    clinic.run(week(8, start))
    view = clinic.view(mrn, week(8, start))
    assert (view["phase"], view["phase_since"]) == ("maintenance", "2026-03-02")
    # The article (SOURCE-ARTICLE.md): "2 mg/kg/day for steroid-free maintenance"; AASLD10 rec. 31 [V]: after
    # steroid withdrawal (CLINICAL.md §2.4). Prednisolone is still given: no azathioprine target yet.
    assert steps(view) == []
    for day, mg in (("2026-03-09", 12.5), ("2026-03-23", 10), ("2026-05-04", 5)):
        clinic.record(mrn, d(day), doses={"prednisolone": mg})
        clinic.run(d(day))
        assert steps(clinic.view(mrn, d(day))) == [], day

    # 2026-06-01: prednisolone stopped -> the target 2 mg/kg × 75 kg = 150 mg is due from that day.
    clinic.record(mrn, d("2026-06-01"), doses={"prednisolone": 0})
    clinic.run(d("2026-06-01"))
    view = clinic.view(mrn, d("2026-06-01"))
    assert steps(view) == [("2026-06-01", 150, "due")]
    assert "2 mg/kg × 75 kg" in aza_why(view) and "prednisolone stopped on 2026-06-01" in aza_why(view)


# --- 6. The prednisolone taper follows the article's table, week by week ---------------------------

def test_the_prednisolone_taper_is_the_articles_table_week_by_week(clinic: Clinic) -> None:
    mrn = "P9001"
    start = start_aih_induction(clinic, mrn)
    assert start == d("2026-01-12")
    # The listed steps: 15 mg weeks 7-8, 12.5 mg weeks 9-10, 10 mg after week 10 (SOURCE-ARTICLE.md table).
    assert [(on, mg) for on, mg, _ in steps(clinic.view(mrn, start), "prednisolone")] == [
        ("2026-01-12", 60), ("2026-01-19", 50), ("2026-01-26", 40), ("2026-02-02", 30), ("2026-02-09", 25),
        ("2026-02-16", 20), ("2026-02-23", 15), ("2026-03-09", 12.5), ("2026-03-23", 10)]
    for n, mg in ARTICLE_PREDNISOLONE.items():
        day = week(n, start)
        clinic.run(day)
        listed = steps(clinic.view(mrn, day), "prednisolone")
        in_force = max((s for s in listed if s[0] <= day.isoformat()), key=lambda s: s[0])
        assert in_force[1] == mg, f"week {n} ({day}): {in_force[1]} mg, the article says {mg} mg"
        recorded = {"prednisolone": mg}
        clinic.record(mrn, day, doses=recorded)
    view = clinic.view(mrn, week(12, start))
    why = " ".join(s["why"] for s in view["dose_steps"] if s["drug"] == "prednisolone")
    assert "Source article" in why
