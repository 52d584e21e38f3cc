"""Flags from single results: protocol thresholds (with patient overrides) and CTCAE grades."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta

from monitor.domain.analytes import Range
from monitor.domain.items import Flag, specimen_time
from monitor.domain.protocol import GradeTerm, MonitoringProtocol, Severity, Threshold
from monitor.domain.snapshot import Override, Result, Snapshot

#: Results with these statuses raise flags; preliminary ones wait for the final value.
FLAGGABLE = frozenset({"final", "corrected"})


def reference_for(result: Result, protocol: MonitoringProtocol) -> Range:
    """The lab's own range where the result carries one, else the protocol fallback."""
    fallback = protocol.reference_ranges.get(result.analyte, Range(None, None))
    return Range(
        result.ref_low if result.ref_low is not None else fallback.low,
        result.ref_high if result.ref_high is not None else fallback.high,
    )


def above_uln(result: Result, protocol: MonitoringProtocol) -> bool | None:
    """Whether the result is above its upper limit of normal (None: no ULN to judge by)."""
    uln = reference_for(result, protocol).high
    return None if uln is None else result.value > uln


class Baselines:
    """Pre-treatment values: per analyte, the last final result on or before the start of the
    treatment course a result belongs to (the enrollment start, or a later (re)induction)."""

    def __init__(self, snapshot: Snapshot, protocol: MonitoringProtocol) -> None:
        regimen = protocol.induction.phases if protocol.induction is not None else ()
        self.starts = sorted({snapshot.start_on, *(e.started_on for e in snapshot.phases if e.phase in regimen)})
        self.results = sorted((r for r in snapshot.results if r.status in FLAGGABLE),
                              key=lambda r: (r.observed_on, r.id))

    def for_(self, result: Result) -> Result | None:
        start = max((s for s in self.starts if s <= result.observed_on), default=self.starts[0])
        return next((r for r in reversed(self.results) if r.analyte == result.analyte and r.observed_on <= start),
                    None)


def baseline_abnormal(baseline: Result | None, protocol: MonitoringProtocol) -> bool:
    return baseline is not None and above_uln(baseline, protocol) is True


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


def ctcae_grade(result: Result, protocol: MonitoringProtocol, baseline: Result | None = None) -> int | None:
    term = protocol.grading.terms.get(result.analyte)
    if term is None:
        return None
    return grade(result, term, reference_for(result, protocol), None if baseline is None else baseline.value)


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


def flag_from(result: Result, protocol: MonitoringProtocol, *, kind: str, severity: Severity,
              rule_id: str, why: str) -> Flag:
    """A flag raised by one result, carrying its analyte, value, unit, date and id."""
    return Flag(kind=kind, severity=severity.value, analyte=result.analyte, value=result.value,
                unit=protocol.units.get(result.analyte), observed_on=result.observed_on, result_id=result.id,
                specimen=None if result.observed_at is None else specimen_time(result.observed_at),
                rule_id=rule_id, why=why)


def flags_for(result: Result, protocol: MonitoringProtocol, *, baseline: Result | None = None,
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
    grading = protocol.grading
    term = grading.terms.get(result.analyte)
    if term is not None and baseline is not result and (on_drug or term.direction == "below"):
        g = grade(result, term, reference, None if baseline is None else baseline.value)
        if g >= grading.critical_min_grade:
            versus = f" vs baseline {baseline.value:g}" if baseline and term.baseline_cuts and abnormal_baseline else ""
            why = (f"{shown} is {grading.name} v{grading.version} grade {g}{versus} ({term.term}): "
                   f"{protocol.critical_action} ({protocol.cite(term.source)})")
            found.append(flag_from(result, protocol, kind=term.kind, severity=Severity.CRITICAL,
                                   rule_id=f"{protocol.id}/ctcae-{grading.version}/{result.analyte}/grade-{g}",
                                   why=why))
    worst: dict[str, Flag] = {}
    for f in found:
        kept = worst.get(f.kind)
        if kept is None or Severity(f.severity).rank > Severity(kept.severity).rank:
            worst[f.kind] = f
    return list(worst.values())


def result_flags(snapshot: Snapshot, protocol: MonitoringProtocol, *, today: date,
                 on_drug: Callable[[date], bool] | None = None) -> list[Flag]:
    """Flags for final results observed within the protocol's look-back, up to today.

    `on_drug(day)` says whether the anchor drug was being given (default: the phase is one in
    which it is given)."""
    since = today - timedelta(days=protocol.flag_lookback_days)
    base = Baselines(snapshot, protocol)
    given = on_drug or (lambda day: snapshot.phase_on(day).phase in protocol.safety_phases)
    return [
        flag
        for r in snapshot.results
        if r.status in FLAGGABLE and since <= r.observed_on <= today
        for flag in flags_for(r, protocol, baseline=base.for_(r), overrides=snapshot.overrides,
                              on_drug=given(r.observed_on))
    ]
