"""Longitudinal rules: trends, rises from baseline or from the induction nadir, patterns of
results, AIH response and relapse, interactions, the infection screen, and the extra draws flags ask
for. Each returns flags (and slots) with `rule_id` and `why`."""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

from monitor.domain.clocks import Slot
from monitor.domain.exposure import Exposure
from monitor.domain.items import Flag, Proposal
from monitor.domain.phases import response_on
from monitor.domain.protocol import Condition, Interaction, MonitoringProtocol, NadirRise, Pattern, Phase, Severity
from monitor.domain.schedule import Timeline, anchor_changes, enrolled_before_treatment
from monitor.domain.snapshot import Result, Snapshot
from monitor.domain.thresholds import above_uln, breaches, flag_from, nadir_before, reference_for


def _final(snapshot: Snapshot, analyte: str, today: date) -> list[Result]:
    return list(snapshot.finals(analyte, today))


def _recent(protocol: MonitoringProtocol, result: Result, today: date) -> bool:
    return today - result.observed_on <= timedelta(days=protocol.flag_lookback_days)


def trend_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> list[Flag]:
    """`trend_down`: N consecutive falls totalling more than X; `rapid_fall`: one fall over Y."""
    t = protocol.trend
    if t is None:
        return []
    flags = []
    for analyte in t.analytes:
        series = _final(snapshot, analyte, today)
        for i, r in enumerate(series):
            if not _recent(protocol, r, today) or i == 0:
                continue
            unit = protocol.units.get(analyte, "")
            before = series[i - 1]
            if before.value > 0 and (before.value - r.value) / before.value > t.single_fall:
                why = (f"{analyte} fell from {before.value:g} to {r.value:g} {unit} "
                       f"({before.observed_on} to {r.observed_on}), more than {t.single_fall:.0%} in one "
                       f"step: extra vigilance (a design choice of this protocol)")
                flags.append(flag_from(r, protocol, kind="rapid_fall", severity=t.severity,
                                       rule_id=f"{protocol.id}/trend/rapid-fall", why=why))
            if i >= t.falls:
                run = series[i - t.falls:i + 1]
                falling = all(b.value < a.value for a, b in zip(run, run[1:], strict=False))
                if falling and run[0].value > 0 and (run[0].value - r.value) / run[0].value > t.total_fall:
                    why = (f"{analyte} fell {t.falls} times in a row from {run[0].value:g} to {r.value:g} "
                           f"{unit} (more than {t.total_fall:.0%}): caution and extra vigilance "
                           f"({protocol.cite(t.source)})")
                    flags.append(flag_from(r, protocol, kind="trend_down", severity=t.severity,
                                           rule_id=f"{protocol.id}/trend/down", why=why))
    return flags


def rise_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> list[Flag]:
    """A rise above a rolling baseline: the median of the first results of the preceding window."""
    flags = []
    for rise in protocol.rises:
        series = _final(snapshot, rise.analyte, today)
        for r in series:
            if not _recent(protocol, r, today):
                continue
            window = [x for x in series if r.observed_on - timedelta(days=rise.within_days) <= x.observed_on
                      < r.observed_on][:rise.baseline_results]
            if not window:
                continue
            baseline = statistics.median(x.value for x in window)
            if baseline > 0 and r.value > baseline * (1 + rise.above_fraction):
                why = (f"{rise.analyte} {r.value:g} {protocol.units.get(rise.analyte, '')} on "
                       f"{r.observed_on} is more than {rise.above_fraction:.0%} above its baseline "
                       f"{baseline:g} (median of {len(window)} within {rise.within_days} days): "
                       f"{rise.action} ({protocol.cite(rise.source)})")
                flags.append(flag_from(r, protocol, kind=rise.kind, severity=rise.severity,
                                       rule_id=f"{protocol.id}/rise/{rise.analyte}", why=why))
    return flags


def nadir_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
                exposure: Exposure) -> list[Flag]:
    """`rise_from_nadir`: in (re)induction, while the anchor drug is given, a liver test above ULN
    that rose to more than N × the patient's nadir since the phase started, or above a cut after
    having fallen to or below it. The diagnosis value is no reference: the disease was falling
    (AIH: azathioprine starts late so that its toxicity can be told from the disease)."""
    flags = []
    for rule in protocol.nadir_rises:
        series = _final(snapshot, rule.analyte, today)
        unit = protocol.units.get(rule.analyte, "")
        for r in series:
            episode = snapshot.phase_on(r.observed_on)
            if not _recent(protocol, r, today) or episode.phase not in rule.phases \
                    or not exposure.on(r.observed_on) or not above_uln(r, protocol):
                continue
            nadir = nadir_before(series, r, episode.started_on)
            reason = None if nadir is None else _from_nadir(rule, r, nadir, unit)
            if reason:
                why = (f"{rule.analyte} {r.value:g} {unit} on {r.observed_on} is {reason} since "
                       f"{episode.phase.value} started on {episode.started_on}: {rule.action} "
                       f"({protocol.cite(rule.source)})")
                flags.append(flag_from(r, protocol, kind="rise_from_nadir", severity=rule.severity,
                                       rule_id=f"{protocol.id}/nadir/{rule.analyte}", why=why))
    return flags


