"""When the anchor drug is given, and when each unbroken exposure to it began.

A rise is judged against what the patient was like before the current exposure (CTCAE "baseline",
CLINICAL.md §4.5), so the engine needs the day each exposure began: the first dose, a restart
after a hold or after a phase off the drug. A patient enrolled already on the drug began it before
the records (`BEFORE_RECORDS`): nothing loaded is a value from before that exposure.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.protocol import MonitoringProtocol
from monitor.domain.schedule import Timeline, dose_timeline
from monitor.domain.snapshot import Snapshot

#: Results this long before an exposure began still count as its baseline (a design choice: a
#: value older than this is not the patient as they were when the drug started). The database
#: loads results from this long before the enrollment start (monitor/db/snapshots.py).
BASELINE_WINDOW = timedelta(days=90)

#: The start of an exposure already under way at enrollment (the day it began is not known).
BEFORE_RECORDS = date.min


@dataclass(frozen=True)
class Exposure:
    drug: str
    on: Callable[[date], bool]  # whether the drug is (planned to be) given that day
    starts: tuple[date, ...]  # the first day of each unbroken run of days on it, in order

    def began(self, day: date) -> date | None:
        """The start of the exposure `day` belongs to (the latest one started on or before it)."""
        i = bisect.bisect_right(self.starts, day)
        return self.starts[i - 1] if i else None

    def since(self, started: date) -> str:
        return f"{self.drug} started on {started}" if started != BEFORE_RECORDS else \
            f"{self.drug} started (before enrollment)"


def exposure(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline | None = None) -> Exposure:
    """The anchor drug's exposure: given on a day in a drug-safety phase with a dose above zero that
    day (planned or recorded: `timeline`, default the planned induction steps), or for a patient
    enrolled already on it with no dose recorded yet."""
    drug = protocol.safety.anchor_drug
    if timeline is None:
        timeline = dose_timeline(snapshot, protocol, drug)
    regimen = protocol.induction.phases if protocol.induction is not None else ()
    on_at_enrollment = snapshot.phases[0].phase in protocol.safety_phases and snapshot.phases[0].phase not in regimen

    def on(day: date) -> bool:
        if snapshot.phase_on(day).phase not in protocol.safety_phases:
            return False
        doses = [dose for d, dose in timeline if d <= day]
        return doses[-1] > 0 if doses else on_at_enrollment

    changes = sorted({snapshot.start_on, *(d for d, _ in timeline), *(e.started_on for e in snapshot.phases)})
    starts: list[date] = []
    before = False
    for day in changes:
        now = on(day)
        if now and not before:
            starts.append(BEFORE_RECORDS if on_at_enrollment and day == changes[0] else day)
        before = now
    return Exposure(drug, on, tuple(starts))
