"""Flags from single results: protocol thresholds (with patient overrides) and CTCAE grades."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from monitor.domain.analytes import Range
from monitor.domain.exposure import BASELINE_WINDOW, BEFORE_RECORDS, Exposure, exposure
from monitor.domain.items import Flag, specimen_time
from monitor.domain.protocol import Condition, GradeTerm, MonitoringProtocol, Severity, Threshold
from monitor.domain.snapshot import FLAGGABLE, Override, Result, Snapshot


def _bounds(result: Result, protocol: MonitoringProtocol) -> tuple[float | None, float | None]:
    """(low, high): the lab's own limits where the result carries them, else the protocol
    fallback. Asked for every result of every evaluation: no Range built."""
    low, high = result.ref_low, result.ref_high
    if low is None or high is None:
        fallback = protocol.reference_ranges.get(result.analyte)
        if fallback is not None:
            low = fallback.low if low is None else low
            high = fallback.high if high is None else high
    return low, high


def reference_for(result: Result, protocol: MonitoringProtocol) -> Range:
    """The lab's own range where the result carries one, else the protocol fallback."""
    return Range(*_bounds(result, protocol))


def above_uln(result: Result, protocol: MonitoringProtocol) -> bool | None:
    """Whether the result is above its upper limit of normal (None: no ULN to judge by)."""
    uln = _bounds(result, protocol)[1]
    return None if uln is None else result.value > uln


@dataclass(frozen=True)
class Baseline:
    """The value a result's rise is judged against, and how it was chosen (said in the why)."""

    result: Result
    basis: str  # e.g. "the last value before azathioprine started on 2022-01-31"

    def shown(self, unit: str) -> str:
        r = self.result
        return f"{r.analyte} {r.value:g} {unit} on {r.observed_on} ({self.basis})"


def in_range(result: Result, protocol: MonitoringProtocol) -> bool:
    low, high = _bounds(result, protocol)
    return (low is None or result.value >= low) and (high is None or result.value <= high)


def nadir_before(results: Sequence[Result], result: Result, since: date) -> Result | None:
    """The lowest of `results` (final, in date order) of the result's analyte from `since` up to,
    not including, the result itself; the earliest of equals."""
    earlier = [r for r in results if r.analyte == result.analyte and since <= r.observed_on
               and (r.observed_on, r.id) < (result.observed_on, result.id)]
    return min(earlier, key=lambda r: (r.value, r.observed_on, r.id), default=None)


class Baselines:
    """What each result's rise is judged against (CTCAE "baseline", CLINICAL.md §4.5):

    - in a phase of a `[[nadir_rises]]` rule for its analyte (AIH induction): the nadir since the
      phase started, the patient's own best value on treatment;
    - otherwise the last normal-range value since the current exposure to the anchor drug began,
      else the last value in the `BASELINE_WINDOW` before it began (on or before its first day);
    - none before any exposure, or when nothing qualifies: the result is graded against the ULN.
    """

    def __init__(self, snapshot: Snapshot, protocol: MonitoringProtocol, exposure: Exposure) -> None:
        self.snapshot, self.protocol, self.exposure = snapshot, protocol, exposure
        self.results = {a: s.results for a, s in snapshot.series.items()}  # analyte -> final results in date order
        # Worked out once per series: where each result stands, and whether it is in range.
        self.keys = {a: [(r.observed_on, r.id) for r in series] for a, series in self.results.items()}
        self.normal: dict[str, list[bool | None]] = {}  # whether each is in range, worked out when asked
        self.nadir_phases = {n.analyte: n.phases for n in protocol.nadir_rises}

    def of(self, result: Result) -> Baseline | None:
        episode = self.snapshot.phase_on(result.observed_on)
        series = self.results.get(result.analyte, ())
        if episode.phase in self.nadir_phases.get(result.analyte, ()):
            nadir = nadir_before(series, result, episode.started_on)
            if nadir is not None:
                return Baseline(nadir, f"the nadir since {episode.phase.value} started on {episode.started_on}")
        began = self.exposure.began(result.observed_on)
        if began is None:
            return None
        since = self.exposure.since(began)
        keys = self.keys.get(result.analyte, [])
        normal = self.normal.setdefault(result.analyte, [None] * len(series))
        own = bisect.bisect_right(keys, (result.observed_on, result.id))  # series[:own]: up to the result itself
        for i in range(own - 1, -1, -1):  # the last normal-range value since the exposure began
            if series[i].observed_on <= began:
                break
            if normal[i] is None:
                normal[i] = in_range(series[i], self.protocol)
            if normal[i] and keys[i] != (result.observed_on, result.id):
                return Baseline(series[i], f"the last normal-range value since {since}")
        if began == BEFORE_RECORDS:
            return None
        last = min(own, bisect.bisect_right(keys, (began, math.inf))) - 1  # the last value on or before it began
        if last >= 0 and series[last].observed_on >= began - BASELINE_WINDOW:
            return Baseline(series[last], f"the last value before {since}")
        return None


