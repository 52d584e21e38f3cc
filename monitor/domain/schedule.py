"""Due draws: the drug-safety clock counted from the anchor drug's start."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.items import DueDraw
from monitor.domain.protocol import MonitoringProtocol, Stage
from monitor.domain.snapshot import Snapshot


@dataclass(frozen=True)
class Slot:
    due_on: date
    stage: Stage
    day: int  # days since the anchor


def dose_timeline(snapshot: Snapshot, protocol: MonitoringProtocol, drug: str) -> list[tuple[date, float]]:
    """The drug's dose by date: planned induction steps, overridden by recorded doses."""
    by_day: dict[date, float] = {}
    regimen = protocol.induction
    if regimen is not None:
        for episode in snapshot.phases:
            if episode.phase in regimen.phases:
                for step in regimen.steps:
                    if step.drug == drug:
                        by_day[episode.started_on + timedelta(weeks=step.from_week - 1)] = step.dose_mg
    for dose in snapshot.doses:
        if dose.drug == drug:
            by_day[dose.on] = dose.dose_mg
    return sorted(by_day.items())


def anchor_on(timeline: list[tuple[date, float]], snapshot: Snapshot) -> date:
    """The anchor drug's first dose, or the enrollment start for a cohort already on it."""
    return next((day for day, dose in timeline if dose > 0), snapshot.start_on)


def dose_changes(timeline: list[tuple[date, float]]) -> list[date]:
    changes, previous = [], None
    for day, dose in timeline:
        if dose != previous:
            changes.append(day)
        previous = dose
    return changes


def slots(protocol: MonitoringProtocol, anchor: date, changes: list[date], *, until: date) -> list[Slot]:
    """Scheduled draw days from the anchor through the first one whose window opens after `until`."""
    result: list[Slot] = []
    cursor = anchor

    def stable_days(day: date) -> int:
        i = bisect.bisect_right(changes, day)
        return (day - changes[i - 1]).days if i else (day - anchor).days

    for stage in protocol.safety.stages:
        taken = 0
        while True:
            if stage.count is not None and taken >= stage.count:
                break
            candidate = cursor + timedelta(days=stage.every_days)
            day = (candidate - anchor).days
            if stage.until_day is not None and day > stage.until_day and (
                stage.until_dose_stable_days is None
                or stable_days(cursor) >= stage.until_dose_stable_days
            ):
                break
            result.append(Slot(candidate, stage, day))
            cursor, taken = candidate, taken + 1
            if candidate - timedelta(days=stage.window_days) > until:
                return result
    return result


def describe(stage: Stage) -> str:
    text = f"every {stage.every_days} days"
    if stage.until_day is not None:
        text += f" to day {stage.until_day}"
    if stage.until_dose_stable_days is not None:
        text += f" and until the dose has been stable {stage.until_dose_stable_days} days"
    if stage.count is not None:
        text += f", {stage.count} times"
    if stage.open_ended:
        text += " thereafter"
    return text


def due_draws(
    snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date
) -> tuple[list[DueDraw], list[date]]:
    """Open draws (upcoming, due, overdue, recently missed) and the days their status changes."""
    drug = protocol.safety.anchor_drug
    timeline = dose_timeline(snapshot, protocol, drug)
    anchor = anchor_on(timeline, snapshot)
    planned = slots(protocol, anchor, dose_changes(timeline), until=today)

    taken_on: dict[str, list[date]] = defaultdict(list)
    for r in snapshot.results:
        taken_on[protocol.panels.get(r.analyte, "")].append(r.observed_on)
    for days in taken_on.values():
        days.sort()

    def satisfied(panel: str, slot: Slot) -> bool:
        days, window = taken_on.get(panel, []), timedelta(days=slot.stage.window_days)
        i = bisect.bisect_left(days, slot.due_on - window)
        return i < len(days) and days[i] <= slot.due_on + window

    draws: list[DueDraw] = []
    changes: list[date] = []
    lookback = timedelta(days=protocol.missed_lookback_days)
    for panel in dict.fromkeys(p for s in planned for p in s.stage.panels):
        own = [s for s in planned if panel in s.stage.panels]
        for i, slot in enumerate(own):
            if satisfied(panel, slot):
                continue
            window = timedelta(days=slot.stage.window_days)
            opens, closes = slot.due_on - window, slot.due_on + window
            after = own[i + 1] if i + 1 < len(own) else None
            if today < opens:
                status = "upcoming"
            elif today <= closes:
                status = "due"
            elif after is not None and today >= after.due_on - timedelta(days=after.stage.window_days):
                status = "missed"
            else:
                status = "overdue"
            changes += [opens, closes + timedelta(days=1), slot.due_on + lookback + timedelta(days=1)]
            if status == "missed" and today - slot.due_on > lookback:
                continue
            draws.append(
                DueDraw(
                    panel=panel,
                    due_on=slot.due_on,
                    status=status,
                    window_days=slot.stage.window_days,
                    rule_id=f"{protocol.id}/safety/{slot.stage.id}",
                    why=(
                        f"{panel} {describe(slot.stage)} after {drug} start on "
                        f"{anchor.isoformat()}: day {slot.day} "
                        f"(±{slot.stage.window_days} days; {protocol.cite(slot.stage.source)})"
                    ),
                )
            )
            if status == "upcoming":
                break
    draws.sort(key=lambda d: (d.due_on, d.panel))
    return draws, changes
