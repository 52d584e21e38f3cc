"""A checked protocol file built into the domain's `MonitoringProtocol`, one section at a time."""


from __future__ import annotations

from pathlib import Path

from monitor.domain.analytes import Catalog, Range
from monitor.domain.drugs import DrugVocabulary
from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    BaselineDraw,
    Condition,
    DiseaseClock,
    DoseTarget,
    Dosing,
    Drug,
    Genetics,
    InductionRegimen,
    InductionStep,
    InfectionScreen,
    Interaction,
    InteractionDraws,
    MonitoringProtocol,
    NadirRise,
    Pattern,
    PhaseRules,
    RelapseRules,
    ResponseRules,
    RiseFromBaseline,
    SafetySchedule,
    Threshold,
    Tightening,
    Trend,
)
from monitor.protocols.checks import check_drug_names, check_refs, induction_steps
from monitor.protocols.files import validated
from monitor.protocols.profiles import load_grading, load_safety_profile, stage_of
from monitor.protocols.schema import (
    DosingIn,
    InductionIn,
    InfectionScreenIn,
    InteractionDrawsIn,
    InteractionIn,
    PatternIn,
    PhasesIn,
    ProtocolFile,
    RelapseIn,
    ResponseIn,
    SafetyProfileFile,
    ThresholdIn,
    TighteningIn,
    TrendIn,
)


def _interacting(names: list[str], drug_list: DrugVocabulary) -> tuple[str, ...]:
    """An interaction's drugs by generic name, classes expanded: "trimethoprim-sulfamethoxazole" in a
    protocol matches "co-trimoxazole" recorded, and "ace inhibitor" matches ramipril."""
    generic: set[str] = set()
    for name in names:
        generic |= drug_list.matching(drug_list.canonical(name) or name)
    return tuple(sorted(generic))


def load_protocol(path: Path, catalog: Catalog, drug_list: DrugVocabulary,
                  directory: Path | None = None) -> MonitoringProtocol:
    directory = directory or path.parent.parent
    p = validated(ProtocolFile, path)
    check_drug_names(path, p, drug_list)
    if not (directory / "grading" / f"{p.protocol.grading}.toml").is_file():
        raise ProtocolError(f"{path.name}: protocol.grading: no grading file {p.protocol.grading!r} in "
                            f"{directory / 'grading'} (fix it in {path})")
    grading = load_grading(p.protocol.grading, directory, p.protocol.critical_min_grade)
    profile = load_safety_profile(p.safety.profile, directory, path, catalog)
    sources = {**profile.sources, **p.sources}
    check_refs(path, p, profile, sources, catalog, grading)
    return MonitoringProtocol(
        id=p.protocol.id,
        version=p.protocol.version,
        title=p.protocol.title,
        sources=sources,
        drugs={name: Drug(name, dr.tablet_mg) for name, dr in p.drugs.items()},
        induction=_induction(path, p.induction),
        dose_targets={drug: DoseTarget(drug, x.min_mg_per_kg, x.max_mg_per_kg, x.source)
                      for drug, x in p.dose_targets.items()},
        safety=_safety(profile),
        safety_phases=tuple(p.safety.phases),
        disease={phase: DiseaseClock(phase, tuple(stage_of(st) for st in c.stages)) for phase, c in p.disease.items()},
        phase_rules=_phase_rules(p.phases),
        response=_response(p.response),
        relapse=_relapse(p.relapse),
        genetics=None if p.genetics is None else Genetics(p.genetics.intermediate_factor,
                                                          p.genetics.both_intermediate_factor, p.genetics.source),
        dosing=_dosing(p.dosing, catalog),
        interactions=tuple(_interaction(x, drug_list) for x in p.interactions),
        interaction_draws=_interaction_draws(p.interaction_draws),
        trend=_trend(p.trend),
        rises=tuple(RiseFromBaseline(r.analyte, r.kind, r.above_fraction, r.within_days, r.baseline_results,
                                     r.severity, r.action, r.source) for r in p.rises),
        nadir_rises=tuple(NadirRise(n.analyte, tuple(n.phases), n.above_nadir_times, n.severity, n.action, n.source,
                                    n.recross_above) for n in p.nadir_rises),
        patterns=tuple(_pattern(x) for x in p.patterns),
        tightening=_tightening(p.tightening),
        thresholds=tuple(_threshold(x) for x in p.thresholds),
        grading=grading,
        reference_ranges={k: a.reference for k, a in catalog.analytes.items()},
        panels={k: a.panel for k, a in catalog.analytes.items()},
        units={k: a.unit for k, a in catalog.analytes.items()},
        critical_action=p.protocol.critical_action,
        flag_lookback_days=p.protocol.flag_lookback_days,
        missed_lookback_days=p.protocol.missed_lookback_days,
        drug_list=drug_list,
        baseline=None if p.baseline is None else BaselineDraw(tuple(p.baseline.panels), p.baseline.before_days,
                                                              p.baseline.source),
        infection_screen=_infection_screen(p.infection_screen),
        sex_reference_ranges=_by_sex(catalog),
    )


# --- each section of a protocol file as the domain's value ----------------------------------------

def _induction(path: Path, regimen: InductionIn | None) -> InductionRegimen | None:
    if regimen is None:
        return None
    return InductionRegimen(
        id=regimen.id, title=regimen.title, reference_weight_kg=regimen.reference_weight_kg,
        max_scale=regimen.max_scale, phases=tuple(regimen.phases), source=regimen.source,
        steps=tuple(InductionStep(step.drug, step.from_week, step.dose_mg or 0.0, step.scale_with_weight,
                                  step.apply_target, step.source, step.mg_per_kg)
                    for _, step in induction_steps(path, regimen)),
        continue_if_given=tuple(regimen.continue_if_given), continue_source=regimen.continue_source)


