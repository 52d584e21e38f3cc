"""Dose steps: the induction table, maintenance targets, genetics, gates, interactions, holds.

Azathioprine doses are the table (or mg/kg target) dose × the TPMT/NUDT15 factor × any
interaction factor, in whole tablets (cuts round down). Azathioprine is held (never started) while
TPMT is unknown, and not (re)started after a stop until a bilirubin result below the gate; it is
not given at all for a poor metaboliser; any open critical flag, or one of a rule whose action
withholds it, holds it pending clinician review. A drug given when a regimen phase starts
continues at its dose (re-treatment repeats the steroid course); the maintenance target waits
until the steroid is stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from monitor.domain.items import DoseStep, Flag, StepStatus
from monitor.domain.protocol import DoseTarget, InductionRegimen, InductionStep, MonitoringProtocol, Severity
from monitor.domain.snapshot import PhaseEpisode, Snapshot
from monitor.domain.thresholds import flag_from


def round_to_tablet(dose_mg: float, tablet_mg: float) -> float:
    """Nearest whole number of tablets, halves rounding up."""
    return math.floor(dose_mg / tablet_mg + 0.5) * tablet_mg


def cut_dose(dose_mg: float, factor: float, tablet_mg: float) -> float:
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


@dataclass(frozen=True)
class Course:
    """A drug on one day: whether it is being given, at which recorded dose, and when it last stopped."""

    given: bool
    dose_mg: float | None  # the latest dose above 0 recorded since it was (re)started, if any
    stopped_on: date | None  # the last day it was stopped after being given


def course(snapshot: Snapshot, protocol: MonitoringProtocol, drug: str, day: date, *,
           planned: bool = False) -> Course:
    """The drug's course on `day`. It is given from a recorded dose above 0 (the anchor drug also from
    enrollment in a phase in which it is given, outside the induction regimen; with `planned`, a
    drug of the regimen's table from the start of each regimen episode) until a recorded dose of 0
    or the start of a phase in which the anchor drug is not given."""
    regimen = protocol.induction
    regimen_phases = regimen.phases if regimen is not None else ()
    first = snapshot.phases[0].phase
    events: list[tuple[date, int, float | None]] = []  # (day, order on the day, dose; None: given, dose unknown)
    dose: float | None
    stopped: date | None
    if drug == protocol.safety.anchor_drug and first in protocol.safety_phases and first not in regimen_phases:
        events.append((snapshot.start_on, 0, None))
    if planned and regimen is not None and any(s.drug == drug for s in regimen.steps):
        events += [(e.started_on, 0, None) for e in snapshot.phases if e.phase in regimen_phases]
    events += [(d.on, 1, d.dose_mg) for d in snapshot.doses if d.drug == drug]
    events += [(e.started_on, 2, 0.0) for e in snapshot.phases if e.phase not in protocol.safety_phases]
    given, dose, stopped = False, None, None
    for on, _, mg in sorted(events, key=lambda e: e[:2]):
        if on > day:
            break
        if mg is None or mg > 0:
            given, dose = True, mg or dose
        elif given:
            given, dose, stopped = False, None, on
    return Course(given, dose, stopped)


def drug_state(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> DrugState:
    """Genetics, the start gate and interactions; `hold_for_review` adds the hold for flags under review."""
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
            state.flags.append(Flag(kind="tpmt_poor", severity=Severity.CRITICAL,
                                    observed_on=on or snapshot.start_on, rule_id=f"{protocol.id}/genetics/poor",
                                    why=state.never))
        elif tpmt == "unknown" and not started:
            state.held = f"TPMT status unknown: test TPMT (and NUDT15) before {drug} starts ({cite})"
            state.held_on = snapshot.start_on
            state.flags.append(Flag(kind="tpmt_unknown", severity=Severity.ACTION, observed_on=snapshot.start_on,
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
    start_gate(state, snapshot, protocol, today=today)
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


def start_gate(state: DrugState, snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> None:
    """Hold every (re)start of the anchor drug until the gate analyte (bilirubin) has a result since the
    drug was last stopped (any result before a first start), and the latest one is below the bound."""
    d = protocol.dosing
    drug = protocol.safety.anchor_drug
    now = course(snapshot, protocol, drug, today)
    if d.gate_analyte is None or d.gate_below is None or now.given:
        return
    unit, cite = protocol.units.get(d.gate_analyte, ""), protocol.cite(d.gate_source)
    since = now.stopped_on or date.min
    gate = [r for r in snapshot.results if r.analyte == d.gate_analyte and since <= r.observed_on <= today]
    latest = max(gate, key=lambda r: (r.observed_on, r.id), default=None)
    if latest is None:
        after = f"since {drug} was stopped on {now.stopped_on}" if now.stopped_on else "yet"
        why = (f"{(d.gate_name or d.gate_analyte).lower()} needed: no {d.gate_analyte} result {after}; {drug} "
               f"(re)starts only when {d.gate_analyte} is below {d.gate_below:g} {unit} ({cite})")
        on = now.stopped_on or snapshot.start_on
    elif latest.value >= d.gate_below:
        why = (f"{d.gate_analyte} {latest.value:g} {unit} on {latest.observed_on} is not below {d.gate_below:g}: "
               f"{drug} starts only below it ({cite})")
        on = latest.observed_on
        state.flags.append(flag_from(latest, protocol, kind="bilirubin_gate", severity=Severity.ACTION,
                                     rule_id=f"{protocol.id}/dosing/gate", why=why))
    else:
        return
    if state.held is None:
        state.held, state.held_on = why, on


def hold_for_review(state: DrugState, holds: list[tuple[date, str]], drug: str) -> bool:
    """Hold the drug pending clinician review from the first flag that holds it (`holds`: (day, what),
    earliest first), unless it is already held or never given (a poor metaboliser); whether this hold
    applied."""
    if not holds or state.held is not None or state.never is not None:
        return False
    on, what = holds[0]
    state.held = f"{what}: hold {drug} pending clinician review (acknowledging the flag releases the hold)"
    state.held_on = on
    return True


def _early(protocol: MonitoringProtocol) -> timedelta:
    """How long before a step's date a recorded dose still counts as taking that step."""
    return timedelta(days=protocol.dosing.early_record_days)


