"""What the engine knows about one enrollment: frozen values, never ORM rows."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from operator import attrgetter
from typing import NamedTuple

from monitor.domain.protocol import Phase


@dataclass(frozen=True)
class PhaseEpisode:
    phase: Phase
    started_on: date
    reason: str = ""


@dataclass(frozen=True)
class DoseEvent:
    drug: str
    dose_mg: float
    on: date


@dataclass(frozen=True)
class Weight:
    on: date
    kg: float


@dataclass(frozen=True)
class Genotype:
    gene: str
    status: str
    on: date


@dataclass(frozen=True)
class Medication:
    drug: str
    started_on: date
    stopped_on: date | None = None


class Result(NamedTuple):
    """One lab result. A named tuple, not a dataclass: a cycle builds millions of them (a tenth of
    the cost), and they are values all the same."""

    id: int
    analyte: str
    value: float
    observed_on: date
    status: str = "final"  # final, corrected, preliminary
    ref_low: float | None = None
    ref_high: float | None = None
    observed_at: datetime | None = None  # the specimen's collection time


#: Results with these statuses raise flags; preliminary ones wait for the final value.
FLAGGABLE = frozenset({"final", "corrected"})


#: Results in date order (the id breaks ties: the order they were stored).
in_order = attrgetter("observed_on", "id")


@dataclass(frozen=True)
class Series:
    """One analyte's final results in date order, and their dates (to cut it at a day)."""

    results: tuple[Result, ...]
    dates: tuple[date, ...]

    def until(self, day: date) -> tuple[Result, ...]:
        return self.results[:bisect.bisect_right(self.dates, day)]


@dataclass(frozen=True)
class Override:
    """A clinician's patient-specific threshold (e.g. benign ethnic neutropenia), with the reason."""

    rule_id: str  # the threshold id in the protocol, e.g. bsr17/neutrophils-below-1.6
    below: float | None
    above: float | None
    reason: str


@dataclass(frozen=True)
class OpenFlag:
    """A flag raised earlier and not yet acknowledged (it may be older than any look-back), with
    the result that raised it as it is now: corrected (another value) or retracted."""

    key: str
    kind: str
    severity: str
    observed_on: date
    value: float | None = None  # the value the flag was raised on
    result_id: int | None = None
    result_value: float | None = None  # that result's value now
    result_retracted: bool = False
    rule_id: str = ""  # the rule that raised it


@dataclass(frozen=True)
class Snapshot:
    enrollment_id: int
    start_on: date
    phases: tuple[PhaseEpisode, ...]  # in date order; the first is the enrollment phase
    weights: tuple[Weight, ...] = ()
    doses: tuple[DoseEvent, ...] = ()
    genotypes: tuple[Genotype, ...] = ()
    medications: tuple[Medication, ...] = ()
    results: tuple[Result, ...] = ()
    overrides: tuple[Override, ...] = ()
    #: Flags a clinician has acknowledged: key -> the severity acknowledged. A later value of the
    #: same specimen that is more severe is not covered.
    acknowledged: Mapping[str, str] = field(default_factory=dict)
    open_flags: tuple[OpenFlag, ...] = ()
    sex: str | None = None  # F, M or U (the patient row); chooses the fallback reference ranges

    @cached_property
    def series(self) -> Mapping[str, Series]:
        """Final results by analyte, in date order: worked out once, asked for by many rules."""
        by_analyte: dict[str, list[Result]] = defaultdict(list)
        for r in sorted(self.results, key=in_order):  # loaded in this order: one linear pass
            if r.status in FLAGGABLE:
                by_analyte[r.analyte].append(r)
        return {a: Series(tuple(rs), tuple(r.observed_on for r in rs)) for a, rs in by_analyte.items()}

    def finals(self, analyte: str, until: date) -> tuple[Result, ...]:
        """`analyte`'s final (or corrected) results up to `until`, in date order."""
        series = self.series.get(analyte)
        return () if series is None else series.until(until)

    def phase_on(self, day: date) -> PhaseEpisode:
        current = self.phases[0]
        for episode in self.phases:
            if episode.started_on <= day:
                current = episode
        return current

    def weight_on(self, day: date) -> Weight | None:
        """The latest weight on or before `day`, else the earliest one recorded."""
        before = [w for w in self.weights if w.on <= day]
        if before:
            return max(before, key=lambda w: w.on)
        return min(self.weights, key=lambda w: w.on) if self.weights else None
