"""The monitoring protocol as plain values. Numbers come from config/protocols/*.toml."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from monitor.domain.analytes import Range
from monitor.domain.drugs import DrugVocabulary


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


#: Sort key for severities as stored (text), most severe first; `.get(s, 1)` puts unknown ones last.
MOST_SEVERE_FIRST = {s.value: -s.rank for s in Severity}


@dataclass(frozen=True)
class InductionStep:
    drug: str
    from_week: int
    dose_mg: float
    scale_with_weight: bool  # dose_mg is for the regimen's reference weight
    apply_target: bool  # clamp into the drug's mg/kg target range
    source: str
    mg_per_kg: float | None = None  # instead of dose_mg: this many mg per kg of body weight


@dataclass(frozen=True)
class InductionRegimen:
    id: str
    title: str
    reference_weight_kg: float
    max_scale: float  # weight scaling never goes above the table dose × max_scale
    phases: tuple[Phase, ...]  # phases whose start anchors week 1
    steps: tuple[InductionStep, ...]
    source: str
    #: Drugs that, when given as a regimen phase starts, continue at their dose instead of their
    #: steps (re-treatment repeats the steroid course; azathioprine restarts by the table only after a stop).
    continue_if_given: tuple[str, ...] = ()
    continue_source: str = ""


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
    """One stretch of a monitoring clock, counted in days from the clock's anchor.

    Either fixed days (`at_days`) or a repeating interval (`every_days`) that ends at
    `until_day`, after `count` draws, or never; `until_dose_stable_days` extends it while the
    anchor drug's dose has changed recently.
    """

    id: str
    every_days: int
    panels: tuple[str, ...]
    window_days: int  # a result this many days either side satisfies the draw
    until_day: int | None = None  # last draw of the stage on or before this day
    count: int | None = None  # or a fixed number of draws
    until_dose_stable_days: int | None = None  # and until the dose is unchanged this long
    at_days: tuple[int, ...] = ()  # or draws on exactly these days
    source: str = ""

    @property
    def open_ended(self) -> bool:
        return self.until_day is None and self.count is None and not self.at_days


@dataclass(frozen=True)
class SafetySchedule:
    """The drug-safety clock: counted from the anchor drug's start, restarted by events."""

    id: str
    title: str
    anchor_drug: str
    stages: tuple[Stage, ...]
    source: str
    #: event -> index of the stage the clock restarts at: dose_increase, restart_after_hold,
    #: interacting_drug, intermediate_genotype, impairment. A restart never makes monitoring less frequent.
    restarts: dict[str, int]
    #: Draws counted from each stop of the drug (delayed marrow suppression), until it starts again.
    after_stop: Stage | None = None


@dataclass(frozen=True)
class BaselineDraw:
    """Bloods before the anchor drug's first dose: due on that day, met by a result from the
    `before_days` before it (or a late one, until the next draw of the panel opens)."""

    panels: tuple[str, ...]
    before_days: int
    source: str


@dataclass(frozen=True)
class InfectionScreen:
    """Tests before the anchor drug starts that the product does not ingest as lab results (HBV, HCV,
    HIV, VZV immunity): a flag from the enrollment start, open until a clinician records the results
    by acknowledging it."""

    tests: tuple[str, ...]
    severity: Severity
    action: str
    source: str


@dataclass(frozen=True)
class DiseaseClock:
    """Draws the disease phase asks for, counted from the phase's start."""

    phase: Phase
    stages: tuple[Stage, ...]


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
    #: Not applied when the patient's baseline was already above ULN (disease activity, judged
    #: by the response and relapse rules instead).
    unless_baseline_abnormal: bool = False
    #: The action withholds the anchor drug: an unreviewed flag of this rule holds its pending steps.
    withhold: bool = False
    #: The onset of a breach (renal or hepatic impairment) restarts the drug-safety clock at the
    #: profile's `[restarts] impairment` stage (CLINICAL.md §3.2).
    restart_safety: bool = False