def baseline_abnormal(baseline: Baseline | None, protocol: MonitoringProtocol) -> bool:
    return baseline is not None and above_uln(baseline.result, protocol) is True


def grade(result: Result, term: GradeTerm, reference: Range, baseline: float | None = None) -> int:
    """The CTCAE grade (0-4). Bounds are strict: `< 2.0-1.0` means 1.0 <= value < 2.0.

    With an abnormal baseline and baseline cuts, grade g applies when value > cut × baseline.
    """
    achieved = 0
    by_baseline = term.baseline_cuts and baseline is not None and reference.high is not None \
        and baseline > reference.high
    cuts: tuple[float | None, ...] = term.baseline_cuts if by_baseline else term.cuts
    for g, cut in enumerate(cuts, start=1):
        if term.direction == "below":
            bound = reference.low if cut is None else cut
            hit = bound is not None and result.value < bound
        elif by_baseline:
            assert baseline is not None and cut is not None
            hit = result.value > cut * baseline
        else:
            uln = reference.high
            hit = uln is not None and result.value > (1.0 if cut is None else cut) * uln
        if hit:
            achieved = g
    return achieved


def ctcae_grade(result: Result, protocol: MonitoringProtocol, baseline: Baseline | None = None) -> int | None:
    term = protocol.grading.terms.get(result.analyte)
    if term is None:
        return None
    return grade(result, term, reference_for(result, protocol), None if baseline is None else baseline.result.value)


def breaches(result: Result, threshold: Threshold | Condition, reference: Range) -> str | None:
    """Why the result breaches the threshold (or a pattern's condition), or None."""
    v = result.value
    if threshold.below is not None and v < threshold.below:
        return f"below {threshold.below:g}"
    if threshold.above is not None and v > threshold.above:
        return f"above {threshold.above:g}"
    if threshold.above_uln_times is not None and reference.high is not None:
        limit = threshold.above_uln_times * reference.high
        if v > limit:
            return f"above {threshold.above_uln_times:g} × ULN ({limit:g})"
    return None


def flag_from(result: Result, protocol: MonitoringProtocol, *, kind: str, severity: Severity,
              rule_id: str, why: str) -> Flag:
    """A flag raised by one result, carrying its analyte, value, unit, date and id."""
    return Flag(kind=kind, severity=severity, analyte=result.analyte, value=result.value,
                unit=protocol.units.get(result.analyte), observed_on=result.observed_on, result_id=result.id,
                specimen=None if result.observed_at is None else specimen_time(result.observed_at),
                rule_id=rule_id, why=why)


def critical_grade(result: Result, protocol: MonitoringProtocol, term: GradeTerm, reference: Range,
                   baseline: Baseline | None) -> Flag | None:
    """The `critical` flag of a CTCAE grade at or above the protocol's critical grade, naming the
    baseline a rise was judged against (or the ULN, and why not the baseline)."""
    grading = protocol.grading
    g = grade(result, term, reference, None if baseline is None else baseline.result.value)
    if g < grading.critical_min_grade:
        return None
    unit = protocol.units.get(result.analyte, "")
    versus = ""
    if term.baseline_cuts and baseline is not None and baseline_abnormal(baseline, protocol):
        versus = f" vs baseline {baseline.shown(unit)}"
    elif term.baseline_cuts:
        versus = f" against ULN {reference.high:g} " + (
            "(no baseline from before this exposure)" if baseline is None else
            f"(baseline {baseline.shown(unit)} not above it)")
    why = (f"{result.analyte} {result.value:g} {unit} on {result.observed_on.isoformat()} is {grading.name} "
           f"v{grading.version} grade {g}{versus} ({term.term}): {protocol.critical_action} "
           f"({protocol.cite(term.source)})")
    return flag_from(result, protocol, kind=term.kind, severity=Severity.CRITICAL,
                     rule_id=f"{protocol.id}/ctcae-{grading.version}/{result.analyte}/grade-{g}", why=why)


