"""Dose steps: the induction table, maintenance targets, genetics, gates, interactions, holds.

Azathioprine doses are the table (or mg/kg target) dose × the TPMT/NUDT15 factor × any
interaction factor, in whole tablets (cuts round down). Azathioprine is held (never started) while
TPMT is unknown or bilirubin is at or above the gate, and not given at all for a poor
metaboliser; any open critical flag holds it pending clinician review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from monitor.domain.items import DoseStep, Flag
from monitor.domain.protocol import DoseTarget, InductionRegimen, InductionStep, MonitoringProtocol, Severity
from monitor.domain.snapshot import PhaseEpisode, Snapshot
from monitor.domain.thresholds import flag_from

#: A recorded dose this many days before a step's date still counts as taking that step.
EARLY_RECORD = timedelta(days=3)


def round_to_tablet(dose_mg: float, tablet_mg: float) -> float:
    """Nearest whole number of tablets, halves rounding up."""
    return math.floor(dose_mg / tablet_mg + 0.5) * tablet_mg


def reduce(dose_mg: float, factor: float, tablet_mg: float) -> float:
    """A dose cut (genetics, interactions) in whole tablets, never above the intended fraction
    (37.5 mg of a 25 % cut is 25 mg, not 50); at least one tablet."""
    if factor >= 1:
        return dose_mg
    return max(math.floor(dose_mg * factor / tablet_mg + 1e-9) * tablet_mg, tablet_mg)


def clamp_to_target(dose_mg: float, target: DoseTarget, weight_kg: float, tablet: float) -> float:
    """The tablet multiple nearest `dose_mg` inside the mg/kg target range, if there is one."""
    low, high = target.min_mg_per_kg * weight_kg, target.max_mg_per_kg * weight_kg
    dose = round_to_tablet(min(max(dose_mg, low), high), tablet)
    if dose > high:
        dose -= tablet
    elif dose < low:
        dose += tablet
    return dose if low <= dose <= high else round_to_tablet(min(max(dose_mg, low), high), tablet)


def regimen_start(snapshot: Snapshot, regimen: InductionRegimen, today: date) -> PhaseEpisode | None:
    """The episode whose start anchors week 1: the current phase, if the regimen covers it."""
    episode = snapshot.phase_on(today)
    return episode if episode.phase in regimen.phases else None


def planned_dose(step: InductionStep, protocol: MonitoringProtocol, regimen: InductionRegimen,
                 weight_kg: float) -> tuple[float, str]:
    """The table dose for one step at this weight, and how it was reached."""
    tablet = protocol.drugs[step.drug].tablet_mg
    dose, how = step.dose_mg, f"table dose {step.dose_mg:g} mg"
    if step.mg_per_kg is not None:
        dose = round_to_tablet(step.mg_per_kg * weight_kg, tablet)
        how = f"{step.mg_per_kg:g} mg/kg × {weight_kg:g} kg, rounded to {tablet:g} mg tablets"
    elif step.scale_with_weight:
        scale = min(weight_kg / regimen.reference_weight_kg, regimen.max_scale)
        dose = round_to_tablet(step.dose_mg * scale, tablet)
        how = (f"{step.dose_mg:g} mg at {regimen.reference_weight_kg:g} kg scaled to {weight_kg:g} kg "
               f"(at most ×{regimen.max_scale:g}), rounded to {tablet:g} mg")
    target = protocol.dose_targets.get(step.drug)
    if step.apply_target and target is not None:
        dose = clamp_to_target(dose, target, weight_kg, tablet)
        how += (f", within the {target.min_mg_per_kg:g}–{target.max_mg_per_kg:g} mg/kg target "
                f"({protocol.cite(target.source)}) as whole {tablet:g} mg tablets")
    return dose, how


@dataclass
class DrugState:
    """What stands between the anchor drug and the patient today."""

    factor: float = 1.0
    notes: list[str] = field(default_factory=list)  # how the factor was reached
    never: str | None = None  # a reason the drug must not be given at all
    held: str | None = None  # a reason it may not start (or is held) now
    held_on: date | None = None  # since when
    since: date | None = None  # the last day the factor changed
    flags: list[Flag] = field(default_factory=list)


def genotype_on(snapshot: Snapshot, gene: str, day: date) -> tuple[str, date | None]:
    known = [g for g in snapshot.genotypes if g.gene == gene and g.on <= day]
    if not known:
        return "unknown", None
    latest = max(known, key=lambda g: g.on)
    return latest.status, latest.on


def _started(snapshot: Snapshot, drug: str, today: date) -> bool:
    return any(d.drug == drug and d.dose_mg > 0 and d.on <= today for d in snapshot.doses)


def drug_state(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> DrugState:
    """Genetics, the start gate and interactions; `hold_for_review` adds the open-critical-flag hold."""
    state = DrugState()
    drug = protocol.safety.anchor_drug
    started = _started(snapshot, drug, today)
    g = protocol.genetics
    if g is not None:
        tpmt, tpmt_on = genotype_on(snapshot, "TPMT", today)
        nudt15, nudt_on = genotype_on(snapshot, "NUDT15", today)
        cite = protocol.cite(g.source)
        if "poor" in (tpmt, nudt15):
            gene, on = ("TPMT", tpmt_on) if tpmt == "poor" else ("NUDT15", nudt_on)
            state.never = f"{gene} poor metaboliser: consider a non-thiopurine alternative ({cite})"
            state.flags.append(Flag(kind="tpmt_poor", severity=Severity.CRITICAL.value,
                                    observed_on=on or snapshot.start_on, rule_id=f"{protocol.id}/genetics/poor",
                                    why=state.never))
        elif tpmt == "unknown" and not started:
            state.held = f"TPMT status unknown: test TPMT (and NUDT15) before {drug} starts ({cite})"
            state.held_on = snapshot.start_on
            state.flags.append(Flag(kind="tpmt_unknown", severity=Severity.ACTION.value, observed_on=snapshot.start_on,
                                    rule_id=f"{protocol.id}/genetics/unknown", why=state.held))
        elif tpmt == "intermediate" and nudt15 == "intermediate":
            state.factor *= g.both_intermediate_factor
            state.since = max(d for d in (tpmt_on, nudt_on) if d is not None)
            state.notes.append(f"× {g.both_intermediate_factor:g} for TPMT and NUDT15 intermediate ({cite})")
        elif "intermediate" in (tpmt, nudt15):
            state.factor *= g.intermediate_factor
            state.since = tpmt_on if tpmt == "intermediate" else nudt_on
            gene = "TPMT" if tpmt == "intermediate" else "NUDT15"
            state.notes.append(f"× {g.intermediate_factor:g} for {gene} intermediate ({cite})")
    d = protocol.dosing
    if d.gate_analyte is not None and d.gate_below is not None and not started:
        gate = [r for r in snapshot.results if r.analyte == d.gate_analyte and r.observed_on <= today]
        latest = max(gate, key=lambda r: (r.observed_on, r.id), default=None)
        if latest is not None and latest.value >= d.gate_below:
            why = (f"{d.gate_analyte} {latest.value:g} {protocol.units.get(d.gate_analyte, '')} on "
                   f"{latest.observed_on} is not below {d.gate_below:g}: {drug} starts only below it "
                   f"({protocol.cite(d.gate_source)})")
            if state.held is None:
                state.held, state.held_on = why, latest.observed_on
            state.flags.append(flag_from(latest, protocol, kind="bilirubin_gate", severity=Severity.ACTION,
                                         rule_id=f"{protocol.id}/dosing/gate", why=why))
    for x in protocol.interactions:
        if x.dose_factor is None:
            continue
        for med in snapshot.medications:
            if not protocol.interacts(med.drug, x):
                continue
            if med.stopped_on is not None and med.stopped_on <= today:
                state.since = max(med.stopped_on, state.since or med.stopped_on)  # the cut ends: re-target
            if med.started_on <= today and (med.stopped_on is None or med.stopped_on > today):
                state.factor *= x.dose_factor
                state.since = max(med.started_on, state.since or med.started_on)
                state.notes.append(f"× {x.dose_factor:g} while on {protocol.drug_list.generic(med.drug)} "
                                   f"({protocol.cite(x.source)})")
    return state


def hold_for_review(state: DrugState, holds: list[tuple[date, str]], drug: str) -> bool:
    """Hold the drug pending clinician review from the first critical flag that holds it (`holds`:
    (day, kind), earliest first), unless it is already held; whether this hold applied."""
    if not holds or state.held is not None:
        return False
    on, kind = holds[0]
    state.held = (f"{kind} flagged critical on {on}: hold {drug} pending clinician review "
                  "(acknowledging the flag releases the hold)")
    state.held_on = on
    return True


def _recorded(snapshot: Snapshot, drug: str, dose: float, on: date, until: date | None, today: date) -> bool:
    return any(d.drug == drug and d.dose_mg == dose and on - EARLY_RECORD <= d.on <= today
               and (until is None or d.on < until) for d in snapshot.doses)


def induction_steps(snapshot: Snapshot, protocol: MonitoringProtocol, state: DrugState, *,
                    today: date) -> tuple[list[DoseStep], list[date]]:
    regimen = protocol.induction
    episode = None if regimen is None else regimen_start(snapshot, regimen, today)
    if regimen is None or episode is None:
        return [], []
    anchor_drug = protocol.safety.anchor_drug
    result: list[DoseStep] = []
    changes: list[date] = []
    for drug in dict.fromkeys(step.drug for step in regimen.steps):
        if drug == anchor_drug and state.never:
            continue
        table = sorted((s for s in regimen.steps if s.drug == drug), key=lambda s: s.from_week)
        dated = [(episode.started_on + timedelta(weeks=s.from_week - 1), s) for s in table]
        last_record = max((d.on for d in snapshot.doses if d.drug == drug and d.on <= today), default=None)
        current = max((i for i, (on, _) in enumerate(dated) if on <= today), default=None)
        if last_record is not None:  # recorded doses override the plan from their date
            current = max((i for i, (on, _) in enumerate(dated) if on <= last_record), default=current)
        for i in range(current or 0, len(dated)):
            on, step = dated[i]
            until = dated[i + 1][0] if i + 1 < len(dated) else None
            weight = snapshot.weight_on(on)
            if weight is None:
                continue
            dose, how = planned_dose(step, protocol, regimen, weight.kg)
            if drug == anchor_drug and state.factor != 1.0:
                dose = reduce(dose, state.factor, protocol.drugs[drug].tablet_mg)
                how += ", " + ", ".join(state.notes)
            status = "done" if _recorded(snapshot, drug, dose, on, until, today) else (
                "due" if on <= today else "upcoming")
            why = (f"{regimen.title} week {step.from_week} of {episode.phase.value} (from {episode.started_on}): "
                   f"{drug} {dose:g} mg/day; {how} ({protocol.cite(step.source)})")
            if drug == anchor_drug and state.held and status != "done":
                status, why = "held", f"{why}; held: {state.held}"
            changes.append(on)
            result.append(DoseStep(drug, dose, on, status,
                                   f"{protocol.id}/induction/{regimen.id}/{drug}/week-{step.from_week}", why))
    return result, changes


def maintenance_steps(snapshot: Snapshot, protocol: MonitoringProtocol, state: DrugState, *,
                      today: date) -> list[DoseStep]:
    """The mg/kg monotherapy target from the phase start, re-targeted when weight moves > 10 %."""
    d = protocol.dosing
    episode = snapshot.phase_on(today)
    drug = protocol.safety.anchor_drug
    if d.maintenance_mg_per_kg is None or episode.phase not in d.maintenance_phases or state.never:
        return []
    weights = sorted((w for w in snapshot.weights if w.on <= today), key=lambda w: w.on)
    reference = snapshot.weight_on(episode.started_on)
    if reference is None:
        return []
    on, kg, reason = episode.started_on, reference.kg, f"{episode.phase.value} from {episode.started_on}"
    if state.since is not None and state.since > on:
        on, reason = state.since, f"dose factor changed on {state.since}"
    for w in weights:
        if w.on > episode.started_on and abs(w.kg - kg) / kg > d.retarget_weight_change:
            on, reason = w.on, (f"weight {w.kg:g} kg on {w.on} differs from {kg:g} kg by more than "
                                f"{d.retarget_weight_change:.0%}")
            kg = w.kg
    tablet = protocol.drugs[drug].tablet_mg
    target = protocol.dose_targets.get(drug)
    normal = d.maintenance_mg_per_kg * kg
    full = clamp_to_target(normal, target, kg, tablet) if target else round_to_tablet(normal, tablet)
    dose = reduce(full, state.factor, tablet)
    notes = "".join(f", {n}" for n in state.notes)
    within = " within the target range" if target else ""
    why = (f"{drug} target {d.maintenance_mg_per_kg:g} mg/kg × {kg:g} kg = {full:g} mg/day in whole {tablet:g} mg "
           f"tablets{within}{notes} -> {dose:g} mg/day; {reason} ({protocol.cite(d.source)})")
    given = [x for x in snapshot.doses if x.drug == drug and x.on <= today]
    latest = max(given, key=lambda x: x.on) if given else None
    status = "done" if latest is not None and latest.dose_mg == dose and latest.on >= on - EARLY_RECORD else "due"
    if state.held and status != "done":
        status, why = "held", f"{why}; held: {state.held}"
    return [DoseStep(drug, dose, on, status, f"{protocol.id}/dosing/maintenance-target", why)]


def dose_steps(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
               state: DrugState | None = None) -> tuple[list[DoseStep], list[date]]:
    """Current and coming dose steps, and the days their status changes."""
    if state is None:
        state = drug_state(snapshot, protocol, today=today)
    steps, changes = induction_steps(snapshot, protocol, state, today=today)
    steps += maintenance_steps(snapshot, protocol, state, today=today)
    drug = protocol.safety.anchor_drug
    if state.held and not any(s.drug == drug and s.status == "held" for s in steps) and _started(
            snapshot, drug, today):
        steps.append(DoseStep(drug, 0.0, state.held_on or snapshot.start_on, "held", f"{protocol.id}/dosing/hold",
                              f"hold {drug}: {state.held}"))
    return steps, changes
