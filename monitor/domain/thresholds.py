"""Flags from single results: protocol thresholds and CTCAE grades."""

from __future__ import annotations

from datetime import date, timedelta

from monitor.domain.analytes import Range
from monitor.domain.items import Flag
from monitor.domain.protocol import GradeTerm, Grading, MonitoringProtocol, Severity, Threshold
from monitor.domain.snapshot import Result, Snapshot

#: Results with these statuses raise flags; preliminary ones wait for the final value.
FLAGGABLE = frozenset({"final", "corrected"})


def reference_for(result: Result, protocol: MonitoringProtocol) -> Range:
    """The lab's own range where the result carries one, else the protocol fallback."""
    fallback = protocol.reference_ranges.get(result.analyte, Range(None, None))
    return Range(
        result.ref_low if result.ref_low is not None else fallback.low,
        result.ref_high if result.ref_high is not None else fallback.high,
    )


def grade(result: Result, term: GradeTerm, reference: Range) -> int:
    """The CTCAE grade (0-4). Bounds are strict: `< 2.0-1.0` means 1.0 <= value < 2.0."""
    achieved = 0
    for g, cut in enumerate(term.cuts, start=1):
        if term.direction == "below":
            bound = reference.low if cut is None else cut
            hit = bound is not None and result.value < bound
        else:
            uln = reference.high
            hit = uln is not None and result.value > (1.0 if cut is None else cut) * uln
        if hit:
            achieved = g
    return achieved


def ctcae_grade(result: Result, protocol: MonitoringProtocol) -> int | None:
    term = protocol.grading.terms.get(result.analyte)
    return None if term is None else grade(result, term, reference_for(result, protocol))


def breaches(result: Result, threshold: Threshold, reference: Range) -> str | None:
    """Why the result breaches the threshold, or None."""
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


def _flag(result: Result, protocol: MonitoringProtocol, *, kind: str, severity: Severity,
          rule_id: str, why: str) -> Flag:
    return Flag(
        kind=kind,
        severity=severity.value,
        analyte=result.analyte,
        value=result.value,
        unit=protocol.units.get(result.analyte),
        observed_on=result.observed_on,
        result_id=result.id,
        rule_id=rule_id,
        why=why,
    )


def flags_for(result: Result, protocol: MonitoringProtocol) -> list[Flag]:
    """Every flag this result raises, keeping only the most severe one per kind."""
    reference = reference_for(result, protocol)
    unit = protocol.units.get(result.analyte, "")
    shown = f"{result.analyte} {result.value:g} {unit} on {result.observed_on.isoformat()}"
    found: list[Flag] = []
    for t in protocol.thresholds:
        if t.analyte != result.analyte:
            continue
        reason = breaches(result, t, reference)
        if reason:
            why = f"{shown} is {reason} {unit}: {t.action} ({protocol.cite(t.source)})"
            found.append(_flag(result, protocol, kind=t.kind, severity=t.severity,
                               rule_id=f"{protocol.id}/{t.id}", why=why))
    grading: Grading = protocol.grading
    term = grading.terms.get(result.analyte)
    if term is not None:
        g = grade(result, term, reference)
        if g >= grading.critical_min_grade:
            why = (f"{shown} is {grading.name} v{grading.version} grade {g} "
                   f"({term.term}): {protocol.critical_action} ({protocol.cite(term.source)})")
            found.append(_flag(result, protocol, kind=term.kind, severity=Severity.CRITICAL,
                               rule_id=f"{protocol.id}/ctcae-{grading.version}/{result.analyte}"
                                       f"/grade-{g}", why=why))
    worst: dict[str, Flag] = {}
    for f in found:
        kept = worst.get(f.kind)
        if kept is None or Severity(f.severity).rank > Severity(kept.severity).rank:
            worst[f.kind] = f
    return list(worst.values())


def result_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date) -> list[Flag]:
    """Flags for final results observed within the protocol's look-back, up to today."""
    since = today - timedelta(days=protocol.flag_lookback_days)
    return [
        flag
        for r in snapshot.results
        if r.status in FLAGGABLE and since <= r.observed_on <= today
        for flag in flags_for(r, protocol)
    ]
