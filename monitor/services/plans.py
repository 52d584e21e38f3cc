"""The stored plan read for a day.

The daily cycle stores each enrollment's unmet draws and panel lapses for every day until its
next review (domain.items.PlannedDraw, PlannedLapse). Whether a draw is listed on a day, its status
(upcoming, due, overdue, missed) and which lapse holds are functions of the date, derived here in
SQL exactly as the domain derives them, so a date passing never needs a re-evaluation.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_
from sqlmodel import col

from monitor.db.tables import DueDrawRow, OverduePanelRow
from monitor.domain.items import DrawStatus, PlannedDraw, PlannedLapse


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


def lapse_values(p: PlannedLapse) -> dict[str, Any]:
    o = p.lapse
    return {"panel": o.panel, "from_on": p.from_on, "until_on": p.until_on, "since": o.since,
            "draws_unmet": o.draws_unmet, "last_result_on": o.last_result_on, "rule_id": o.rule_id, "why": o.why}