def _from_nadir(rule: NadirRise, result: Result, nadir: Result, unit: str) -> str | None:
    if result.value > rule.above_nadir_times * nadir.value:
        return f"more than {rule.above_nadir_times:g} × the nadir {nadir.value:g} {unit} on {nadir.observed_on}"
    if rule.recross_above is not None and nadir.value <= rule.recross_above < result.value:
        return f"above {rule.recross_above:g} {unit} after falling to {nadir.value:g} {unit} on {nadir.observed_on}"
    return None


def pattern_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
                  exposure: Exposure) -> list[Flag]:
    """One flag per day on which every condition of a pattern is met by results of the preceding
    `within_days` (the latest of each), all taken while the anchor drug was given; raised on the
    result of that day that completed it (the first condition's, of equals)."""
    flags = []
    for p in protocol.patterns:
        met = [_meeting(snapshot, protocol, p, condition, today, exposure) for condition in p.conditions]
        for day in sorted({r.observed_on for results in met for r in results}):
            if today - day > timedelta(days=protocol.flag_lookback_days):
                continue
            opens = day - timedelta(days=p.within_days)
            picks = [max((r for r in results if opens <= r.observed_on <= day),
                         key=lambda r: (r.observed_on, r.id), default=None) for results in met]
            found = [r for r in picks if r is not None]
            if len(found) < len(picks):
                continue
            shown = ", ".join(f"{r.analyte} {r.value:g} {protocol.units.get(r.analyte, '')} on {r.observed_on}"
                              for r in found)
            why = f"{shown}, within {p.within_days} days: {p.action} ({protocol.cite(p.source)})"
            completing = next(r for r in found if r.observed_on == day)
            flags.append(flag_from(completing, protocol, kind=p.kind, severity=p.severity,
                                   rule_id=f"{protocol.id}/patterns/{p.id}", why=why))
    return flags


def _meeting(snapshot: Snapshot, protocol: MonitoringProtocol, pattern: Pattern, condition: Condition, today: date,
             exposure: Exposure) -> list[Result]:
    """The final results that meet one condition of the pattern, taken on the drug in its phases."""
    return [r for analyte in condition.analytes for r in _final(snapshot, analyte, today)
            if breaches(r, condition, reference_for(r, protocol)) and exposure.on(r.observed_on)
            and (not pattern.phases or snapshot.phase_on(r.observed_on).phase in pattern.phases)]


def response_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *,
                   today: date) -> tuple[list[Flag], list[date]]:
    """AIH non-response (week 4) and insufficient response (month 6) in induction phases."""
    rules, phases = protocol.response, protocol.phase_rules
    if rules is None or phases is None:
        return [], []
    flags: list[Flag] = []
    changes: list[date] = []
    cite = protocol.cite(rules.source)
    series = _final(snapshot, rules.analyte, today)
    for i, episode in enumerate(snapshot.phases):
        if episode.phase not in phases.after_response:
            continue
        ends = snapshot.phases[i + 1].started_on if i + 1 < len(snapshot.phases) else None
        baseline = [r for r in series
                    if episode.started_on - timedelta(days=rules.baseline_days) <= r.observed_on <= episode.started_on]
        week4 = episode.started_on + timedelta(days=rules.non_response_day)
        near = [r for r in series if abs((r.observed_on - week4).days) <= rules.non_response_window_days
                and (ends is None or r.observed_on < ends)]
        if baseline and near and above_uln(baseline[-1], protocol):  # a normal value is not a failure to fall
            b = baseline[-1]
            w = near[0]  # the first result of the week-4 window decides, once
            fall = (b.value - w.value) / b.value if b.value > 0 else 0.0
            if fall < rules.non_response_min_fall and _recent(protocol, w, today):
                why = (f"{rules.analyte} {b.value:g} -> {w.value:g} by {w.observed_on}: "
                       f"a {math.floor(fall * 1000) / 10:g}% "
                       f"fall in 4 weeks, less than {rules.non_response_min_fall:.0%} "
                       f"(non-response; {cite})")
                flags.append(flag_from(w, protocol, kind="non_response", severity=Severity.ACTION,
                                       rule_id=f"{protocol.id}/response/non-response", why=why))
        deadline = episode.started_on + timedelta(days=rules.insufficient_by_day)
        responded = response_on(snapshot.results, protocol, since=episode.started_on, until=deadline)
        if responded is None and (ends is None or ends > deadline):
            if today >= deadline:
                if today - deadline <= timedelta(days=protocol.flag_lookback_days):
                    flags.append(Flag(kind="insufficient_response", severity=Severity.ACTION,
                                      observed_on=deadline, rule_id=f"{protocol.id}/response/insufficient",
                                      why=f"no complete biochemical response by {deadline} "
                                          f"({rules.insufficient_by_day} days of {episode.phase.value}): "
                                          f"insufficient response ({cite})"))
            else:
                changes.append(deadline)
    return flags, changes


