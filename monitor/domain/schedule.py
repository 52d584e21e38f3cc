"""Due draws: the union of the drug-safety clock, the disease clock and extra draws, merged.

The drug-safety clock counts from the anchor drug's start and restarts as CLINICAL.md §3.2 says
(dose increase, restart after a hold, a new interacting drug, an intermediate TPMT/NUDT15
result, the onset of renal impairment); it stops off treatment, and the profile's after-stop
counts follow each stop. The disease clock counts from each phase's start. The protocol's baseline
draw comes before the first dose. Extra draws come from flags (repeat counts, relapse
confirmation) and interacting drugs.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from monitor.domain.clocks import Run, Slot, run_slots
from monitor.domain.items import DueDraw, OverduePanel, PlannedDraw, PlannedLapse
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import Snapshot

Timeline = list[tuple[date, float]]
Restarts = Sequence[tuple[date, str]]  # (day, what) of results that restart the safety clock

#: Slots are generated this far past today (more than any two neighbouring windows span).
LOOKAHEAD = timedelta(days=120)


def dose_timeline(snapshot: Snapshot, protocol: MonitoringProtocol, drug: str, *,
                  planned: bool = True) -> Timeline:
    """The drug's dose by date: planned induction steps (unless held), overridden by recorded doses."""
    by_day: dict[date, float] = {}
    regimen = protocol.induction
    if regimen is not None and planned:
        episodes = snapshot.phases
        for i, episode in enumerate(episodes):
            if episode.phase in regimen.phases:
                ends = episodes[i + 1].started_on if i + 1 < len(episodes) else None
                for step in regimen.steps:
                    on = episode.started_on + timedelta(weeks=step.from_week - 1)
                    if step.drug == drug and (ends is None or on < ends):
                        weight = snapshot.weight_on(on)
                        by_day[on] = step.dose_mg if step.mg_per_kg is None else \
                            step.mg_per_kg * (weight.kg if weight else 1.0)
    recorded = sorted((d for d in snapshot.doses if d.drug == drug), key=lambda d: d.on)
    if recorded:  # where doses are recorded, the record is authoritative: no planned dose before it
        by_day = {day: dose for day, dose in by_day.items() if day >= recorded[0].on}
    for dose in recorded:  # a recorded dose overrides the plan from its date
        for day in [d for d in by_day if d > dose.on]:
            del by_day[day]
        by_day[dose.on] = dose.dose_mg
    return sorted(by_day.items())


def dose_changes(timeline: Timeline) -> list[date]:
    changes, previous = [], None
    for day, dose in timeline:
        if dose != previous:
            changes.append(day)
        previous = dose
    return changes


def anchor_changes(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline) -> list[tuple[date, str]]:
    """(day, what) of each start, change and stop of the anchor drug, one per day: its dose timeline, and
    the start of a phase in which it is not given."""
    drug = protocol.safety.anchor_drug
    found: dict[date, str] = {}
    previous = None
    for day, dose in timeline:
        if dose != previous:
            found[day] = f"{drug} stopped on {day}" if dose == 0 else f"{drug} {dose:g} mg/day from {day}"
        previous = dose
    for before, episode in zip(snapshot.phases, snapshot.phases[1:], strict=False):
        if before.phase in protocol.safety_phases and episode.phase not in protocol.safety_phases:
            found.setdefault(episode.started_on, f"{drug} stopped with {episode.phase.value} from {episode.started_on}")
    return sorted(found.items())


def _enrolled_in_regimen(snapshot: Snapshot, protocol: MonitoringProtocol) -> bool:
    return protocol.induction is not None and snapshot.phases[0].phase in protocol.induction.phases


def enrolled_on_drug(snapshot: Snapshot, protocol: MonitoringProtocol) -> bool:
    """Whether the patient was enrolled already on the anchor drug (a cohort): in a phase in which it is
    given that the induction regimen does not start."""
    return snapshot.phases[0].phase in protocol.safety_phases and not _enrolled_in_regimen(snapshot, protocol)


def enrolled_before_treatment(snapshot: Snapshot, protocol: MonitoringProtocol) -> bool:
    """Whether the enrollment starts a course of treatment: in baseline, or in a phase the induction
    regimen starts (not a cohort already on the drug, nor a patient followed off treatment)."""
    return snapshot.phases[0].phase is Phase.BASELINE or _enrolled_in_regimen(snapshot, protocol)


#: (day, event, what): an event of the drug-safety clock. Events: start, stop, restart_after_hold,
#: dose_increase, interacting_drug, intermediate_genotype, impairment (the profile's `[restarts]`).
Event = tuple[date, str, str]


