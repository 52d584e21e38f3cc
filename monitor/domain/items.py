"""What a plan is made of: due draws, overdue panels, dose steps, flags and phase proposals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from monitor.domain.protocol import Severity


class DrawStatus(StrEnum):
    UPCOMING = "upcoming"  # before its window
    DUE = "due"  # inside its window
    OVERDUE = "overdue"  # after it, no result
    MISSED = "missed"  # overdue, and the next draw of its panel has opened (or its clock stopped)


class StepStatus(StrEnum):
    UPCOMING = "upcoming"
    DUE = "due"
    DONE = "done"  # a recorded dose matches
    HELD = "held"  # blocked until a clinician reviews


class FlagStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"  # its corrected or retracted result no longer meets the rule


@dataclass(frozen=True)
class DueDraw:
    panel: str
    due_on: date
    status: DrawStatus
    window_days: int
    rule_id: str
    why: str


@dataclass(frozen=True)
class PlannedDraw:
    """An unmet draw over the days a plan covers, as it is stored: its status on any day is a
    function of the date, so a plan need not be evaluated again only because a date passed.

    Listed from `shown_on` (the day the draw before it stops being upcoming; None: from the start)
    until `gone_on` (missed longer than the lookback; None: while unmet). Upcoming before
    `opens_on`, due until `closes_on`, then overdue, or missed from `missed_on` (the next draw of its
    panel opens, or its clock stops).
    """

    panel: str
    due_on: date
    opens_on: date
    closes_on: date
    missed_on: date | None
    shown_on: date | None
    gone_on: date | None
    rule_id: str
    why: str

    def status_on(self, day: date) -> DrawStatus:
        if day < self.opens_on:
            return DrawStatus.UPCOMING
        if day <= self.closes_on:
            return DrawStatus.DUE
        if self.missed_on is not None and day >= self.missed_on:
            return DrawStatus.MISSED
        return DrawStatus.OVERDUE

    def listed_on(self, day: date) -> bool:
        return (self.shown_on is None or self.shown_on <= day) and (self.gone_on is None or day < self.gone_on)

    def on(self, day: date) -> DueDraw:
        return DueDraw(panel=self.panel, due_on=self.due_on, status=self.status_on(day),
                       window_days=(self.closes_on - self.due_on).days, rule_id=self.rule_id, why=self.why)


@dataclass(frozen=True)
class OverduePanel:
    """A panel whose most recent required draw is unmet: overdue or already missed.

    `since` is the due date of the first unmet draw of the unbroken run that ends with it, so a
    patient who missed every weekly count for six weeks is overdue since the first of them.
    """

    panel: str
    since: date
    draws_unmet: int  # unmet draws in that run
    last_result_on: date | None  # the panel's latest result, if it ever had one
    rule_id: str  # of the most recent unmet draw
    why: str


@dataclass(frozen=True)
class PlannedLapse:
    """A panel's lapse over the days from `from_on` until `until_on` (None: until the plan is
    evaluated again), as it is stored."""

    lapse: OverduePanel
    from_on: date
    until_on: date | None

    def holds_on(self, day: date) -> bool:
        return self.from_on <= day and (self.until_on is None or day < self.until_on)


@dataclass(frozen=True)
class DoseStep:
    drug: str
    dose_mg: float
    on: date
    status: StepStatus
    rule_id: str
    why: str


def specimen_time(observed_at: datetime) -> str:
    """A specimen's collection time as it appears in flag keys (UTC, to the second)."""
    return observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Flag:
    kind: str
    severity: Severity
    observed_on: date
    rule_id: str
    why: str
    analyte: str | None = None
    value: float | None = None
    unit: str | None = None
    result_id: int | None = None
    specimen: str | None = None  # the result's collection time (`specimen_time`), when known

    @property
    def key(self) -> str:
        """Natural key within an enrollment: what the flag is about, not how it was delivered.

        A result's flag is one per kind, analyte and specimen (collection time): the same specimen
        re-sent under another order number, or corrected, is the same flag. Other flags are one
        per rule and day.
        """
        if self.result_id is not None and self.analyte is not None:
            return f"{self.kind}@{self.analyte}@{self.specimen or self.observed_on.isoformat()}"
        return f"{self.rule_id}@{self.observed_on.isoformat()}"


@dataclass(frozen=True)
class Resolution:
    """An open flag that no longer holds: its result was corrected or retracted."""

    key: str
    why: str


@dataclass(frozen=True)
class Proposal:
    to_phase: str
    rule_id: str
    why: str
