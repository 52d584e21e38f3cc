"""Flags over time: one per subject, re-judged when their result changes, and the ones that hold
the drug (critical ones, and those of a rule whose action withholds it).

A flag raised by a result is about that specimen (`Flag.key`). When the result is corrected or
retracted, its open flag is judged again with it: updated when the new value still meets a rule
of the same kind, resolved (with the why) when it no longer does, so a corrected critical count
neither stays on the worklist nor keeps azathioprine held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from monitor.domain.items import Flag, Resolution
from monitor.domain.protocol import MonitoringProtocol, Severity
from monitor.domain.snapshot import OpenFlag, Snapshot
from monitor.domain.thresholds import Baselines, flags_for


def one_per_key(flags: Iterable[Flag]) -> list[Flag]:
    """The most severe flag for each key (the first of equals), in the order first seen."""
    kept: dict[str, Flag] = {}
    for f in flags:
        seen = kept.get(f.key)
        if seen is None or Severity(f.severity).rank > Severity(seen.severity).rank:
            kept[f.key] = f
    return list(kept.values())


def covered(flag: Flag, acknowledged: Mapping[str, str]) -> bool:
    """Whether a clinician has acknowledged this flag at this severity or a worse one."""
    seen = acknowledged.get(flag.key)
    return seen is not None and Severity(flag.severity).rank <= Severity(seen).rank


def reconcile(snapshot: Snapshot, protocol: MonitoringProtocol, flags: list[Flag], *,
              baselines: Baselines) -> tuple[list[Flag], list[Resolution]]:
    """Judge again the open flags whose result changed since they were raised.

    `flags` are this evaluation's flags. An open flag it does not contain, whose result was
    retracted or now has another value, is checked against its result alone (even past the
    look-back): a flag of its kind is returned to update it; otherwise it is resolved. Open flags
    whose result did not change stay as they are (past the look-back they still hold the drug).
    """
    computed = {f.key for f in flags}
    results = {r.id: r for r in snapshot.results}
    updated: list[Flag] = []
    resolved: list[Resolution] = []
    for o in snapshot.open_flags:
        if o.result_id is None or o.key in computed or not _changed(o):
            continue
        if o.result_retracted:
            resolved.append(Resolution(o.key, f"{o.kind}: the result it was raised on ({_shown(o.value)}, "
                                              f"{o.observed_on}) was retracted by the lab"))
            continue
        result = results.get(o.result_id)
        if result is None:  # not in view (a run for an earlier date): judged when it is
            continue
        again = [f for f in flags_for(result, protocol, baseline=baselines.of(result), overrides=snapshot.overrides,
                                      on_drug=baselines.exposure.on(result.observed_on)) if f.key == o.key]
        if again:
            updated += again
        else:
            unit = protocol.units.get(result.analyte, "")
            resolved.append(Resolution(o.key, f"{o.kind}: {result.analyte} of {result.observed_on} was corrected from "
                                              f"{_shown(o.value)} to {result.value:g} {unit}, which no longer "
                                              "meets the rule"))
    return updated, resolved


def settle(snapshot: Snapshot, protocol: MonitoringProtocol, flags: list[Flag], *,
           today: date) -> tuple[list[Flag], list[Resolution]]:
    """A problem a later result settled: a result's flag that is not critical and whose rule does
    not withhold the drug, followed by a later final result of the same analyte (up to today)
    that raises no flag of its kind, is no longer raised, and closes with why if it is open. A
    critical flag, or one that holds the drug, waits for a clinician's acknowledgement however
    the results go. `flags` are this evaluation's result flags; returns those still standing and
    the resolutions."""
    raised = {(f.kind, f.result_id) for f in flags}
    latest = {analyte: finals[-1] for analyte, series in snapshot.series.items()
              if (finals := series.until(today))}
    standing, settled = [], {}
    for f in flags:
        last = latest.get(f.analyte or "")
        if (f.result_id is None or last is None or f.severity == Severity.CRITICAL
                or protocol.withholding(f.rule_id) is not None or last.observed_on <= f.observed_on
                or (f.kind, last.id) in raised):
            standing.append(f)
            continue
        unit = protocol.units.get(last.analyte, "")
        settled[f.key] = (f"{f.kind}: {last.analyte} {last.value:g} {unit} on {last.observed_on} no longer meets the "
                          f"rule; the problem is closed")
    opened = {o.key for o in snapshot.open_flags}
    return standing, [Resolution(key, why) for key, why in settled.items() if key in opened]


def _changed(o: OpenFlag) -> bool:
    return o.result_retracted or o.result_value != o.value


def _shown(value: float | None) -> str:
    return "no value" if value is None else f"{value:g}"


def review_holds(snapshot: Snapshot, protocol: MonitoringProtocol, flags: list[Flag],
                 resolved: list[Resolution]) -> list[tuple[date, str]]:
    """(day, what) of every flag holding the drug pending review, earliest first: a critical flag, or
    one whose rule's action withholds the drug (`withhold = true`). This evaluation's flags not
    covered by an acknowledgement count, and earlier ones still open (past the look-back) unless
    resolved now."""
    done = {f.key for f in flags} | {r.key for r in resolved}
    raised: list[tuple[date, str, str, str]] = [(f.observed_on, f.kind, f.severity, f.rule_id) for f in flags
                                                if not covered(f, snapshot.acknowledged)]
    raised += [(o.observed_on, o.kind, o.severity, o.rule_id) for o in snapshot.open_flags if o.key not in done]
    return sorted((on, what) for on, kind, severity, rule_id in raised
                  if (what := _holds(protocol, on, kind, severity, rule_id)))


def _holds(protocol: MonitoringProtocol, on: date, kind: str, severity: str, rule_id: str) -> str:
    """Why a flag holds the drug ("" when it does not)."""
    if severity == Severity.CRITICAL:
        return f"{kind} flagged critical on {on}"
    rule = protocol.withholding(rule_id)
    if rule is None:
        return ""
    return f"{kind} flagged {severity} on {on} by {rule.id} ({rule.action}; {protocol.cite(rule.source)})"