def _safety(profile: SafetyProfileFile) -> SafetySchedule:
    return SafetySchedule(
        id=profile.profile.id, title=profile.profile.title, anchor_drug=profile.profile.anchor_drug,
        stages=tuple(stage_of(st) for st in profile.stages), source=profile.profile.source,
        restarts=profile.restarts.model_dump(),
        after_stop=None if profile.after_stop is None else stage_of(profile.after_stop))


def _phase_rules(phases: PhasesIn | None) -> PhaseRules | None:
    if phases is None:
        return None
    return PhaseRules(
        start_on_first_dose_of=tuple(phases.start_on_first_dose_of), response_analytes=tuple(phases.response_analytes),
        response_window_days=phases.response_window_days, after_response=dict(phases.after_response),
        withdrawal_min_treatment_months=phases.withdrawal_min_treatment_months,
        withdrawal_min_response_months=phases.withdrawal_min_response_months, source=phases.source,
        withdrawal_source=phases.withdrawal_source)


def _response(response: ResponseIn | None) -> ResponseRules | None:
    if response is None:
        return None
    return ResponseRules(
        analyte=response.analyte, non_response_day=response.non_response_day,
        non_response_window_days=response.non_response_window_days,
        non_response_min_fall=response.non_response_min_fall, insufficient_by_day=response.insufficient_by_day,
        source=response.source, baseline_days=response.baseline_days)


def _relapse(relapse: RelapseIn | None) -> RelapseRules | None:
    if relapse is None:
        return None
    return RelapseRules(
        possible_analytes=tuple(relapse.possible_analytes), relapse_analyte=relapse.relapse_analyte,
        relapse_uln_times=relapse.relapse_uln_times, repeat_after_days=relapse.repeat_after_days,
        repeat_within_days=relapse.repeat_within_days, repeat_panels=tuple(relapse.repeat_panels),
        phases=tuple(relapse.phases), source=relapse.source, reinduction_action=relapse.reinduction_action,
        reinduction_source=relapse.reinduction_source)


def _dosing(dosing: DosingIn, catalog: Catalog) -> Dosing:
    return Dosing(
        maintenance_mg_per_kg=dosing.maintenance_mg_per_kg, maintenance_phases=tuple(dosing.maintenance_phases),
        retarget_weight_change=dosing.retarget_weight_change, gate_analyte=dosing.gate_analyte,
        gate_below=dosing.gate_below, source=dosing.source, gate_source=dosing.gate_source,
        early_record_days=dosing.early_record_days,
        gate_name=catalog.analytes[dosing.gate_analyte].name if dosing.gate_analyte else "",
        maintenance_after_stopping=tuple(dosing.maintenance_after_stopping))


def _interaction(x: InteractionIn, drug_list: DrugVocabulary) -> Interaction:
    return Interaction(id=x.id, drugs=_interacting(x.drugs, drug_list), severity=x.severity, action=x.action,
                       source=x.source, dose_factor=x.dose_factor, restart_safety=x.restart_safety,
                       weekly_weeks=x.weekly_weeks, extra_draw_days=x.extra_draw_days,
                       remind_on_dose_change=x.remind_on_dose_change)


def _interaction_draws(draws: InteractionDrawsIn | None) -> InteractionDraws | None:
    if draws is None:
        return None
    return InteractionDraws(panel=draws.panel, weekly_window_days=draws.weekly_window_days,
                            extra_window_days=draws.extra_window_days, source=draws.source)


def _trend(trend: TrendIn | None) -> Trend | None:
    if trend is None:
        return None
    return Trend(tuple(trend.analytes), trend.falls, trend.total_fall, trend.single_fall, trend.severity,
                 trend.source)


def _pattern(x: PatternIn) -> Pattern:
    return Pattern(x.id, x.kind, tuple(Condition(tuple(c.analytes), c.below, c.above, c.above_uln_times)
                                       for c in x.conditions),
                   x.within_days, x.severity, x.action, x.source, tuple(x.phases))


def _tightening(tightening: TighteningIn | None) -> Tightening | None:
    if tightening is None:
        return None
    return Tightening(tuple(tightening.kinds), tightening.panel, tightening.action_repeat_days,
                      tightening.critical_repeat_days, tightening.hold_drug, tightening.source)


def _threshold(x: ThresholdIn) -> Threshold:
    return Threshold(id=x.id, analyte=x.analyte, kind=x.kind, severity=x.severity, source=x.source,
                     action=x.action, below=x.below, above=x.above, above_uln_times=x.above_uln_times,
                     unless_baseline_abnormal=x.unless_baseline_abnormal, withhold=x.withhold,
                     restart_safety=x.restart_safety)


def _infection_screen(screen: InfectionScreenIn | None) -> InfectionScreen | None:
    if screen is None:
        return None
    return InfectionScreen(tuple(screen.tests), screen.severity, screen.action, screen.source)


def _by_sex(catalog: Catalog) -> dict[str, dict[str, Range]]:
    """Sex -> analyte -> fallback range, for the analytes whose range differs by sex."""
    by_sex: dict[str, dict[str, Range]] = {}
    for key, analyte in catalog.analytes.items():
        for sex, reference in analyte.reference_by_sex.items():
            by_sex.setdefault(sex, {})[key] = reference
    return by_sex
