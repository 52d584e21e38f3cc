"""`evaluate(snapshot, protocol, today=...)`: everything that is due for one enrollment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.dosing import dose_steps, drug_state, hold_for_review
from monitor.domain.flags import critical_holds, one_per_key, reconcile
from monitor.domain.items import DoseStep, DueDraw, Flag, OverduePanel, Proposal, Resolution
from monitor.domain.phases import PhaseChange, effective_phases, withdrawal_proposal
from monitor.domain.protocol import MonitoringProtocol
from monitor.domain.rules import (
    dose_change_reminders,
    interaction_flags,
    relapse_flags,
    response_flags,
    rise_flags,
    screen_flags,
    tightening_slots,
    trend_flags,
)
from monitor.domain.schedule import Timeline, dose_timeline, due_draws
from monitor.domain.snapshot import Snapshot
from monitor.domain.thresholds import result_flags

#: With nothing scheduled, look again after this long anyway.
IDLE_REVIEW = timedelta(days=28)


@dataclass(frozen=True)
class Plan:
    as_of: date
    draws: tuple[DueDraw, ...]
    overdue: tuple[OverduePanel, ...]  # panels whose most recent required draw is unmet
    dose_steps: tuple[DoseStep, ...]
    flags: tuple[Flag, ...]
    resolved: tuple[Resolution, ...]  # open flags whose corrected or retracted result no longer meets a rule
    proposals: tuple[Proposal, ...]
    phase_changes: tuple[PhaseChange, ...]  # automatic transitions to store
    next_review_on: date  # the earliest day this plan can change without new input


def given(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline) -> Callable[[date], bool]:
    """Whether the anchor drug is (planned to be) given on a day: a drug-safety phase and a dose
    above zero, or a patient enrolled already on it with no dose recorded yet."""
    regimen = protocol.induction.phases if protocol.induction is not None else ()
    on_at_enrollment = snapshot.phases[0].phase in protocol.safety_phases and snapshot.phases[0].phase not in regimen

    def on(day: date) -> bool:
        if snapshot.phase_on(day).phase not in protocol.safety_phases:
            return False
        doses = [dose for d, dose in timeline if d <= day]
        return doses[-1] > 0 if doses else on_at_enrollment

    return on


def evaluate(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> Plan:
    protocol = protocol.for_sex(snapshot.sex)  # fallback reference ranges (CLINICAL.md §9.3)
    snapshot, phase_changes = effective_phases(snapshot, protocol, today=today)
    drug = protocol.safety.anchor_drug
    state = drug_state(snapshot, protocol, today=today)  # genetics, the bilirubin gate, interactions
    timeline = dose_timeline(snapshot, protocol, drug, planned=state.never is None and state.held is None)
    on = given(snapshot, protocol, timeline)
    flags = result_flags(snapshot, protocol, today=today, on_drug=on) \
        + trend_flags(snapshot, protocol, today=today) \
        + rise_flags(snapshot, protocol, today=today)
    more, response_changes = response_flags(snapshot, protocol, today=today)
    relapses, relapse_slots, proposals = relapse_flags(snapshot, protocol, today=today)
    interactions, interaction_slots = interaction_flags(snapshot, protocol, today=today)
    reminders, reminder_changes = dose_change_reminders(snapshot, protocol, timeline, today=today)
    flags = one_per_key(flags + more + relapses + interactions + reminders + screen_flags(snapshot, protocol)
                        + state.flags)
    updated, resolved = reconcile(snapshot, protocol, flags, today=today, on_drug=on)
    flags += updated
    # A critical flag (CTCAE grade >= 3 on the drug, a contraindicated drug) holds the anchor drug
    # pending clinician review until it is acknowledged, or resolved by a correction (CLINICAL.md §4.7).
    if hold_for_review(state, critical_holds(snapshot, flags, resolved), drug):
        timeline = dose_timeline(snapshot, protocol, drug, planned=False)  # recorded doses only
    steps, step_changes = dose_steps(snapshot, protocol, today=today, state=state)
    extra = relapse_slots + interaction_slots + tightening_slots(flags, protocol)
    draws, overdue, draw_changes = due_draws(snapshot, protocol, today=today, timeline=timeline, extra=extra)
    withdrawal, eligible_on = withdrawal_proposal(snapshot, protocol, today=today)
    if withdrawal is not None:
        proposals.append(withdrawal)
    aged_out = [f.observed_on + timedelta(days=protocol.flag_lookback_days + 1) for f in flags]
    aged_out += [e.started_on for e in snapshot.phases]  # a phase confirmed ahead starts then
    changes = [d for d in (*step_changes, *draw_changes, *response_changes, *reminder_changes, *aged_out,
                           eligible_on) if d and d > today]
    return Plan(
        as_of=today,
        draws=tuple(draws),
        overdue=tuple(overdue),
        dose_steps=tuple(steps),
        flags=tuple(flags),
        resolved=tuple(resolved),
        proposals=tuple(proposals),
        phase_changes=tuple(phase_changes),
        next_review_on=min(changes, default=today + IDLE_REVIEW),
    )
