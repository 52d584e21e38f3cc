"""A coordinator's digest: what one nurse coordinator needs to do on one day, most dangerous first.

Plain values the daily cycle's stored plan is turned into (services/digest.py) and the e-mail
templates render (templates/email/); never ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from monitor.domain.protocol import MOST_SEVERE_FIRST

#: The digest of enrollments without a coordinator.
UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class FlagLine:
    id: int
    mrn: str
    severity: str
    kind: str
    value: str  # "" when the flag carries none
    unit: str
    observed_on: date
    why: str


@dataclass(frozen=True)
class OverdueLine:
    """A panel whose latest required draw is unmet, since `due_on`."""

    mrn: str
    panel: str
    due_on: date
    phase: str
    days_overdue: int
    draws_unmet: int
    last_result_on: date | None


@dataclass(frozen=True)
class DueLine:
    mrn: str
    panel: str
    due_on: date
    phase: str


@dataclass(frozen=True)
class StepLine:
    mrn: str
    drug: str
    dose_mg: str
    on: date


@dataclass
class Digest:
    coordinator: str
    day: date
    flags: list[FlagLine] = field(default_factory=list)
    overdue: list[OverdueLine] = field(default_factory=list)
    due: list[DueLine] = field(default_factory=list)
    dose_steps: list[StepLine] = field(default_factory=list)

    @property
    def critical_count(self) -> int:
        return sum(f.severity == "critical" for f in self.flags)

    @property
    def key(self) -> str:
        """The digest's natural key: one per coordinator and day."""
        return f"digest|{self.coordinator}|{self.day.isoformat()}"

    def sort(self) -> None:
        """Most severe flags first, then by MRN."""
        self.flags.sort(key=lambda f: (MOST_SEVERE_FIRST.get(f.severity, 1), f.mrn))
