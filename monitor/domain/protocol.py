"""The monitoring protocol as plain values. Numbers come from config/protocols/*.toml."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from monitor.domain.analytes import Range


class Phase(StrEnum):
    BASELINE = "baseline"
    INDUCTION = "induction"
    MAINTENANCE = "maintenance"
    WITHDRAWAL = "withdrawal"
    OFF_TREATMENT = "off_treatment"
    REINDUCTION = "reinduction"
    LIFELONG_MAINTENANCE = "lifelong_maintenance"


class Severity(StrEnum):
    WATCH = "watch"
    ACTION = "action"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return (Severity.WATCH, Severity.ACTION, Severity.CRITICAL).index(self)


@dataclass(frozen=True)
class InductionStep:
    drug: str
    from_week: int
    dose_mg: float
    scale_with_weight: bool  # dose_mg is for the regimen's reference weight
    apply_target: bool  # clamp into the drug's mg/kg target range
    source: str


@dataclass(frozen=True)
class InductionRegimen:
    id: str
    title: str
    reference_weight_kg: float
    max_scale: float  # weight scaling never goes above the table dose × max_scale
    phases: tuple[Phase, ...]  # phases whose start anchors week 1
    steps: tuple[InductionStep, ...]
    source: str


@dataclass(frozen=True)
class DoseTarget:
    drug: str
    min_mg_per_kg: float
    max_mg_per_kg: float
    source: str


@dataclass(frozen=True)
class Drug:
    name: str
    tablet_mg: float  # doses are rounded to whole multiples of this


@dataclass(frozen=True)
class Stage:
    """One stretch of the drug-safety schedule, counted from the anchor drug's start."""

    id: str
    every_days: int
    panels: tuple[str, ...]
    window_days: int  # a result this many days either side satisfies the draw
    until_day: int | None = None  # last draw of the stage on or before this day
    count: int | None = None  # or a fixed number of draws
    until_dose_stable_days: int | None = None  # and until the dose is unchanged this long
    source: str = ""

    @property
    def open_ended(self) -> bool:
        return self.until_day is None and self.count is None


@dataclass(frozen=True)
class SafetySchedule:
    anchor_drug: str
    stages: tuple[Stage, ...]
    source: str


@dataclass(frozen=True)
class Threshold:
    """A single-value rule: `below`, `above` or `above_uln_times` (× upper limit of normal)."""

    id: str
    analyte: str
    kind: str
    severity: Severity
    source: str
    action: str
    below: float | None = None
    above: float | None = None
    above_uln_times: float | None = None


@dataclass(frozen=True)
class GradeTerm:
    """A CTCAE term. `cuts[g]` is the bound for grade g+1; `None` means the lab's LLN/ULN."""

    term: str
    analyte: str
    kind: str
    direction: str  # "below" (value < cut) or "above_uln_times" (value > cut × ULN)
    cuts: tuple[float | None, ...]
    source: str


@dataclass(frozen=True)
class Grading:
    name: str  # "CTCAE"
    version: str
    terms: dict[str, GradeTerm]  # analyte -> term
    critical_min_grade: int
    source: str


@dataclass(frozen=True)
class MonitoringProtocol:
    id: str
    version: str
    title: str
    sources: dict[str, str]
    drugs: dict[str, Drug]
    induction: InductionRegimen | None
    dose_targets: dict[str, DoseTarget]
    safety: SafetySchedule
    thresholds: tuple[Threshold, ...]
    grading: Grading
    reference_ranges: dict[str, Range]  # analyte -> fallback reference range
    panels: dict[str, str]  # analyte -> panel
    units: dict[str, str]  # analyte -> canonical unit
    critical_action: str = "clinician review today"
    flag_lookback_days: int = 90
    missed_lookback_days: int = 90

    def cite(self, tag: str) -> str:
        """The short human name of a source tag, for `why` lines."""
        return self.sources.get(tag, tag).split(":")[0]
