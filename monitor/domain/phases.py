"""Phase history as the engine sees it: confirmed episodes plus the automatic transitions.

Automatic (CLINICAL.md §1): baseline -> induction on the first steroid or azathioprine dose;
induction -> maintenance (reinduction -> lifelong maintenance) on complete biochemical response.
Everything else is only proposed; a clinician confirms it with `monitor phase`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date

from monitor.domain.items import Proposal
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import FLAGGABLE, PhaseEpisode, Result, Snapshot
from monitor.domain.thresholds import above_uln

MAX_AUTOMATIC = 4  # baseline -> induction -> maintenance is the longest automatic chain


@dataclass(frozen=True)
class PhaseChange:
    to_phase: Phase
    on: date
    rule_id: str
    why: str


def add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def response_on(results: tuple[Result, ...], protocol: MonitoringProtocol, *, since: date,
                until: date) -> date | None:
    """The first day on which every response analyte's latest result is at or below its ULN,
    all taken within the response window: complete biochemical response (IAIHG 2022)."""
    rules = protocol.phase_rules
    if rules is None:
        return None
    relevant = sorted((r for r in results if r.analyte in rules.response_analytes and r.status in FLAGGABLE
                       and since <= r.observed_on <= until), key=lambda r: (r.observed_on, r.id))
    latest: dict[str, Result] = {}
    for r in relevant:
        latest[r.analyte] = r
        if len(latest) == len(rules.response_analytes) and all(
                (r.observed_on - x.observed_on).days <= rules.response_window_days
                and above_uln(x, protocol) is False for x in latest.values()):
            return r.observed_on
    return None


def effective_phases(snapshot: Snapshot, protocol: MonitoringProtocol, *,
                     today: date) -> tuple[Snapshot, list[PhaseChange]]:
    """The snapshot with automatic phase changes applied, and those changes (to be stored)."""
    rules = protocol.phase_rules
    changes: list[PhaseChange] = []
    if rules is None:
        return snapshot, changes
    for _ in range(MAX_AUTOMATIC):
        current = snapshot.phase_on(today)
        if current is not snapshot.phases[-1] or current.started_on > today:
            break  # a later episode was confirmed by a clinician: nothing automatic past it
        change = None
        if current.phase is Phase.BASELINE:
            doses = sorted(d.on for d in snapshot.doses if d.drug in rules.start_on_first_dose_of
                           and d.dose_mg > 0 and current.started_on <= d.on <= today)
            if doses:
                change = PhaseChange(Phase.INDUCTION, doses[0], f"{protocol.id}/phases/baseline-to-induction",
                                     f"first {'/'.join(rules.start_on_first_dose_of)} dose recorded on {doses[0]}: "
                                     "treatment has started, induction begins")
        elif current.phase in rules.after_response:
            on = response_on(snapshot.results, protocol, since=current.started_on, until=today)
            if on is not None:
                to = rules.after_response[current.phase]
                change = PhaseChange(
                    to, on, f"{protocol.id}/phases/{current.phase.value}-to-{to.value}",
                    f"complete biochemical response on {on}: {', '.join(rules.response_analytes)} at or below "
                    f"the upper limit of normal ({protocol.cite(rules.source)}); monitoring moves to {to.value}")
        if change is None or change.on < current.started_on:
            break
        changes.append(change)
        snapshot = replace(snapshot, phases=(*snapshot.phases, PhaseEpisode(change.to_phase, change.on, change.why)))
    return snapshot, changes


def treatment_start(snapshot: Snapshot, protocol: MonitoringProtocol) -> date:
    """The first day of treatment: the first treatment phase, or the first dose if earlier."""
    treating = [e.started_on for e in snapshot.phases if e.phase is not Phase.BASELINE]
    rules = protocol.phase_rules
    drugs = rules.start_on_first_dose_of if rules is not None else ()
    dosed = [d.on for d in snapshot.doses if d.drug in drugs and d.dose_mg > 0]
    return min([*treating, *dosed], default=snapshot.start_on)


def relapsed_before(snapshot: Snapshot) -> bool:
    return any(e.phase in (Phase.REINDUCTION, Phase.LIFELONG_MAINTENANCE) for e in snapshot.phases)


def withdrawal_proposal(snapshot: Snapshot, protocol: MonitoringProtocol, *,
                        today: date) -> tuple[Proposal | None, date | None]:
    """Propose withdrawal once treatment and continuous response are long enough (never after a
    relapse). Returns the proposal (or None) and the day it becomes due, if later."""
    rules = protocol.phase_rules
    current = snapshot.phase_on(today)
    if rules is None or current.phase is not Phase.MAINTENANCE or relapsed_before(snapshot):
        return None, None
    abnormal = [r.observed_on for r in snapshot.results if r.analyte in rules.response_analytes
                and r.status in FLAGGABLE and r.observed_on <= today and above_uln(r, protocol)]
    since = max(abnormal) if abnormal else snapshot.start_on
    responding = response_on(snapshot.results, protocol, since=since, until=today)
    if responding is None:
        return None, None
    treated_from = treatment_start(snapshot, protocol)
    eligible = max(add_months(treated_from, rules.withdrawal_min_treatment_months),
                   add_months(responding, rules.withdrawal_min_response_months))
    if today < eligible:
        return None, eligible
    why = (f"eligible to try withdrawal: treated since {treated_from} "
           f"(>= {rules.withdrawal_min_treatment_months} months) and in complete biochemical response since "
           f"{responding} (>= {rules.withdrawal_min_response_months} months), no previous relapse "
           f"({protocol.cite(rules.withdrawal_source)}); a clinician decides (consider biopsy first)")
    return Proposal("withdrawal", f"{protocol.id}/phases/withdrawal-eligible", why), None