def safety_runs(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline,
                restarts: Restarts = ()) -> list[Run]:
    """The drug-safety clock's runs: started, restarted and stopped by events, in date order.
    `restarts`: (day, what) of results that restart it (renal or hepatic impairment)."""
    events = dose_events(snapshot, protocol, timeline) + other_events(snapshot, protocol, restarts)
    events.sort(key=lambda e: e[0])
    return runs_of(events, protocol, dose_changes(timeline))


def dose_events(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline) -> list[Event]:
    """Starts, stops, restarts and dose increases of the anchor drug, from its dose timeline (a
    cohort enrolled already on it starts at enrollment, dose unknown)."""
    drug = protocol.safety.anchor_drug
    events: list[Event] = []
    previous = 0.0
    if enrolled_on_drug(snapshot, protocol):
        events.append((snapshot.start_on, "start", f"{drug} treatment (on it at enrollment, {snapshot.start_on})"))
        previous = float("inf")
    stops = sorted(e.started_on for e in snapshot.phases if e.phase not in protocol.safety_phases)
    last_day = date.min
    for day, dose in timeline:
        if any(last_day < stop <= day for stop in stops):
            previous = 0.0  # the drug stopped with the phase: the next dose is a restart
        last_day = day
        if dose == 0 and previous > 0:
            events.append((day, "stop", f"{drug} held on {day}"))
        elif previous == float("inf"):
            pass  # on it at enrollment, dose unknown: only a stop is an event
        elif dose > 0 and previous == 0:
            events.append((day, "restart_after_hold" if events else "start", f"{drug} start on {day}"))
        elif dose > previous > 0:
            events.append((day, "dose_increase", f"{drug} dose increase on {day}"))
        previous = dose
    return events


def other_events(snapshot: Snapshot, protocol: MonitoringProtocol, restarts: Restarts) -> list[Event]:
    """Phases off the drug (stops), interacting drugs, intermediate genotypes and impairment (restarts)."""
    events: list[Event] = [(e.started_on, "stop", f"{e.phase.value} from {e.started_on}")
                           for e in snapshot.phases if e.phase not in protocol.safety_phases]
    events += [(med.started_on, "interacting_drug", f"{protocol.drug_list.generic(med.drug)} start on {med.started_on}")
               for med in snapshot.medications for x in protocol.interactions
               if x.restart_safety and protocol.interacts(med.drug, x)]
    events += [(g.on, "intermediate_genotype", f"{g.gene} intermediate result on {g.on}")
               for g in snapshot.genotypes if g.status == "intermediate"]
    events += [(day, "impairment", what) for day, what in restarts]
    return events


def runs_of(events: list[Event], protocol: MonitoringProtocol, changes: list[date]) -> list[Run]:
    """The runs the events (in date order) make: a start begins one at stage 0, a stop ends it, a
    restart begins one at its profile stage unless the running one is already at least as frequent."""
    safety = protocol.safety
    prefix = f"{protocol.id}/safety/{safety.id}"
    runs: list[Run] = []
    running: Run | None = None
    for day, event, what in events:
        if event == "stop":
            if running is not None:
                runs.append(replace(running, stop=day))
            running = None
            continue
        starts = event in ("start", "restart_after_hold")
        if not starts and running is None:
            continue  # a restart of a clock that is not running: nothing to restart
        stage = 0 if event == "start" else safety.restarts[event]
        if running is not None and not starts:
            _, current = run_slots(safety.stages, running, changes=changes, horizon=day, cite=protocol.cite)
            if current <= stage and stage != 0:
                continue  # already at least this frequent: a restart never loosens monitoring
            runs.append(replace(running, stop=day))
        running = Run(day, stage, None, what, prefix, bounded_first=stage == 0)
    if running is not None:
        runs.append(running)
    return runs


def after_stop_slots(protocol: MonitoringProtocol, runs: list[Run], *, horizon: date) -> list[Slot]:
    """After each stop of the drug-safety clock (a run followed by no restart on its last day), the
    profile's after-stop counts until the drug starts again. With no restart, an unmet one counts as
    missed `missed_lookback_days` after it was due (no later count of the clock will come)."""
    stage = protocol.safety.after_stop
    if stage is None:
        return []
    found: list[Slot] = []
    lookback = timedelta(days=protocol.missed_lookback_days)
    for i, run in enumerate(runs):
        restart = runs[i + 1].anchor if i + 1 < len(runs) else None
        if run.stop is None or (restart is not None and restart <= run.stop):
            continue
        after = Run(run.stop, 0, restart, f"{protocol.safety.anchor_drug} stop on {run.stop}", run.rule_prefix)
        slots = run_slots((stage,), after, changes=[], horizon=horizon, cite=protocol.cite)[0]
        found += [s if s.until is not None else replace(s, until=s.due_on + lookback) for s in slots]
    return found


