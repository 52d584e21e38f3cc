"""Monitoring clocks: the dates a run of stages asks for blood, from an anchor date."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.domain.protocol import Stage


@dataclass(frozen=True)
class Slot:
    """One scheduled draw: due on a date, satisfied by a result of its panels inside the window."""

    due_on: date
    opens: date  # first day a result satisfies it
    closes: date  # last day a result satisfies it (then it is overdue)
    panels: tuple[str, ...]
    rule_id: str
    why: str
    mergeable: bool = True  # False for draws asked for by a flag or a drug: never absorbed by another
    due_from: date | None = None  # when it counts as due, if before `opens` (a repeat asked for today)
    until: date | None = None  # the clock that asked for it stopped then: unmet, it counts as missed


def describe(stage: Stage) -> str:
    if stage.at_days:
        return "on day " + ", ".join(str(d) for d in stage.at_days)
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


@dataclass(frozen=True)
class Run:
    """A clock started on `anchor` at stage `first` and running until `stop` (exclusive) or for ever."""

    anchor: date
    first: int
    stop: date | None
    what: str  # "azathioprine start on 2026-01-19" -- said in every `why`
    rule_prefix: str
    bounded_first: bool = True  # False: a restart mid-schedule ignores the first stage's until_day


def stable_days(changes: list[date], day: date, since: date) -> int:
    """Days the dose has been unchanged on `day` (counted from `since` when it never changed)."""
    i = bisect.bisect_right(changes, day)
    return (day - changes[i - 1]).days if i else (day - since).days


def run_slots(stages: tuple[Stage, ...], run: Run, *, changes: list[date], horizon: date,
              cite: Callable[[str], str]) -> tuple[list[Slot], int]:
    """Slots of one run up to the first whose window opens after `horizon`; and the index of the
    stage the run is in at its end (for restarts)."""
    slots: list[Slot] = []
    cursor = run.anchor
    index = run.first
    for index in range(run.first, len(stages)):
        stage = stages[index]
        said, cited = f"{describe(stage)} after {run.what}", cite(stage.source)
        taken = 0
        days = list(stage.at_days)
        while True:
            if stage.at_days:
                if not days:
                    break
                candidate = run.anchor + timedelta(days=days.pop(0))
            else:
                if stage.count is not None and taken >= stage.count:
                    break
                candidate = cursor + timedelta(days=stage.every_days)
                day = (candidate - run.anchor).days
                bounded = run.bounded_first or index != run.first
                past_day = stage.until_day is not None and (day > stage.until_day or not bounded)
                if past_day and (stage.until_dose_stable_days is None
                                 or stable_days(changes, cursor, run.anchor) >= stage.until_dose_stable_days):
                    break
            if run.stop is not None and candidate >= run.stop:
                return slots, index
            window = timedelta(days=stage.window_days)
            slots.append(Slot(
                due_on=candidate, opens=candidate - window, closes=candidate + window, panels=stage.panels,
                rule_id=f"{run.rule_prefix}/{stage.id}",
                why=f"{said}: day {(candidate - run.anchor).days} (±{stage.window_days} days; {cited})",
                until=run.stop,
            ))
            cursor, taken = candidate, taken + 1
            if candidate - window > horizon:
                return slots, index
    return slots, index