@dataclass(frozen=True)
class GradeTerm:
    """A CTCAE term. `cuts[g]` is the bound for grade g+1; `None` means the lab's LLN/ULN."""

    term: str
    analyte: str
    kind: str
    direction: str  # "below" (value < cut) or "above_uln_times" (value > cut × ULN)
    cuts: tuple[float | None, ...]
    source: str
    #: Grades against the patient's own baseline when that was already above ULN
    #: (value > cut × baseline), e.g. ALT in autoimmune hepatitis.
    baseline_cuts: tuple[float, ...] = ()


@dataclass(frozen=True)
class Grading:
    name: str  # "CTCAE"
    version: str
    terms: dict[str, GradeTerm]  # analyte -> term
    critical_min_grade: int
    source: str


@dataclass(frozen=True)
class PhaseRules:
    """When phases change by themselves and when the engine proposes a change (CLINICAL.md §1, §2)."""

    start_on_first_dose_of: tuple[str, ...]  # baseline -> induction
    response_analytes: tuple[str, ...]  # all at or below ULN: complete biochemical response
    response_window_days: int  # the response results must lie this close together
    after_response: dict[Phase, Phase]  # induction -> maintenance, reinduction -> lifelong
    withdrawal_min_treatment_months: int
    withdrawal_min_response_months: int
    source: str
    withdrawal_source: str


@dataclass(frozen=True)
class ResponseRules:
    """AIH response flags (IAIHG 2022): non-response at week 4, insufficient by month 6."""

    analyte: str  # ALT
    non_response_day: int  # 28
    non_response_window_days: int
    non_response_min_fall: float  # 0.5
    insufficient_by_day: int  # 182
    source: str
    baseline_days: int  # the pre-treatment value is at most this long before the phase start


@dataclass(frozen=True)
class RelapseRules:
    """Two-tier relapse flag after a response (CLINICAL.md §2.7)."""

    possible_analytes: tuple[str, ...]  # ALT, IGG above ULN
    relapse_analyte: str  # ALT
    relapse_uln_times: float  # >= 3 x ULN
    repeat_after_days: int  # the confirming repeat draw: from 14 ...
    repeat_within_days: int  # ... to 28 days after the possible relapse
    repeat_panels: tuple[str, ...]
    phases: tuple[Phase, ...]
    source: str
    reinduction_action: str  # what the re-induction proposal says to do
    reinduction_source: str


@dataclass(frozen=True)
class Genetics:
    """TPMT/NUDT15 (CPIC 2018): dose factors and what unknown and poor mean."""

    intermediate_factor: float
    both_intermediate_factor: float
    source: str


@dataclass(frozen=True)
class Interaction:
    id: str
    drugs: tuple[str, ...]
    severity: Severity
    action: str
    source: str
    dose_factor: float | None = None  # azathioprine dose × this from the start of the drug
    restart_safety: bool = False  # the drug-safety clock restarts (weekly counts)
    weekly_weeks: int | None = None  # ... for this many weeks of weekly counts
    extra_draw_days: int | None = None  # one extra count this many days after the start
    #: the flag again on each start, stop or change of the anchor drug's dose while the drug is taken
    remind_on_dose_change: bool = False


@dataclass(frozen=True)
class Trend:
    analytes: tuple[str, ...]
    falls: int  # consecutive falls ...
    total_fall: float  # ... totalling more than this fraction -> trend_down
    single_fall: float  # one fall of more than this fraction -> rapid_fall
    severity: Severity
    source: str


@dataclass(frozen=True)
class RiseFromBaseline:
    analyte: str
    kind: str
    above_fraction: float  # 0.30
    within_days: int  # 365
    baseline_results: int  # median of this many results before the anchor drug's start
    severity: Severity
    action: str
    source: str


@dataclass(frozen=True)
class NadirRise:
    """A liver test in (re)induction judged against the patient's own nadir since the phase started:
    the lowest result so far, not the diagnosis value (AIH: the delayed azathioprine start)."""

    analyte: str
    phases: tuple[Phase, ...]
    above_nadir_times: float  # a rise to more than this × the nadir (and above ULN) ...
    severity: Severity
    action: str
    source: str
    recross_above: float | None = None  # ... or above this cut after having fallen to or below it


@dataclass(frozen=True)
class Condition:
    """One part of a pattern: a result of any of `analytes` past exactly one bound."""

    analytes: tuple[str, ...]
    below: float | None = None
    above: float | None = None
    above_uln_times: float | None = None