def baseline_slots(snapshot: Snapshot, protocol: MonitoringProtocol, runs: list[Run]) -> list[Slot]:
    """The protocol's bloods before the anchor drug's first dose (planned or recorded; the enrollment
    start while none is known), for an enrollment that starts a course of treatment."""
    b = protocol.baseline
    if b is None or not enrolled_before_treatment(snapshot, protocol):
        return []
    first = runs[0].anchor if runs else snapshot.start_on
    why = (f"before the first {protocol.safety.anchor_drug} dose on {first}: a result from the {b.before_days} "
           f"days before counts ({protocol.cite(b.source)})")
    return [Slot(first, first - timedelta(days=b.before_days), first, b.panels,
                 f"{protocol.id}/baseline/before-first-dose", why, mergeable=False)]


def disease_runs(snapshot: Snapshot, protocol: MonitoringProtocol) -> list[tuple[Run, int]]:
    """One run per phase episode that has a disease clock, ending when the next episode starts."""
    runs = []
    episodes = snapshot.phases
    for i, episode in enumerate(episodes):
        clock = protocol.disease.get(episode.phase)
        if clock is None:
            continue
        stop = episodes[i + 1].started_on if i + 1 < len(episodes) else None
        runs.append((Run(episode.started_on, 0, stop, f"{episode.phase.value} start on {episode.started_on}",
                         f"{protocol.id}/disease/{episode.phase.value}"), i))
    return runs


def planned_slots(snapshot: Snapshot, protocol: MonitoringProtocol, *, horizon: date, timeline: Timeline,
                  extra: tuple[Slot, ...] | list[Slot] = (), restarts: Restarts = ()) -> list[Slot]:
    """Every slot up to `horizon` (far enough past the last day asked about that every slot which
    could merge with the next upcoming one exists: LOOKAHEAD)."""
    changes = dose_changes(timeline)
    slots: list[Slot] = list(extra)
    runs = safety_runs(snapshot, protocol, timeline, restarts)
    for run in runs:
        slots += run_slots(protocol.safety.stages, run, changes=changes, horizon=horizon, cite=protocol.cite)[0]
    slots += after_stop_slots(protocol, runs, horizon=horizon)
    slots += baseline_slots(snapshot, protocol, runs)
    for run, i in disease_runs(snapshot, protocol):
        stages = protocol.disease[snapshot.phases[i].phase].stages
        slots += run_slots(stages, run, changes=[], horizon=horizon, cite=protocol.cite)[0]
    return slots


def merged(slots: list[Slot], panel: str) -> list[Slot]:
    """One panel's slots in date order; overlapping windows are one draw (the earlier one)."""
    own = sorted((s for s in slots if panel in s.panels), key=lambda s: (s.due_on, s.closes, s.rule_id))
    kept: list[Slot] = []
    for s in own:
        if kept and (s.due_on == kept[-1].due_on or (
                s.mergeable and kept[-1].mergeable and abs((s.due_on - kept[-1].due_on).days)
                <= min((s.closes - s.due_on).days, (kept[-1].closes - kept[-1].due_on).days))):
            first = kept[-1]
            if s.rule_id != first.rule_id and "also:" not in first.why:
                kept[-1] = replace(first, closes=min(first.closes, s.closes), why=f"{first.why}; also: {s.why}",
                                   due_from=min(d for d in (first.due_from or first.opens, s.due_from or s.opens)),
                                   mergeable=first.mergeable and s.mergeable)
            elif (s.due_from or s.opens) < (first.due_from or first.opens):
                kept[-1] = replace(first, due_from=s.due_from or s.opens)
            continue
        kept.append(s)
    return kept


@dataclass(frozen=True)
class DrawPlan:
    """The unmet draws and panel lapses of the days from `today` until `until` (exclusive): what
    each of those days lists is a function of the date alone (`on`)."""

    draws: tuple[PlannedDraw, ...]
    lapses: tuple[PlannedLapse, ...]

    def on(self, day: date) -> tuple[list[DueDraw], list[OverduePanel]]:
        draws = sorted((d.on(day) for d in self.draws if d.listed_on(day)), key=lambda d: (d.due_on, d.panel))
        return draws, [p.lapse for p in self.lapses if p.holds_on(day)]


