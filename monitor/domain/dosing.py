"""Dose steps: the induction table scaled to weight, clamped to the mg/kg target, rounded."""

from __future__ import annotations

import math
from datetime import date, timedelta

from monitor.domain.items import DoseStep
from monitor.domain.protocol import DoseTarget, InductionRegimen, InductionStep, MonitoringProtocol
from monitor.domain.snapshot import PhaseEpisode, Snapshot

#: A recorded dose this many days before a step's date still counts as taking that step.
EARLY_RECORD = timedelta(days=3)


def round_to_tablet(dose_mg: float, tablet_mg: float) -> float:
    """Nearest whole number of tablets, halves rounding up."""
    return math.floor(dose_mg / tablet_mg + 0.5) * tablet_mg


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


def planned_dose(
    step: InductionStep, protocol: MonitoringProtocol, regimen: InductionRegimen, weight_kg: float
) -> tuple[float, str]:
    """The dose for one step at this weight, and how it was reached."""
    tablet = protocol.drugs[step.drug].tablet_mg
    dose, how = step.dose_mg, f"table dose {step.dose_mg:g} mg"
    if step.scale_with_weight:
        scale = min(weight_kg / regimen.reference_weight_kg, regimen.max_scale)
        dose = round_to_tablet(step.dose_mg * scale, tablet)
        how = (
            f"{step.dose_mg:g} mg at {regimen.reference_weight_kg:g} kg scaled to "
            f"{weight_kg:g} kg (at most ×{regimen.max_scale:g}), rounded to {tablet:g} mg"
        )
    target = protocol.dose_targets.get(step.drug)
    if step.apply_target and target is not None:
        dose = clamp_to_target(dose, target, weight_kg, tablet)
        how += (
            f", within the {target.min_mg_per_kg:g}–{target.max_mg_per_kg:g} mg/kg target "
            f"({protocol.cite(target.source)}) as whole {tablet:g} mg tablets"
        )
    return dose, how


def dose_steps(
    snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date
) -> tuple[list[DoseStep], list[date]]:
    """The current and coming induction steps per drug, and the days their status changes."""
    regimen = protocol.induction
    if regimen is None:
        return [], []
    episode = regimen_start(snapshot, regimen, today)
    if episode is None:
        return [], []
    result: list[DoseStep] = []
    changes: list[date] = []
    for drug in dict.fromkeys(step.drug for step in regimen.steps):
        table = sorted((s for s in regimen.steps if s.drug == drug), key=lambda s: s.from_week)
        dated = [(episode.started_on + timedelta(weeks=s.from_week - 1), s) for s in table]
        current = max((i for i, (on, _) in enumerate(dated) if on <= today), default=None)
        first = 0 if current is None else current
        for i in range(first, len(dated)):
            on, step = dated[i]
            until = dated[i + 1][0] if i + 1 < len(dated) else None
            weight = snapshot.weight_on(on)
            if weight is None:
                continue
            dose, how = planned_dose(step, protocol, regimen, weight.kg)
            done = any(
                d.drug == drug and d.dose_mg == dose and on - EARLY_RECORD <= d.on
                and (until is None or d.on < until) and d.on <= today
                for d in snapshot.doses
            )
            status = "done" if done else ("due" if on <= today else "upcoming")
            changes.append(on)
            result.append(
                DoseStep(
                    drug=drug,
                    dose_mg=dose,
                    on=on,
                    status=status,
                    rule_id=f"{protocol.id}/induction/{regimen.id}/{drug}/week-{step.from_week}",
                    why=(
                        f"{regimen.title} week {step.from_week} of {episode.phase.value} "
                        f"(from {episode.started_on.isoformat()}): {drug} {dose:g} mg/day; "
                        f"{how} ({protocol.cite(step.source)})"
                    ),
                )
            )
    return result, changes