@dataclass(frozen=True)
class Pattern:
    """Results that together suggest what none says alone (veno-occlusive disease, nodular
    regenerative hyperplasia): every condition met within `within_days`, while the drug is given."""

    id: str
    kind: str
    conditions: tuple[Condition, ...]
    within_days: int
    severity: Severity
    action: str
    source: str
    phases: tuple[Phase, ...] = ()  # only in these phases (empty: any phase the drug is given in)


@dataclass(frozen=True)
class Tightening:
    """Flags tighten the schedule: a repeat count soon, and a hold on the drug when critical."""

    kinds: tuple[str, ...]  # cytopenias
    panel: str
    action_repeat_days: int
    critical_repeat_days: int
    hold_drug: str
    source: str


@dataclass(frozen=True)
class Dosing:
    maintenance_mg_per_kg: float | None  # azathioprine monotherapy target in maintenance phases
    maintenance_phases: tuple[Phase, ...]
    retarget_weight_change: float  # re-target when weight moves more than this fraction
    gate_analyte: str | None  # bilirubin gate before the first azathioprine dose
    gate_below: float | None
    source: str
    gate_source: str
    early_record_days: int  # a dose recorded this many days before a step's date takes that step
    gate_name: str = ""  # the gate analyte's name, for `why` lines
    #: The maintenance target waits until these drugs are stopped (steroid-free maintenance).
    maintenance_after_stopping: tuple[str, ...] = ()


@dataclass(frozen=True)
class InteractionDraws:
    """The blood counts an interacting drug asks for: which panel, and the windows around them."""

    panel: str
    weekly_window_days: int
    extra_window_days: int
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
    safety_phases: tuple[Phase, ...]  # phases in which the anchor drug is given
    disease: dict[Phase, DiseaseClock]
    phase_rules: PhaseRules | None
    response: ResponseRules | None
    relapse: RelapseRules | None
    genetics: Genetics | None
    dosing: Dosing
    interactions: tuple[Interaction, ...]
    interaction_draws: InteractionDraws | None  # the counts interacting drugs ask for
    trend: Trend | None
    rises: tuple[RiseFromBaseline, ...]
    tightening: Tightening | None
    thresholds: tuple[Threshold, ...]
    grading: Grading
    reference_ranges: dict[str, Range]  # analyte -> fallback reference range (sex unknown)
    panels: dict[str, str]  # analyte -> panel
    units: dict[str, str]  # analyte -> canonical unit
    critical_action: str = "clinician review today"
    nadir_rises: tuple[NadirRise, ...] = ()
    patterns: tuple[Pattern, ...] = ()
    flag_lookback_days: int = 90
    missed_lookback_days: int = 90
    drug_list: DrugVocabulary = field(default_factory=DrugVocabulary)  # config/drugs.toml
    baseline: BaselineDraw | None = None
    infection_screen: InfectionScreen | None = None
    #: sex ("F", "M") -> analyte -> fallback reference range for that sex, where it differs
    sex_reference_ranges: dict[str, dict[str, Range]] = field(default_factory=dict)

    def for_sex(self, sex: str | None) -> MonitoringProtocol:
        """This protocol with the fallback reference ranges for a patient's sex; the sex-neutral (wider)
        ones when the sex is unknown. The lab's own range always wins (thresholds.reference_for)."""
        ranges = self.sex_reference_ranges.get(sex or "")
        if not ranges:
            return self
        return replace(self, reference_ranges={**self.reference_ranges, **ranges}, sex_reference_ranges={})

    def cite(self, tag: str) -> str:
        """The short human name of a source tag, for `why` lines."""
        return self.sources.get(tag, tag).split(":")[0]

    def withholding(self, rule_id: str) -> Threshold | None:
        """The threshold that raised a flag of this rule id, if its action withholds the anchor drug."""
        return next((t for t in self.thresholds if t.withhold and f"{self.id}/{t.id}" == rule_id), None)

    def interacts(self, recorded: str, interaction: Interaction) -> bool:
        """Whether a recorded drug is one of an interaction's drugs, matched by generic name."""
        return self.drug_list.generic(recorded) in interaction.drugs
