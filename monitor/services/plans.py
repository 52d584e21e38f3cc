"""The stored plan: written by the daily cycle a batch at a time, read for a day.

The daily cycle stores each enrollment's unmet draws and panel lapses for every day until its
next review (domain.items.PlannedDraw, PlannedLapse). Whether a draw is listed on a day, its status
(upcoming, due, overdue, missed) and which lapse holds are functions of the date, derived here in
SQL exactly as the domain derives them, so a date passing never needs a re-evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, and_, bindparam, case, delete, insert, or_, select, update
from sqlmodel import Session, col

from monitor.db.tables import DoseStepRow, DueDrawRow, OverduePanelRow, ProposalRow
from monitor.domain.items import DoseStep, DrawStatus, PlannedDraw, PlannedLapse, Proposal


def draw_status(day: date) -> ColumnElement[str]:
    """A stored draw's status on `day` (PlannedDraw.status_on)."""
    return case((col(DueDrawRow.opens_on) > day, DrawStatus.UPCOMING.value),
                (col(DueDrawRow.closes_on) >= day, DrawStatus.DUE.value),
                (and_(col(DueDrawRow.missed_on).is_not(None), col(DueDrawRow.missed_on) <= day),
                 DrawStatus.MISSED.value),
                else_=DrawStatus.OVERDUE.value)


def draw_listed(day: date) -> ColumnElement[bool]:
    """Whether a stored draw is listed on `day` (PlannedDraw.listed_on)."""
    return and_(or_(col(DueDrawRow.shown_on).is_(None), col(DueDrawRow.shown_on) <= day),
                or_(col(DueDrawRow.gone_on).is_(None), col(DueDrawRow.gone_on) > day))


def draw_due(day: date) -> ColumnElement[bool]:
    """Listed and due on `day`."""
    return and_(draw_listed(day), col(DueDrawRow.opens_on) <= day, col(DueDrawRow.closes_on) >= day)


def lapse_holds(day: date) -> ColumnElement[bool]:
    """Whether a stored lapse holds on `day` (PlannedLapse.holds_on)."""
    return and_(col(OverduePanelRow.from_on) <= day,
                or_(col(OverduePanelRow.until_on).is_(None), col(OverduePanelRow.until_on) > day))


def draw_values(d: PlannedDraw) -> dict[str, Any]:
    return {"panel": d.panel, "due_on": d.due_on, "opens_on": d.opens_on, "closes_on": d.closes_on,
            "missed_on": d.missed_on, "shown_on": d.shown_on, "gone_on": d.gone_on, "rule_id": d.rule_id,
            "why": d.why}


def step_values(d: DoseStep) -> dict[str, Any]:
    return {"drug": d.drug, "on": d.on, "dose_mg": d.dose_mg, "status": d.status.value, "rule_id": d.rule_id,
            "why": d.why}


def proposal_values(p: Proposal) -> dict[str, Any]:
    return {"to_phase": p.to_phase, "rule_id": p.rule_id, "why": p.why}


def lapse_values(p: PlannedLapse) -> dict[str, Any]:
    o = p.lapse
    return {"panel": o.panel, "from_on": p.from_on, "until_on": p.until_on, "since": o.since,
            "draws_unmet": o.draws_unmet, "last_result_on": o.last_result_on, "rule_id": o.rule_id, "why": o.why}


@dataclass(frozen=True)
class PlanTable:
    """A plan table the cycle keeps equal to the plans, row by natural key, with Core statements."""

    table: Table
    key: tuple[str, ...]  # within an enrollment
    values: tuple[str, ...]  # every other column but id and enrollment_id

    @classmethod
    def of(cls, model: Any, key: tuple[str, ...]) -> PlanTable:
        table = model.__table__
        return cls(table, key, tuple(c.name for c in table.columns if c.name not in ("id", "enrollment_id", *key)))

    def batch(self, session: Session, ids: Sequence[int]) -> BatchRows:
        """A batch's stored rows, by enrollment and key: one query for the batch, not one each."""
        stored: dict[int, dict[tuple[Any, ...], Row[Any]]] = defaultdict(dict)
        for row in session.connection().execute(select(self.table).where(self.table.c.enrollment_id.in_(ids))):
            stored[row.enrollment_id][tuple(getattr(row, k) for k in self.key)] = row
        return BatchRows(self, stored)


DRAWS = PlanTable.of(DueDrawRow, ("panel", "due_on"))
STEPS = PlanTable.of(DoseStepRow, ("drug", "on"))
LAPSES = PlanTable.of(OverduePanelRow, ("panel", "from_on"))
PROPOSALS = PlanTable.of(ProposalRow, ("to_phase",))


@dataclass
class BatchRows:
    """A batch's stored rows of one plan table and the changes to them, written together (`flush`)."""

    plan: PlanTable
    stored: dict[int, dict[tuple[Any, ...], Row[Any]]]
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)

    def sync(self, eid: int, wanted: list[dict[str, Any]]) -> int:
        """Make one enrollment's rows equal `wanted` (by natural key); count changes."""
        changed, left = 0, dict(self.stored.get(eid, {}))
        for values in wanted:
            row = left.pop(tuple(values[k] for k in self.plan.key), None)
            if row is None:
                self.inserts.append({"enrollment_id": eid, **values})
                changed += 1
            elif any(getattr(row, name) != values[name] for name in self.plan.values):
                self.updates.append({"row_id": row.id, **{name: values[name] for name in self.plan.values}})
                changed += 1
        self.deletes += [row.id for row in left.values()]
        return changed + len(left)

    def flush(self, session: Session) -> None:
        t, connection = self.plan.table, session.connection()
        if self.deletes:
            connection.execute(delete(t).where(t.c.id.in_(self.deletes)))
        if self.updates:
            connection.execute(update(t).where(t.c.id == bindparam("row_id"))
                               .values({name: bindparam(name) for name in self.plan.values}), self.updates)
        if self.inserts:
            connection.execute(insert(t), self.inserts)