def _recorded(snapshot: Snapshot, protocol: MonitoringProtocol, drug: str, dose: float, on: date, until: date | None,
              today: date) -> bool:
    return any(d.drug == drug and d.dose_mg == dose and on - _early(protocol) <= d.on <= today
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
        if drug in regimen.continue_if_given and course(snapshot, protocol, drug,
                                                        episode.started_on - timedelta(days=1)).given:
            result += continued_step(snapshot, protocol, episode, drug, today=today)
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
                dose = cut_dose(dose, state.factor, protocol.drugs[drug].tablet_mg)
                how += ", " + ", ".join(state.notes)
            status = StepStatus.DONE if _recorded(snapshot, protocol, drug, dose, on, until, today) else (
                StepStatus.DUE if on <= today else StepStatus.UPCOMING)
            why = (f"{regimen.title} week {step.from_week} of {episode.phase.value} (from {episode.started_on}): "
                   f"{drug} {dose:g} mg/day; {how} ({protocol.cite(step.source)})")
            if drug == anchor_drug and state.held and status != StepStatus.DONE:
                status, why = StepStatus.HELD, f"{why}; held: {state.held}"
            changes.append(on)
            result.append(DoseStep(drug, dose, on, status,
                                   f"{protocol.id}/induction/{regimen.id}/{drug}/week-{step.from_week}", why))
    return result, changes


def continued_step(snapshot: Snapshot, protocol: MonitoringProtocol, episode: PhaseEpisode, drug: str, *,
                   today: date) -> list[DoseStep]:
    """A drug given when a regimen phase starts continues at its recorded dose instead of re-running
    its table (re-treatment repeats the steroid course: AASLD 2010 rec. 31); none if it has stopped
    since, or no dose is recorded."""
    regimen = protocol.induction
    now = course(snapshot, protocol, drug, today)
    if regimen is None or not now.given or now.dose_mg is None:
        return []
    why = (f"{regimen.title}, {episode.phase.value} from {episode.started_on}: {drug} was being given, so it "
           f"continues at {now.dose_mg:g} mg/day (the dose recorded); it restarts by the table only after a stop "
           f"({protocol.cite(regimen.continue_source)})")
    return [DoseStep(drug, now.dose_mg, episode.started_on, StepStatus.DONE,
                     f"{protocol.id}/induction/{regimen.id}/{drug}/continue", why)]


def maintenance_steps(snapshot: Snapshot, protocol: MonitoringProtocol, state: DrugState, *,
                      today: date) -> list[DoseStep]:
    """The mg/kg monotherapy target from the phase start, once the drugs it waits for (steroids) are
    stopped, re-targeted when weight moves > 10 %."""
    d = protocol.dosing
    episode = snapshot.phase_on(today)
    drug = protocol.safety.anchor_drug
    if d.maintenance_mg_per_kg is None or episode.phase not in d.maintenance_phases or state.never:
        return []
    weights = sorted((w for w in snapshot.weights if w.on <= today), key=lambda w: w.on)
    reference = snapshot.weight_on(episode.started_on)
    others = [(other, course(snapshot, protocol, other, today, planned=True)) for other in d.maintenance_after_stopping]
    if reference is None or any(c.given for _, c in others):
        return []
    on, kg, reason = episode.started_on, reference.kg, f"{episode.phase.value} from {episode.started_on}"
    for other, c in others:
        if c.stopped_on is not None and c.stopped_on > on:
            on, reason = c.stopped_on, f"{episode.phase.value}, {other} stopped on {c.stopped_on}"
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
    dose = cut_dose(full, state.factor, tablet)
    notes = "".join(f", {n}" for n in state.notes)
    within = " within the target range" if target else ""
    why = (f"{drug} target {d.maintenance_mg_per_kg:g} mg/kg × {kg:g} kg = {full:g} mg/day in whole {tablet:g} mg "
           f"tablets{within}{notes} -> {dose:g} mg/day; {reason} ({protocol.cite(d.source)})")
    given = [x for x in snapshot.doses if x.drug == drug and x.on <= today]
    latest = max(given, key=lambda x: x.on) if given else None
    done = latest is not None and latest.dose_mg == dose and latest.on >= on - _early(protocol)
    status = StepStatus.DONE if done else StepStatus.DUE
    if state.held and status != StepStatus.DONE:
        status, why = StepStatus.HELD, f"{why}; held: {state.held}"
    return [DoseStep(drug, dose, on, status, f"{protocol.id}/dosing/maintenance-target", why)]


def dose_steps(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
               state: DrugState | None = None) -> tuple[list[DoseStep], list[date]]:
    """Current and coming dose steps, and the days their status changes."""
    if state is None:
        state = drug_state(snapshot, protocol, today=today)
    steps, changes = induction_steps(snapshot, protocol, state, today=today)
    steps += maintenance_steps(snapshot, protocol, state, today=today)
    drug = protocol.safety.anchor_drug
    if state.held and not any(s.drug == drug and s.status == StepStatus.HELD for s in steps) and course(
            snapshot, protocol, drug, today).given:  # a drug already stopped needs no hold of its own
        steps.append(DoseStep(drug, 0.0, state.held_on or snapshot.start_on, StepStatus.HELD,
                              f"{protocol.id}/dosing/hold", f"hold {drug}: {state.held}"))
    return steps, changes