def relapse_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *,
                  today: date) -> tuple[list[Flag], list[Slot], list[Proposal]]:
    """Tier 1 `relapse_possible` (above ULN after response: repeat in 2-4 weeks) and tier 2 `relapse`
    (ALT >= 3 × ULN, or tier 1 confirmed on the repeat), which proposes re-induction."""
    rules = protocol.relapse
    if rules is None:
        return [], [], []
    flags: list[Flag] = []
    slots: list[Slot] = []
    cite = protocol.cite(rules.source)
    by_analyte = {analyte: _final(snapshot, analyte, today) for analyte in rules.possible_analytes}
    for analyte, series in by_analyte.items():
        for i, r in enumerate(series):
            if snapshot.phase_on(r.observed_on).phase not in rules.phases or not above_uln(r, protocol):
                continue
            if not _recent(protocol, r, today):
                continue
            uln = reference_for(r, protocol).high or 0
            unit = protocol.units.get(analyte, "")
            # The first result of the unbroken run of above-ULN results this one belongs to: a repeat at
            # least `repeat_after_days` after it confirms (a re-run the next day does not).
            j = i
            while j > 0 and above_uln(series[j - 1], protocol) and \
                    snapshot.phase_on(series[j - 1].observed_on).phase in rules.phases:
                j -= 1
            earlier = series[j] if j < i else None
            confirmed = earlier is not None and (r.observed_on - earlier.observed_on).days >= rules.repeat_after_days
            if analyte == rules.relapse_analyte and r.value >= rules.relapse_uln_times * uln:
                why = (f"{analyte} {r.value:g} {unit} on {r.observed_on} is at least {rules.relapse_uln_times:g} × ULN "
                       f"({uln:g}): relapse ({cite}); a clinician confirms re-induction")
                flags.append(flag_from(r, protocol, kind="relapse", severity=Severity.ACTION,
                                       rule_id=f"{protocol.id}/relapse/tier-2", why=why))
            elif confirmed and earlier is not None:
                why = (f"{analyte} above ULN again on {r.observed_on} ({r.value:g} {unit}) after "
                       f"{earlier.observed_on}: possible relapse confirmed on the repeat ({cite}); "
                       "a clinician confirms re-induction")
                flags.append(flag_from(r, protocol, kind="relapse", severity=Severity.ACTION,
                                       rule_id=f"{protocol.id}/relapse/confirmed", why=why))
            else:
                opens = r.observed_on + timedelta(days=rules.repeat_after_days)
                closes = r.observed_on + timedelta(days=rules.repeat_within_days)
                why = (f"{analyte} {r.value:g} {unit} on {r.observed_on} is above ULN ({uln:g}) after a response: "
                       f"possible relapse; repeat {', '.join(rules.repeat_panels)} in {rules.repeat_after_days}-"
                       f"{rules.repeat_within_days} days ({cite})")
                flags.append(flag_from(r, protocol, kind="relapse_possible", severity=Severity.ACTION,
                                       rule_id=f"{protocol.id}/relapse/tier-1", why=why))
                slots.append(Slot(closes, opens, closes, rules.repeat_panels, f"{protocol.id}/relapse/repeat",
                                  f"repeat to confirm or clear a possible relapse flagged on {r.observed_on} ({cite})",
                                  mergeable=False))
    proposals = []
    treated = max((e.started_on for e in snapshot.phases if e.phase is Phase.REINDUCTION), default=date.min)
    untreated = [f for f in flags if f.kind == "relapse" and f.observed_on > treated]  # not re-induced since
    if untreated and snapshot.phase_on(today).phase is not Phase.REINDUCTION:
        last = max(untreated, key=lambda f: f.observed_on)
        proposals.append(Proposal(Phase.REINDUCTION.value, f"{protocol.id}/phases/relapse-to-reinduction",
                                  f"relapse flagged on {last.observed_on}: {rules.reinduction_action} "
                                  f"({protocol.cite(rules.reinduction_source)}); {cite}"))
    return flags, slots, proposals


