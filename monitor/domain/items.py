"""What a plan is made of: due draws, dose steps, flags and phase proposals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class DueDraw:
    panel: str
    due_on: date
    status: str  # upcoming, due, overdue, missed
    window_days: int
    rule_id: str
    why: str


@dataclass(frozen=True)
class DoseStep:
    drug: str
    dose_mg: float
    on: date
    status: str  # upcoming, due, done, held
    rule_id: str
    why: str


@dataclass(frozen=True)
class Flag:
    kind: str
    severity: str
    analyte: str | None
    value: float | None
    unit: str | None
    observed_on: date
    result_id: int | None
    rule_id: str
    why: str

    @property
    def key(self) -> str:
        """Natural key within an enrollment: one flag per rule per result (or per day)."""
        subject = self.result_id if self.result_id is not None else self.observed_on.isoformat()
        return f"{self.rule_id}@{subject}"


@dataclass(frozen=True)
class Proposal:
    to_phase: str
    rule_id: str
    why: str
