"""`evaluate(snapshot, protocol, today=...)`: everything that is due for one enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.dosing import dose_steps
from monitor.domain.items import DoseStep, DueDraw, Flag, Proposal
from monitor.domain.protocol import MonitoringProtocol
from monitor.domain.schedule import due_draws
from monitor.domain.snapshot import Snapshot
from monitor.domain.thresholds import result_flags

#: With nothing scheduled, look again after this long anyway.
IDLE_REVIEW = timedelta(days=28)


@dataclass(frozen=True)
class Plan:
    as_of: date
    draws: tuple[DueDraw, ...]
    dose_steps: tuple[DoseStep, ...]
    flags: tuple[Flag, ...]
    proposals: tuple[Proposal, ...]
    next_review_on: date  # the earliest day this plan can change without new input


def evaluate(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> Plan:
    steps, step_changes = dose_steps(snapshot, protocol, today=today)
    draws, draw_changes = due_draws(snapshot, protocol, today=today)
    flags = result_flags(snapshot, protocol, today=today)
    changes = [d for d in (*step_changes, *draw_changes) if d > today]
    return Plan(
        as_of=today,
        draws=tuple(draws),
        dose_steps=tuple(steps),
        flags=tuple(flags),
        proposals=(),
        next_review_on=min(changes, default=today + IDLE_REVIEW),
    )
