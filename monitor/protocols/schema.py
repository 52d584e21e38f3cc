"""The shape of config/ files, validated with pydantic (extra keys are errors: typos never pass)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.domain.protocol import Phase, Severity

MOLAR_SCALE = {"mmol/L": 1e3, "umol/L": 1e6, "nmol/L": 1e9}  # canonical units per mol/L


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeIn(Strict):
    low: float | None = None
    high: float | None = None


class AnalyteIn(Strict):
    name: str
    loinc: str
    synonyms: list[str] = []
    panel: str
    unit: str
    reference: RangeIn  # the fallback when the lab sends no range and the patient's sex is unknown
    reference_by_sex: dict[Literal["F", "M"], RangeIn] = {}  # per sex, where it differs (CLINICAL.md §9.3)
    plausible: RangeIn
    units: dict[str, float]
    mass_units: dict[str, float] = {}
    molar_mass_g_per_mol: float | None = None
    zero_possible: bool = False

    @model_validator(mode="after")
    def _units(self) -> AnalyteIn:
        if self.unit not in self.units or self.units[self.unit] != 1:
            raise ValueError(f"the canonical unit {self.unit!r} must be in units with factor 1")
        low, high = self.plausible.low, self.plausible.high
        if low is None or low <= 0 or (high is not None and high < low):
            raise ValueError("plausible.low must be above 0 (the smallest plausible value that is not 0; "
                             "zero_possible says whether 0 is) and not above plausible.high")
        if self.mass_units and (self.molar_mass_g_per_mol is None or self.unit not in MOLAR_SCALE):
            raise ValueError("mass_units need molar_mass_g_per_mol and a molar canonical unit")
        return self


class PercentIn(Strict):
    count: str  # the analyte of the absolute count derived from this %
    source: str = Field(pattern=r"^CLINICAL\.md §\d+(\.\d+)* \[[VSM]\]$")  # e.g. "CLINICAL.md §9.1 [V]"


class DifferentialIn(Strict):
    leukocytes: str  # the analyte the counts are derived from (WBC)
    percent: dict[str, PercentIn] = Field(min_length=1)


class AnalytesFile(Strict):
    analytes: dict[str, AnalyteIn]
    differential: DifferentialIn | None = None
    local_codes: dict[str, str] = {}
    not_monitored: dict[str, str] = {}


class DrugNamesIn(Strict):
    synonyms: list[str] = []
    brands: list[str] = []
    sources: list[str] = Field(min_length=1)


class DrugClassIn(Strict):
    members: list[str] = Field(min_length=1)
    synonyms: list[str] = []
    sources: list[str] = Field(min_length=1)


class DrugsFile(Strict):
    sources: dict[str, str]
    drugs: dict[str, DrugNamesIn]
    classes: dict[str, DrugClassIn] = {}


class GradeTermIn(Strict):
    term: str
    kind: str
    direction: Literal["below", "above_uln_times"]
    cuts: list[float | Literal["LLN", "ULN"]]
    baseline_cuts: list[float] = []


class GradingMeta(Strict):
    name: str
    version: str
    source: str


class GradingFile(Strict):
    grading: GradingMeta
    terms: dict[str, GradeTermIn]


class StageIn(Strict):
    id: str
    every_days: int = Field(default=0, ge=0)  # not used with at_days
    window_days: int = Field(ge=0)
    panels: list[str] = Field(min_length=1)
    until_day: int | None = None
    count: int | None = Field(default=None, ge=1)
    until_dose_stable_days: int | None = None
    at_days: list[int] = []
    source: str

    @model_validator(mode="after")
    def _bounded_window(self) -> StageIn:
        if self.at_days:
            if sorted(set(self.at_days)) != self.at_days:
                raise ValueError("at_days must be increasing")
            gaps = [b - a for a, b in zip(self.at_days, self.at_days[1:], strict=False)]
        else:
            if self.every_days < 1:
                raise ValueError("give every_days (>= 1) or at_days")
            gaps = [self.every_days]
        if gaps and not 2 * self.window_days < min(gaps):
            raise ValueError("windows of neighbouring draws must not overlap: make window_days less than half the gap")
        return self


class ProfileMeta(Strict):
    id: str
    title: str
    anchor_drug: str
    source: str


class Restarts(Strict):
    dose_increase: int = Field(ge=0)
    restart_after_hold: int = Field(ge=0)
    interacting_drug: int = Field(ge=0)
    intermediate_genotype: int = Field(ge=0)
    impairment: int = Field(ge=0)  # the onset of a `restart_safety` threshold's breach (renal impairment)


class SafetyProfileFile(Strict):
    profile: ProfileMeta
    sources: dict[str, str]
    restarts: Restarts
    stages: list[StageIn] = Field(min_length=1)
    after_stop: StageIn | None = None  # counts after the drug stops; must end (at_days, count or until_day)


class StepIn(Strict):
    drug: str
    from_week: int = Field(ge=1)
    dose_mg: float | None = Field(default=None, ge=0)
    mg_per_kg: float | None = Field(default=None, ge=0)
    scale_with_weight: bool = False
    apply_target: bool = False
    source: str

    @model_validator(mode="after")
    def _one_dose(self) -> StepIn:
        if (self.dose_mg is None) == (self.mg_per_kg is None):
            raise ValueError("give exactly one of dose_mg and mg_per_kg")
        return self


class VariantIn(Strict):
    """One reading of part of a regimen's table (e.g. a taper as two sources print it): its steps are
    added to the regimen's shared steps when the protocol names it as the regimen's `variant`."""

    title: str
    source: str
    steps: list[StepIn] = Field(min_length=1)


class InductionIn(Strict):
    id: str
    title: str
    reference_weight_kg: float = Field(gt=0)
    max_scale: float = Field(default=1.0, gt=0)
    phases: list[Phase]
    continue_if_given: list[str] = []  # drugs given when a regimen phase starts continue at their dose
    continue_source: str = ""
    variant: str | None = None  # which of `variants` this protocol uses
    variants: dict[str, VariantIn] = {}
    source: str
    steps: list[StepIn]


class SafetyIn(Strict):
    profile: str
    phases: list[Phase]


class BaselineIn(Strict):
    panels: list[str] = Field(min_length=1)
    before_days: int = Field(ge=0)
    source: str


class InfectionScreenIn(Strict):
    tests: list[str] = Field(min_length=1)
    severity: Severity
    action: str
    source: str


class DiseaseIn(Strict):
    stages: list[StageIn] = Field(min_length=1)


class PhasesIn(Strict):
    start_on_first_dose_of: list[str]
    response_analytes: list[str] = Field(min_length=1)
    response_window_days: int = Field(ge=0)
    after_response: dict[Phase, Phase]
    source: str
    withdrawal_min_treatment_months: int = Field(ge=0)
    withdrawal_min_response_months: int = Field(ge=0)
    withdrawal_source: str


class ResponseIn(Strict):
    analyte: str
    non_response_day: int = Field(ge=1)
    non_response_window_days: int = Field(ge=0)
    non_response_min_fall: float = Field(gt=0, lt=1)
    insufficient_by_day: int = Field(ge=1)
    baseline_days: int = Field(ge=0)  # the pre-treatment value is at most this long before the phase start
    source: str


class RelapseIn(Strict):
    possible_analytes: list[str]
    relapse_analyte: str
    relapse_uln_times: float = Field(gt=1)
    repeat_after_days: int = Field(ge=1)
    repeat_within_days: int = Field(ge=1)
    repeat_panels: list[str]
    phases: list[Phase]
    source: str
    reinduction_action: str  # what the re-induction proposal says to do
    reinduction_source: str


class GeneticsIn(Strict):
    intermediate_factor: float = Field(ge=0.3, le=0.8)  # CPIC 2018: 30-80 %
    both_intermediate_factor: float = Field(ge=0.2, le=0.5)  # CPIC 2024 update: 20-50 %
    source: str


class DosingIn(Strict):
    maintenance_mg_per_kg: float | None = Field(default=None, gt=0)
    maintenance_phases: list[Phase] = []
    retarget_weight_change: float = Field(default=0.10, gt=0, lt=1)
    source: str
    gate_analyte: str | None = None
    gate_below: float | None = None
    gate_source: str = ""
    maintenance_after_stopping: list[str] = []  # the maintenance target waits until these drugs are stopped
    early_record_days: int = Field(ge=0)  # a dose recorded this many days before a step's date takes that step


class InteractionIn(Strict):
    id: str
    drugs: list[str] = Field(min_length=1)
    severity: Severity
    action: str
    source: str
    dose_factor: float | None = Field(default=None, gt=0, le=1)
    restart_safety: bool = False
    weekly_weeks: int | None = Field(default=None, ge=1)
    extra_draw_days: int | None = Field(default=None, ge=1)
    remind_on_dose_change: bool = False


class InteractionDrawsIn(Strict):
    """The blood counts an interacting drug asks for (`weekly_weeks`, `extra_draw_days`)."""

    panel: str
    weekly_window_days: int = Field(ge=0)
    extra_window_days: int = Field(ge=0)
    source: str


class TrendIn(Strict):
    analytes: list[str]
    falls: int = Field(ge=2)
    total_fall: float = Field(gt=0, lt=1)
    single_fall: float = Field(gt=0, lt=1)
    severity: Severity
    source: str


class RiseIn(Strict):
    analyte: str
    kind: str
    above_fraction: float = Field(gt=0)
    within_days: int = Field(ge=1)
    baseline_results: int = Field(ge=1)
    severity: Severity
    action: str
    source: str


class NadirRiseIn(Strict):
    analyte: str
    phases: list[Phase] = Field(min_length=1)
    above_nadir_times: float = Field(gt=1)
    recross_above: float | None = Field(default=None, gt=0)
    severity: Severity
    action: str
    source: str


class ConditionIn(Strict):
    analytes: list[str] = Field(min_length=1)
    below: float | None = None
    above: float | None = None
    above_uln_times: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_bound(self) -> ConditionIn:
        if sum(v is not None for v in (self.below, self.above, self.above_uln_times)) != 1:
            raise ValueError("give exactly one of below, above, above_uln_times")
        return self


class PatternIn(Strict):
    id: str
    kind: str
    conditions: list[ConditionIn] = Field(min_length=2)
    within_days: int = Field(ge=0)
    phases: list[Phase] = []
    severity: Severity
    action: str
    source: str


class TighteningIn(Strict):
    kinds: list[str]
    panel: str
    action_repeat_days: int = Field(ge=1)
    critical_repeat_days: int = Field(ge=1)
    hold_drug: str
    source: str


class ThresholdIn(Strict):
    id: str
    analyte: str
    kind: str
    severity: Severity
    action: str
    source: str
    below: float | None = None
    above: float | None = None
    above_uln_times: float | None = None
    unless_baseline_abnormal: bool = False
    withhold: bool = False  # the action withholds the anchor drug: its flag holds it until reviewed
    restart_safety: bool = False

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdIn:
        if sum(v is not None for v in (self.below, self.above, self.above_uln_times)) != 1:
            raise ValueError("give exactly one of below, above, above_uln_times")
        return self


class ProtocolMeta(Strict):
    id: str
    version: str
    title: str
    grading: str
    critical_min_grade: int = Field(default=3, ge=1, le=4)
    critical_action: str
    flag_lookback_days: int = Field(default=90, ge=1)
    missed_lookback_days: int = Field(default=90, ge=1)


class DrugIn(Strict):
    tablet_mg: float = Field(gt=0)


class TargetIn(Strict):
    min_mg_per_kg: float = Field(gt=0)
    max_mg_per_kg: float = Field(gt=0)
    source: str

    @model_validator(mode="after")
    def _ordered(self) -> TargetIn:
        if self.min_mg_per_kg > self.max_mg_per_kg:
            raise ValueError("min_mg_per_kg is above max_mg_per_kg")
        return self


class ProtocolFile(Strict):
    protocol: ProtocolMeta
    sources: dict[str, str]
    drugs: dict[str, DrugIn]
    induction: InductionIn | None = None
    dose_targets: dict[str, TargetIn] = {}
    safety: SafetyIn
    baseline: BaselineIn | None = None
    infection_screen: InfectionScreenIn | None = None
    disease: dict[Phase, DiseaseIn] = {}
    phases: PhasesIn | None = None
    response: ResponseIn | None = None
    relapse: RelapseIn | None = None
    genetics: GeneticsIn | None = None
    dosing: DosingIn
    interactions: list[InteractionIn] = []
    interaction_draws: InteractionDrawsIn | None = None
    trend: TrendIn | None = None
    rises: list[RiseIn] = []
    nadir_rises: list[NadirRiseIn] = []
    patterns: list[PatternIn] = []
    tightening: TighteningIn | None = None
    thresholds: list[ThresholdIn] = []