def interaction_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *,
                      today: date) -> tuple[list[Flag], list[Slot]]:
    flags: list[Flag] = []
    slots: list[Slot] = []
    for med in snapshot.medications:
        if med.started_on > today or (med.stopped_on is not None and med.stopped_on <= today):
            continue
        drug = protocol.drug_list.generic(med.drug)
        for x in protocol.interactions:
            if drug not in x.drugs:
                continue
            cite = protocol.cite(x.source)
            flags.append(Flag(kind="interaction", severity=x.severity, observed_on=med.started_on,
                              rule_id=f"{protocol.id}/interactions/{x.id}/{drug}",
                              why=f"{drug} started on {med.started_on} with {protocol.safety.anchor_drug}: "
                                  f"{x.action} ({cite})"))
            slots += interaction_slots(protocol, x, drug, med.started_on)
    return flags, slots


def interaction_slots(protocol: MonitoringProtocol, x: Interaction, drug: str, started_on: date) -> list[Slot]:
    """The counts an interacting drug asks for: weekly for some weeks, or one extra count, in the
    protocol's `[interaction_draws]` panel and windows."""
    draws = protocol.interaction_draws
    if draws is None:
        return []  # the loader refuses interactions asking for counts without it
    cite = protocol.cite(x.source)
    slots = []
    weekly, extra = timedelta(days=draws.weekly_window_days), timedelta(days=draws.extra_window_days)
    rule = f"{protocol.id}/interactions/{x.id}"
    for week in range(1, (x.weekly_weeks or 0) + 1):
        due = started_on + timedelta(weeks=week)
        slots.append(Slot(due, due - weekly, due + weekly, (draws.panel,), f"{rule}/weekly",
                          f"weekly for {x.weekly_weeks} weeks after {drug} start on {started_on}: week {week} ({cite})",
                          mergeable=False))
    if x.extra_draw_days:
        due = started_on + timedelta(days=x.extra_draw_days)
        slots.append(Slot(due, due - extra, due + extra, (draws.panel,), f"{rule}/extra-count",
                          f"an extra count {x.extra_draw_days} days after {drug} start on {started_on} ({cite})",
                          mergeable=False))
    return slots


def dose_change_reminders(snapshot: Snapshot, protocol: MonitoringProtocol, timeline: Timeline, *,
                          today: date) -> tuple[list[Flag], list[date]]:
    """Interactions with `remind_on_dose_change`: their flag again on each start, stop or change of the
    anchor drug's dose while the drug is taken (warfarin: check the INR, CLINICAL.md §7). Returns the
    flags of the look-back and the days of planned changes still to come."""
    flags: list[Flag] = []
    coming: list[date] = []
    since = today - timedelta(days=protocol.flag_lookback_days)
    changes = anchor_changes(snapshot, protocol, timeline)
    for med in snapshot.medications:
        drug = protocol.drug_list.generic(med.drug)
        for x in (x for x in protocol.interactions if x.remind_on_dose_change and drug in x.drugs):
            for day, what in changes:
                if not med.started_on < day < (med.stopped_on or date.max) or day < since:
                    continue
                if day > today:
                    coming.append(day)
                    continue
                flags.append(Flag(kind="interaction", severity=x.severity, observed_on=day,
                                  rule_id=f"{protocol.id}/interactions/{x.id}/{drug}/dose-change",
                                  why=f"{what} while on {drug} (since {med.started_on}): {x.action} "
                                      f"({protocol.cite(x.source)})"))
    return flags, coming


def screen_flags(snapshot: Snapshot, protocol: MonitoringProtocol) -> list[Flag]:
    """The infection screen before the anchor drug starts: a flag from the start of an enrollment that
    starts a course of treatment, open until a clinician acknowledges it with the results."""
    screen = protocol.infection_screen
    if screen is None or not enrolled_before_treatment(snapshot, protocol):
        return []
    why = (f"infection screen before {protocol.safety.anchor_drug} starts (enrolled {snapshot.start_on}): "
           f"{', '.join(screen.tests)}; {screen.action} ({protocol.cite(screen.source)})")
    return [Flag(kind="infection_screen", severity=screen.severity, observed_on=snapshot.start_on,
                 rule_id=f"{protocol.id}/screen/infection-screen", why=why)]


def tightening_slots(flags: list[Flag], protocol: MonitoringProtocol) -> list[Slot]:
    """An `action` cytopenia asks for a repeat count within a week, a `critical` one within days."""
    t = protocol.tightening
    if t is None:
        return []
    slots = []
    for f in flags:
        if f.kind not in t.kinds or f.severity not in (Severity.ACTION, Severity.CRITICAL):
            continue
        days = t.critical_repeat_days if f.severity == Severity.CRITICAL else t.action_repeat_days
        due = f.observed_on + timedelta(days=days)
        slots.append(Slot(due, f.observed_on + timedelta(days=1), due, (t.panel,),
                          f"{protocol.id}/tightening/{f.severity}",
                          f"repeat within {days} days of the {f.severity} {f.kind} on {f.observed_on} "
                          f"({protocol.cite(t.source)})", mergeable=False, due_from=f.observed_on))
    return slots
