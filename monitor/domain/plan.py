"""`evaluate(snapshot, protocol, today=...)`: everything that is due for one enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.dosing import DrugState, dose_steps, drug_state, hold_for_review
from monitor.domain.exposure import Exposure, exposure
from monitor.domain.flags import one_per_key, reconcile, review_holds, settle
from monitor.domain.items import DoseStep, DueDraw, Flag, OverduePanel, Proposal, Resolution
from monitor.domain.phases import PhaseChange, effective_phases, withdrawal_proposal
from monitor.domain.protocol import MonitoringProtocol
from monitor.domain.rules import (
    dose_change_reminders,
    interaction_flags,
    nadir_flags,
    pattern_flags,
    relapse_flags,
    response_flags,
    rise_flags,
    screen_flags,
    tightening_slots,
    trend_flags,
)
from monitor.domain.schedule import DrawPlan, Timeline, dose_timeline, draw_plan
from monitor.domain.snapshot import Snapshot
from monitor.domain.thresholds import Baselines, impairment_restarts, result_flags

#: A plan covers at most this long: its draws' statuses follow the date (`DrawPlan`), so an
#: enrollment with no other change ahead is evaluated again only after this.
PLAN_SPAN = timedelta(days=91)


@dataclass(frozen=True)
class Plan:
    as_of: date
    draws: tuple[DueDraw, ...]  # today's
    overdue: tuple[OverduePanel, ...]  # panels whose most recent required draw is unmet, today
    drawn: DrawPlan  # the draws and lapses of every day until next_review_on, as stored
    dose_steps: tuple[DoseStep, ...]
    flags: tuple[Flag, ...]
    resolved: tuple[Resolution, ...]  # open flags whose corrected or retracted result no longer meets a rule
    proposals: tuple[Proposal, ...]
    phase_changes: tuple[PhaseChange, ...]  # automatic transitions to store
    next_review_on: date  # the earliest day this plan can change without new input, other than by
    # the date alone (`drawn`)


@dataclass(frozen=True)
class Standing:
    """Where the patient is today: the phases with today's automatic changes, what stands between
    the anchor drug and the patient, its planned and recorded doses, and its exposure."""

    snapshot: Snapshot
    phase_changes: list[PhaseChange]
    state: DrugState
    timeline: Timeline
    exposure: Exposure


def standing(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> Standing:
    snapshot, phase_changes = effective_phases(snapshot, protocol, today=today)
    drug = protocol.safety.anchor_drug
    state = drug_state(snapshot, protocol, today=today)  # genetics, the bilirubin gate, interactions
    timeline = dose_timeline(snapshot, protocol, drug, planned=state.never is None and state.held is None)
    return Standing(snapshot, phase_changes, state, timeline, exposure(snapshot, protocol, timeline))


def evaluate(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> Plan:
    """Everything one enrollment needs on `today`, from what is known about it (`snapshot`) and its
    protocol; pure: the same input always gives the same plan.

    In order:
    1. Where the patient is: the phases, with the automatic changes due by today (first dose →
       induction; complete response → maintenance); what stands between azathioprine and the patient
       (TPMT/NUDT15, the bilirubin gate, interacting drugs: `drug_state`); its doses by date, planned
       by the induction table or recorded; and each unbroken exposure to it (`standing`).
    2. Flags from results: protocol thresholds and CTCAE grades (each graded against the baseline of
       the current exposure, or the nadir in AIH induction), trends, rises, nadir rises, patterns of
       results, AIH response and relapse, interacting drugs, dose-change reminders, the infection
       screen. One flag per kind, analyte and specimen; open flags whose result was corrected or
       retracted are judged again (updated, or resolved with the why).
    3. Holds: a critical flag, or one of a rule whose action withholds the drug, holds every pending
       start and step-up until a clinician acknowledges it (or a correction resolves it).
    4. Dose steps (the induction table, the maintenance target), then due draws: the drug-safety
       clock, the disease clock, the baseline draw, counts after a stop, and the extra draws flags
       and drugs ask for (repeat counts, relapse confirmation, weekly counts), merged per panel; and
       the panels whose latest required draw is unmet.
    5. Proposals a clinician confirms (withdrawal when eligible, re-induction after a relapse).
    6. The next review date: the earliest day any of this can change without new input, other than
       a draw's status or a panel's lapse, which the plan gives for every day until then
       (`drawn`), at most PLAN_SPAN ahead.

    Every item carries its `rule_id` and a one-line `why` naming the rule and its source.
    """
    protocol = protocol.for_sex(snapshot.sex)  # fallback reference ranges (CLINICAL.md §9.3)
    now = standing(snapshot, protocol, today=today)
    snapshot, state, timeline, exp = now.snapshot, now.state, now.timeline, now.exposure
    drug = protocol.safety.anchor_drug
    base = Baselines(snapshot, protocol, exp)
    flags, settled = settle(snapshot, protocol, result_flags(snapshot, protocol, today=today, baselines=base),
                            today=today)
    flags = flags \
        + trend_flags(snapshot, protocol, today=today) \
        + rise_flags(snapshot, protocol, today=today) \
        + nadir_flags(snapshot, protocol, today=today, exposure=exp) \
        + pattern_flags(snapshot, protocol, today=today, exposure=exp)
    more, response_changes = response_flags(snapshot, protocol, today=today)
    relapses, relapse_slots, proposals = relapse_flags(snapshot, protocol, today=today)
    interactions, interaction_slots = interaction_flags(snapshot, protocol, today=today)
    reminders, reminder_changes = dose_change_reminders(snapshot, protocol, timeline, today=today)
    flags = one_per_key(flags + more + relapses + interactions + reminders + screen_flags(snapshot, protocol)
                        + state.flags)
    updated, resolved = reconcile(snapshot, protocol, flags, baselines=base)
    flags += updated
    resolved += [r for r in settled if r.key not in {u.key for u in updated}]
    # A critical flag (CTCAE grade >= 3 on the drug, a contraindicated drug), or one whose rule's action
    # withholds the drug (BSR "withhold and discuss"), holds the anchor drug pending clinician review
    # until it is acknowledged, or resolved by a correction (CLINICAL.md §4.1, §4.7).
    if hold_for_review(state, review_holds(snapshot, protocol, flags, resolved), drug):
        timeline = dose_timeline(snapshot, protocol, drug, planned=False)  # recorded doses only
    steps, step_changes = dose_steps(snapshot, protocol, today=today, state=state)
    withdrawal, eligible_on = withdrawal_proposal(snapshot, protocol, today=today)
    if withdrawal is not None:
        proposals.append(withdrawal)
    aged_out = [f.observed_on + timedelta(days=protocol.flag_lookback_days + 1) for f in flags]
    aged_out += [e.started_on for e in snapshot.phases]  # a phase confirmed ahead starts then
    changes = [d for d in (*step_changes, *response_changes, *reminder_changes, *aged_out, eligible_on)
               if d and d > today]
    review_on = min(changes + [today + PLAN_SPAN])
    extra = relapse_slots + interaction_slots + tightening_slots(flags, protocol)
    drawn = draw_plan(snapshot, protocol, today=today, until=review_on, timeline=timeline, extra=extra,
                      restarts=impairment_restarts(snapshot, protocol))
    draws, overdue = drawn.on(today)
    return Plan(
        as_of=today,
        draws=tuple(draws),
        overdue=tuple(overdue),
        drawn=drawn,
        dose_steps=tuple(steps),
        flags=tuple(flags),
        resolved=tuple(resolved),
        proposals=tuple(proposals),
        phase_changes=tuple(now.phase_changes),
        next_review_on=review_on,
    )