def draw_plan(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date, until: date,
              timeline: Timeline | None = None, extra: tuple[Slot, ...] | list[Slot] = (),
              restarts: Restarts = ()) -> DrawPlan:
    """The draws listed on any day from `today` until `until` (open ones: upcoming, due, overdue,
    recently missed), and the panels whose most recent required draw is unmet, as they stand on
    each of those days without new input."""
    if timeline is None:
        timeline = dose_timeline(snapshot, protocol, protocol.safety.anchor_drug)
    slots = planned_slots(snapshot, protocol, horizon=until + LOOKAHEAD, timeline=timeline, extra=extra,
                          restarts=restarts)
    days_taken: dict[str, set[date]] = defaultdict(set)  # a draw's results share their day
    for r in snapshot.results:
        if r.observed_on <= today:
            days_taken[protocol.panels.get(r.analyte, "")].add(r.observed_on)
    draws: list[PlannedDraw] = []
    lapses: list[PlannedLapse] = []
    lookback, one = timedelta(days=protocol.missed_lookback_days + 1), timedelta(days=1)
    for panel in sorted({p for s in slots for p in s.panels}):
        own = merged(slots, panel)
        taken = sorted(days_taken.get(panel, ()))
        unmet = [i for i, slot in enumerate(own) if not satisfied(taken, slot, _after(own, i))]
        lapses += panel_lapses(panel, own, set(unmet), taken, today=today, until=until)
        shown: date | None = None  # listed once every unmet draw before it has stopped being upcoming
        for i in unmet:
            if shown is not None and shown >= until:
                break
            slot, after = own[i], _after(own, i)
            opens = slot.due_from or slot.opens
            missed = min((d for d in (after.opens if after else None, slot.until) if d is not None), default=None)
            gone = None if missed is None else max(missed, slot.closes + one, slot.due_on + lookback)
            if gone is None or gone > today:
                draws.append(PlannedDraw(panel=panel, due_on=slot.due_on, opens_on=opens, closes_on=slot.closes,
                                         missed_on=missed, shown_on=shown, gone_on=gone, rule_id=slot.rule_id,
                                         why=f"{panel} {slot.why}"))
            shown = opens if shown is None else max(shown, opens)
    return DrawPlan(tuple(draws), tuple(lapses))


def _after(own: list[Slot], i: int) -> Slot | None:
    return own[i + 1] if i + 1 < len(own) else None


def satisfied(taken: list[date], slot: Slot, after: Slot | None) -> bool:
    """A result (`taken`: the panel's result days, sorted) in the window, or late but before the next
    draw of the panel opens."""
    i = bisect.bisect_left(taken, slot.opens)
    late_until = max(slot.closes, after.opens - timedelta(days=1)) if after is not None else date.max
    return i < len(taken) and taken[i] <= late_until


def overdue_panel(panel: str, own: list[Slot], unmet: set[int], taken: list[date], *,
                  today: date) -> OverduePanel | None:
    """The panel's lapse, if the most recent draw that is settled — its window closed, or met
    already — is unmet (and the clock that asked for it still runs): since the first unmet draw of
    the unbroken run ending there. A result for the draw now open catches the patient up."""
    settled = [i for i, slot in enumerate(own) if slot.closes < today or i not in unmet]
    if not settled or settled[-1] not in unmet:
        return None
    latest = own[settled[-1]]
    if latest.until is not None and latest.until <= today:
        return None  # its clock stopped: what the panel needs now comes from the clock that followed
    first = settled[-1]
    while first - 1 in unmet:
        first -= 1
    last_result = taken[bisect.bisect_right(taken, today) - 1] if taken and taken[0] <= today else None
    count = settled[-1] - first + 1
    since = own[first].due_on
    return OverduePanel(panel=panel, since=since, draws_unmet=count, last_result_on=last_result,
                        rule_id=latest.rule_id,
                        why=f"{panel}: {count} required draw{'s' if count > 1 else ''} unmet since {since} "
                            f"(latest: {latest.why})")


def panel_lapses(panel: str, own: list[Slot], unmet: set[int], taken: list[date], *, today: date,
                 until: date) -> list[PlannedLapse]:
    """The panel's lapse on each day from `today` until `until`: it changes only when a draw's
    window closes or its clock stops."""
    one = timedelta(days=1)
    days = sorted({today} | {d for slot in own for d in (slot.closes + one, slot.until) if d and today < d < until})
    lapses: list[PlannedLapse] = []
    current: OverduePanel | None = None
    for day in days:
        lapse = overdue_panel(panel, own, unmet, taken, today=day)
        if lapse == current:
            continue
        if current is not None:
            lapses[-1] = replace(lapses[-1], until_on=day)
        if lapse is not None:
            lapses.append(PlannedLapse(lapse, day, None))
        current = lapse
    return lapses