def flags_for(result: Result, protocol: MonitoringProtocol, *, baseline: Baseline | None = None,
              overrides: tuple[Override, ...] = (), on_drug: bool = True) -> list[Flag]:
    """Every flag this result raises, keeping only the most severe one per kind.

    Off the drug (`on_drug` False) rises judged against a baseline (transaminases in AIH) are
    disease activity, left to the response and relapse rules; cytopenias are flagged everywhere.
    """
    reference = reference_for(result, protocol)
    unit = protocol.units.get(result.analyte, "")
    shown = f"{result.analyte} {result.value:g} {unit} on {result.observed_on.isoformat()}"
    abnormal_baseline = baseline_abnormal(baseline, protocol)
    found: list[Flag] = []
    for t in protocol.thresholds:
        if t.analyte != result.analyte or (t.unless_baseline_abnormal and (abnormal_baseline or not on_drug)):
            continue
        override = next((o for o in overrides if o.rule_id == t.id), None)
        personal = ""
        if override is not None:
            t = replace(t, below=override.below if t.below is not None else None,
                        above=override.above if t.above is not None else None)
            personal = f" (patient-specific threshold: {override.reason})"
        reason = breaches(result, t, reference)
        if reason:
            why = f"{shown} is {reason} {unit}{personal}: {t.action} ({protocol.cite(t.source)})"
            found.append(flag_from(result, protocol, kind=t.kind, severity=t.severity,
                                   rule_id=f"{protocol.id}/{t.id}", why=why))
    term = protocol.grading.terms.get(result.analyte)
    if term is not None and (baseline is None or baseline.result != result) and (on_drug or term.direction == "below"):
        critical = critical_grade(result, protocol, term, reference, baseline)
        if critical is not None:
            found.append(critical)
    worst: dict[str, Flag] = {}
    for f in found:
        kept = worst.get(f.kind)
        if kept is None or Severity(f.severity).rank > Severity(kept.severity).rank:
            worst[f.kind] = f
    return list(worst.values())


def result_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
                 baselines: Baselines | None = None) -> list[Flag]:
    """Flags for final results observed within the protocol's look-back, up to today.

    `baselines` carries the anchor drug's exposure: whether it was given on a result's day, and
    what a rise is judged against (default: the planned and recorded doses)."""
    since = today - timedelta(days=protocol.flag_lookback_days)
    base = baselines or Baselines(snapshot, protocol, exposure(snapshot, protocol))
    return [
        flag
        for r in snapshot.results
        if r.status in FLAGGABLE and since <= r.observed_on <= today
        for flag in flags_for(r, protocol, baseline=base.of(r), overrides=snapshot.overrides,
                              on_drug=base.exposure.on(r.observed_on))
    ]


def impairment_restarts(snapshot: Snapshot, protocol: MonitoringProtocol) -> list[tuple[date, str]]:
    """(day, what) of each onset of renal or hepatic impairment: a final result past the cut of a
    `restart_safety` threshold when the analyte's previous final result was not (CLINICAL.md §3.2:
    impairment restarts the drug-safety clock). The protocol's cut, whatever the overrides."""
    onsets = []
    for t in protocol.thresholds:
        if not t.restart_safety:
            continue
        was = False
        for r in snapshot.series[t.analyte].results if t.analyte in snapshot.series else ():
            now = breaches(r, t, reference_for(r, protocol)) is not None
            if now and not was:
                onsets.append((r.observed_on, f"{t.kind.replace('_', ' ')}: {r.analyte} {r.value:g} "
                                              f"{protocol.units.get(r.analyte, '')} on {r.observed_on}"))
            was = now
    return onsets
