"""Load and validate config/analytes.toml, config/drugs.toml, config/grading/*.toml and config/protocols/*.toml.

Errors name the file and the key, e.g. `aih-azathioprine.toml: thresholds[2].below: ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from monitor.domain.analytes import Analyte, Catalog, Conversion, Range, normalise_unit
from monitor.domain.drugs import DrugEntry, DrugVocabulary, SpellingClash, fold
from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    BaselineDraw,
    Condition,
    DiseaseClock,
    DoseTarget,
    Dosing,
    Drug,
    Genetics,
    GradeTerm,
    Grading,
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
    Stage,
    Threshold,
    Tightening,
    Trend,
)
from monitor.paths import config_dir
from monitor.protocol_schema import (
    MOLAR_SCALE,
    AnalyteIn,
    AnalytesFile,
    DifferentialIn,
    DosingIn,
    DrugsFile,
    GradingFile,
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
    StageIn,
    StepIn,
    ThresholdIn,
    TighteningIn,
    TrendIn,
)
from monitor.tomlfile import first_problem, read_toml

M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], path: Path) -> M:
    try:
        return model.model_validate(read_toml(path, ProtocolError))
    except ValidationError as e:
        where, what = first_problem(e)
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})") from None


def _analyte(key: str, a: AnalyteIn) -> Analyte:
    conversions = {normalise_unit(u): Conversion(f, f"× {f:g}") for u, f in a.units.items()}
    if a.molar_mass_g_per_mol is not None:
        scale = MOLAR_SCALE[a.unit]
        for unit, to_g_per_l in a.mass_units.items():
            factor = to_g_per_l / a.molar_mass_g_per_mol * scale
            conversions[normalise_unit(unit)] = Conversion(
                factor, f"× {to_g_per_l:g} g/L ÷ {a.molar_mass_g_per_mol:g} g/mol"
            )
    return Analyte(
        key=key, name=a.name, loinc=a.loinc, panel=a.panel, unit=a.unit,
        conversions=conversions, reference=Range(a.reference.low, a.reference.high),
        plausible=Range(a.plausible.low, a.plausible.high), synonyms=tuple(a.synonyms),
        zero_possible=a.zero_possible,
        reference_by_sex={sex: Range(r.low, r.high) for sex, r in a.reference_by_sex.items()},
    )


def load_catalog(directory: Path | None = None) -> Catalog:
    path = (directory or config_dir()) / "analytes.toml"
    data = _validated(AnalytesFile, path)
    analytes = {key: _analyte(key, a) for key, a in data.analytes.items()}
    codes: dict[str, str] = {}
    for key, a in analytes.items():
        for code in (a.loinc, *a.synonyms):
            codes[code.lower()] = key
    for code, key in data.local_codes.items():
        if key not in analytes:
            raise ProtocolError(f"{path.name}: local_codes.{code}: unknown analyte {key!r}")
        codes[code.lower()] = key
    ignored = {code.lower(): why for code, why in data.not_monitored.items()}
    if data.differential is None:
        return Catalog(analytes=analytes, codes=codes, ignored=ignored)
    percent = _differential(path, data.differential, analytes, codes, ignored)
    return Catalog(analytes=analytes, codes=codes, ignored=ignored, percent=percent,
                   leukocytes=data.differential.leukocytes)


def _differential(path: Path, d: DifferentialIn, analytes: dict[str, Analyte], codes: dict[str, str],
                  ignored: dict[str, str]) -> dict[str, str]:
    """% code (lower-cased) -> analyte of its absolute count; each count must take the WBC's units."""

    def fail(where: str, what: str) -> None:
        raise ProtocolError(f"{path.name}: differential.{where}: {what} (fix it in {path})")

    if d.leukocytes not in analytes:
        fail("leukocytes", f"unknown analyte {d.leukocytes!r}")
    wbc_units = set(analytes[d.leukocytes].conversions)
    for code, p in d.percent.items():
        if p.count not in analytes:
            fail(f"percent.{code}.count", f"unknown analyte {p.count!r}")
        if code.lower() in codes or code.lower() in ignored:
            fail(f"percent.{code}", "a % code must not also be an analyte's, local or not_monitored code")
        if missing := wbc_units - set(analytes[p.count].conversions):
            fail(f"percent.{code}.count", f"{p.count} must accept every {d.leukocytes} unit (a count is "
                 f"derived in the {d.leukocytes}'s unit); missing: {', '.join(sorted(missing))}")
    return {code.lower(): p.count for code, p in d.percent.items()}


def load_drug_list(directory: Path | None = None) -> DrugVocabulary:
    """config/drugs.toml: each drug's generic name, synonyms and brands, and the classes of drugs."""
    path = (directory or config_dir()) / "drugs.toml"
    data = _validated(DrugsFile, path)

    def fail(where: str, what: str) -> NoReturn:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    listed = [("drugs", key, d.sources) for key, d in data.drugs.items()]
    listed += [("classes", key, c.sources) for key, c in data.classes.items()]
    for table, key, sources in listed:
        if key != fold(key):
            fail(f"{table}.{key}", "the generic name (the key) must be lower case with single spaces")
        for tag in sources:
            if tag not in data.sources:
                fail(f"{table}.{key}.sources", f"unknown source tag {tag!r}; define it in [sources]")
    for key, c in data.classes.items():
        for member in c.members:
            if member not in data.drugs:
                fail(f"classes.{key}.members", f"unknown drug {member!r}; add a [drugs.{member}] table")
    entries = [DrugEntry(key, tuple(d.synonyms), tuple(d.brands), sources=tuple(d.sources))
               for key, d in data.drugs.items()]
    entries += [DrugEntry(key, tuple(c.synonyms), members=tuple(c.members), sources=tuple(c.sources))
                for key, c in data.classes.items()]
    try:
        return DrugVocabulary.of(entries)
    except SpellingClash as e:
        table = "classes" if e.entry.members else "drugs"
        fail(f"{table}.{e.entry.name}" + ("" if e.field_name == "name" else f".{e.field_name}"), str(e))


def load_grading(name: str, directory: Path, critical_min_grade: int) -> Grading:
    path = directory / "grading" / f"{name}.toml"
    data = _validated(GradingFile, path)
    terms = {
        analyte: GradeTerm(
            term=t.term, analyte=analyte, kind=t.kind, direction=t.direction,
            cuts=tuple(None if isinstance(c, str) else c for c in t.cuts),
            source=data.grading.source, baseline_cuts=tuple(t.baseline_cuts),
        )
        for analyte, t in data.terms.items()
    }
    return Grading(name=data.grading.name, version=data.grading.version, terms=terms,
                   critical_min_grade=critical_min_grade, source=data.grading.source)


def _stage(s: StageIn) -> Stage:
    return Stage(id=s.id, every_days=s.every_days, panels=tuple(s.panels), window_days=s.window_days,
                 until_day=s.until_day, count=s.count, until_dose_stable_days=s.until_dose_stable_days,
                 at_days=tuple(s.at_days), source=s.source)


@dataclass
class _Refs:
    """What a protocol file names, each with where it says so: checked together against what exists."""

    cited: list[tuple[str, str]] = field(default_factory=list)  # (key, source tag)
    drugs: list[tuple[str, str]] = field(default_factory=list)
    analytes: list[tuple[str, str]] = field(default_factory=list)
    panels: list[tuple[str, str]] = field(default_factory=list)


def _check_refs(path: Path, p: ProtocolFile, profile: SafetyProfileFile, sources: dict[str, str],
                catalog: Catalog, grading: Grading) -> None:
    """Every drug, analyte, panel and source tag a protocol names must exist."""

    def fail(where: str, what: str) -> NoReturn:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    refs = _Refs(cited=[("sources", grading.source)],
                 drugs=[("safety.profile anchor_drug", profile.profile.anchor_drug)])
    _schedule_refs(p, refs)
    _dosing_refs(path, p, refs)
    _rule_refs(p, refs, fail)
    _nadir_and_pattern_refs(p, grading, refs, fail)
    for analyte in grading.terms:
        if analyte not in catalog.analytes:
            fail("grading", f"{grading.name} term for unknown analyte {analyte!r}")
    if p.interaction_draws is None and any(x.weekly_weeks or x.extra_draw_days for x in p.interactions):
        fail("interaction_draws", "an interaction asks for blood counts: add an [interaction_draws] table "
                                  "(panel, weekly_window_days, extra_window_days, source)")
    panels = {a.panel for a in catalog.analytes.values()}
    for where, panel in refs.panels:
        if panel not in panels:
            fail(where, f"unknown panel {panel!r}; known: {sorted(panels)}")
    for where, drug in refs.drugs:
        if drug not in p.drugs:
            fail(where, f"unknown drug {drug!r}; add a [drugs.{drug}] table")
    for where, analyte in refs.analytes:
        if analyte not in catalog.analytes:
            fail(where, f"unknown analyte {analyte!r}; known: {', '.join(sorted(catalog.analytes))}")
    for where, tag in refs.cited:
        if tag not in sources:
            fail(where, f"unknown source tag {tag!r}; define it in [sources]")


def _schedule_refs(p: ProtocolFile, refs: _Refs) -> None:
    """The disease clocks, the baseline draw, the infection screen and the counts drugs ask for."""
    for phase, clock in p.disease.items():
        for i, st in enumerate(clock.stages):
            where = f"disease.{phase.value}.stages[{i}]"
            refs.cited.append((f"{where}.source", st.source))
            refs.panels += [(f"{where}.panels", panel) for panel in st.panels]
    if p.baseline is not None:
        refs.cited.append(("baseline.source", p.baseline.source))
        refs.panels += [("baseline.panels", panel) for panel in p.baseline.panels]
    if p.infection_screen is not None:
        refs.cited.append(("infection_screen.source", p.infection_screen.source))
    if p.interaction_draws is not None:
        refs.cited.append(("interaction_draws.source", p.interaction_draws.source))
        refs.panels.append(("interaction_draws.panel", p.interaction_draws.panel))
    if p.tightening is not None:
        refs.cited.append(("tightening.source", p.tightening.source))
        refs.drugs.append(("tightening.hold_drug", p.tightening.hold_drug))
        refs.panels.append(("tightening.panel", p.tightening.panel))


def _dosing_refs(path: Path, p: ProtocolFile, refs: _Refs) -> None:
    """The induction table, dose targets, genetics, the start gate and interactions."""
    refs.cited.append(("dosing.source", p.dosing.source))
    refs.drugs += [(f"dose_targets.{d}", d) for d in p.dose_targets]
    refs.cited += [(f"dose_targets.{d}.source", t.source) for d, t in p.dose_targets.items()]
    if p.induction is not None:
        refs.cited.append(("induction.source", p.induction.source))
        for where, step in _induction_steps(path, p.induction):
            refs.drugs.append((f"{where}.drug", step.drug))
            refs.cited.append((f"{where}.source", step.source))
        refs.cited += [(f"induction.variants.{v}.source", x.source) for v, x in p.induction.variants.items()]
        refs.drugs += [("induction.continue_if_given", d) for d in p.induction.continue_if_given]
        if p.induction.continue_if_given:
            refs.cited.append(("induction.continue_source", p.induction.continue_source))
    if p.genetics is not None:
        refs.cited.append(("genetics.source", p.genetics.source))
    refs.drugs += [("dosing.maintenance_after_stopping", d) for d in p.dosing.maintenance_after_stopping]
    if p.dosing.gate_analyte is not None:
        refs.analytes.append(("dosing.gate_analyte", p.dosing.gate_analyte))
        refs.cited.append(("dosing.gate_source", p.dosing.gate_source))
    refs.cited += [(f"interactions[{i}].source", x.source) for i, x in enumerate(p.interactions)]


def _rule_refs(p: ProtocolFile, refs: _Refs, fail: Callable[[str, str], NoReturn]) -> None:
    """Phases, response, relapse, trends, rises and thresholds (threshold ids must be unique)."""
    if p.phases is not None:
        refs.cited += [("phases.source", p.phases.source), ("phases.withdrawal_source", p.phases.withdrawal_source)]
        refs.drugs += [("phases.start_on_first_dose_of", d) for d in p.phases.start_on_first_dose_of]
        refs.analytes += [("phases.response_analytes", a) for a in p.phases.response_analytes]
    if p.response is not None:
        refs.cited.append(("response.source", p.response.source))
        refs.analytes.append(("response.analyte", p.response.analyte))
    if p.relapse is not None:
        refs.cited += [("relapse.source", p.relapse.source),
                       ("relapse.reinduction_source", p.relapse.reinduction_source)]
        refs.analytes += [("relapse.possible_analytes", a) for a in p.relapse.possible_analytes]
        refs.analytes.append(("relapse.relapse_analyte", p.relapse.relapse_analyte))
        refs.panels += [("relapse.repeat_panels", panel) for panel in p.relapse.repeat_panels]
    if p.trend is not None:
        refs.cited.append(("trend.source", p.trend.source))
        refs.analytes += [("trend.analytes", a) for a in p.trend.analytes]
    for i, r in enumerate(p.rises):
        refs.cited.append((f"rises[{i}].source", r.source))
        refs.analytes.append((f"rises[{i}].analyte", r.analyte))
    seen: set[str] = set()
    for i, t in enumerate(p.thresholds):
        refs.cited.append((f"thresholds[{i}].source", t.source))
        refs.analytes.append((f"thresholds[{i}].analyte", t.analyte))
        if t.id in seen:
            fail(f"thresholds[{i}].id", f"duplicate threshold id {t.id!r}")
        seen.add(t.id)


def _induction_steps(path: Path, i: InductionIn) -> list[tuple[str, StepIn]]:
    """The regimen's steps with where each is written: the shared steps and those of the variant the
    protocol names. A variant must be named when there are variants, and each drug's week only once."""

    def fail(where: str, what: str) -> NoReturn:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    if i.variant is None and i.variants:
        fail("induction.variant", f"name the variant this protocol uses: one of {', '.join(sorted(i.variants))}")
    if i.variant is not None and i.variant not in i.variants:
        known = ", ".join(sorted(i.variants)) or "none (add an [induction.variants.<name>] table)"
        fail("induction.variant", f"unknown variant {i.variant!r}; known: {known}")
    steps = [(f"induction.steps[{n}]", s) for n, s in enumerate(i.steps)]
    if i.variant is not None:
        steps += [(f"induction.variants.{i.variant}.steps[{n}]", s) for n, s in enumerate(i.variants[i.variant].steps)]
    seen: dict[tuple[str, int], str] = {}
    for where, step in steps:
        earlier = seen.setdefault((step.drug, step.from_week), where)
        if earlier != where:
            fail(where, f"{step.drug} week {step.from_week} is already given by {earlier}")
    return steps


def _nadir_and_pattern_refs(p: ProtocolFile, grading: Grading, refs: _Refs,
                            fail: Callable[[str, str], NoReturn]) -> None:
    """The source tags and analytes `[[nadir_rises]]` and `[[patterns]]` name; one nadir rule per
    analyte, and pattern ids and kinds of their own."""
    for i, n in enumerate(p.nadir_rises):
        refs.cited.append((f"nadir_rises[{i}].source", n.source))
        refs.analytes.append((f"nadir_rises[{i}].analyte", n.analyte))
        if n.analyte in (m.analyte for m in p.nadir_rises[:i]):
            fail(f"nadir_rises[{i}].analyte", f"a second nadir rule for {n.analyte!r}; give one per analyte")
    taken = {t.kind for t in p.thresholds} | {t.kind for t in grading.terms.values()}
    for i, x in enumerate(p.patterns):
        refs.cited.append((f"patterns[{i}].source", x.source))
        refs.analytes += [(f"patterns[{i}].conditions[{j}].analytes", a)
                          for j, c in enumerate(x.conditions) for a in c.analytes]
        if x.id in (y.id for y in p.patterns[:i]):
            fail(f"patterns[{i}].id", f"duplicate pattern id {x.id!r}")
        if x.kind in taken:
            fail(f"patterns[{i}].kind", f"kind {x.kind!r} is a threshold's or a grade's; give the pattern its own")


def _check_drug_names(path: Path, p: ProtocolFile, drug_list: DrugVocabulary) -> None:
    """Every drug a protocol names is in the drug list: a [drugs] table by its generic name (doses are
    stored under it), an interaction by any of the drug's names or by a class."""

    def fail(where: str, what: str) -> NoReturn:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    def unknown(name: str) -> str:
        hint = drug_list.did_you_mean(name)
        return f"unknown drug {name!r} (not in drugs.toml)" + (f"; {hint}" if hint else "")

    for name in p.drugs:
        generic = drug_list.canonical(name)
        if generic is None:
            fail(f"drugs.{name}", unknown(name))
        if generic != name:
            fail(f"drugs.{name}", f"{name!r} is another name for {generic!r} in drugs.toml; use the generic name")
    for i, x in enumerate(p.interactions):
        for j, name in enumerate(x.drugs):
            if drug_list.canonical(name) is None:
                fail(f"interactions[{i}].drugs[{j}]", unknown(name))


def _interacting(names: list[str], drug_list: DrugVocabulary) -> tuple[str, ...]:
    """An interaction's drugs by generic name, classes expanded: "trimethoprim-sulfamethoxazole" in a
    protocol matches "co-trimoxazole" recorded, and "ace inhibitor" matches ramipril."""
    generic: set[str] = set()
    for name in names:
        generic |= drug_list.matching(drug_list.canonical(name) or name)
    return tuple(sorted(generic))


def load_safety_profile(name: str, directory: Path, protocol_path: Path, catalog: Catalog) -> SafetyProfileFile:
    path = directory / "safety" / f"{name}.toml"
    if not path.is_file():
        known = sorted(f.stem for f in (directory / "safety").glob("*.toml"))
        raise ProtocolError(f"{protocol_path.name}: safety.profile: no safety profile {name!r}; known: "
                            f"{', '.join(known) or 'none'} (fix it in {protocol_path})")
    profile = _validated(SafetyProfileFile, path)
    panels = {a.panel for a in catalog.analytes.values()}

    def fail(where: str, what: str) -> None:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    stages = [(f"stages[{i}]", stage) for i, stage in enumerate(profile.stages)]
    if profile.after_stop is not None:
        stages.append(("after_stop", profile.after_stop))
    for where, stage in stages:
        if stage.source not in profile.sources:
            fail(f"{where}.source", f"unknown source tag {stage.source!r}; define it in [sources]")
        for panel in stage.panels:
            if panel not in panels:
                fail(f"{where}.panels", f"unknown panel {panel!r}; known: {sorted(panels)}")
    last = profile.stages[-1]
    if last.until_day is not None or last.count is not None or last.at_days:
        fail(f"stages[{len(profile.stages) - 1}]", "the last stage must be open-ended (no until_day, count or at_days)")
    if profile.after_stop is not None and _stage(profile.after_stop).open_ended:
        fail("after_stop", "the counts after a stop must end: give at_days, count or until_day")
    if profile.profile.source not in profile.sources:
        fail("profile.source", f"unknown source tag {profile.profile.source!r}; define it in [sources]")
    return profile


def load_protocol(path: Path, catalog: Catalog, drug_list: DrugVocabulary,
                  directory: Path | None = None) -> MonitoringProtocol:
    directory = directory or path.parent.parent
    p = _validated(ProtocolFile, path)
    _check_drug_names(path, p, drug_list)
    if not (directory / "grading" / f"{p.protocol.grading}.toml").is_file():
        raise ProtocolError(f"{path.name}: protocol.grading: no grading file {p.protocol.grading!r} in "
                            f"{directory / 'grading'} (fix it in {path})")
    grading = load_grading(p.protocol.grading, directory, p.protocol.critical_min_grade)
    profile = load_safety_profile(p.safety.profile, directory, path, catalog)
    sources = {**profile.sources, **p.sources}
    _check_refs(path, p, profile, sources, catalog, grading)
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
        disease={phase: DiseaseClock(phase, tuple(_stage(st) for st in c.stages)) for phase, c in p.disease.items()},
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
                    for _, step in _induction_steps(path, regimen)),
        continue_if_given=tuple(regimen.continue_if_given), continue_source=regimen.continue_source)


def _safety(profile: SafetyProfileFile) -> SafetySchedule:
    return SafetySchedule(
        id=profile.profile.id, title=profile.profile.title, anchor_drug=profile.profile.anchor_drug,
        stages=tuple(_stage(st) for st in profile.stages), source=profile.profile.source,
        restarts=profile.restarts.model_dump(),
        after_stop=None if profile.after_stop is None else _stage(profile.after_stop))


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


class Library:
    """Every protocol in a config folder, with the analyte catalog and the drug list they share."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        for shared in ("analytes.toml", "drugs.toml"):
            if not (self.directory / shared).is_file():
                raise ProtocolError(f"{self.directory}: no {shared}; a protocols directory needs analytes.toml, "
                                    "drugs.toml, grading/, safety/ and protocols/ like the packaged config/")
        self.catalog = load_catalog(self.directory)
        self.drug_list = load_drug_list(self.directory)
        self.protocols: dict[str, MonitoringProtocol] = {}
        for path in sorted((self.directory / "protocols").glob("*.toml")):
            protocol = load_protocol(path, self.catalog, self.drug_list, self.directory)
            if protocol.id != path.stem:
                raise ProtocolError(f"{path.name}: protocol.id {protocol.id!r} must match the file name")
            self.protocols[protocol.id] = protocol

    def get(self, protocol_id: str) -> MonitoringProtocol:
        try:
            return self.protocols[protocol_id]
        except KeyError:
            known = ", ".join(sorted(self.protocols)) or "none"
            raise ProtocolError(f"unknown protocol {protocol_id!r}; known: {known}") from None

    def ids(self) -> Iterable[str]:
        return self.protocols.keys()

    @cached_property
    def graders(self) -> list[MonitoringProtocol]:
        """One protocol per distinct grading (several protocols usually share CTCAE v5) and fallback
        ranges: the sex-neutral ones and each sex's (all from the catalog), so a result without a lab
        range is screened at ingestion, where the patient's sex is not looked up, against every one."""
        distinct: dict[tuple[str, str, int, str], MonitoringProtocol] = {}
        for p in self.protocols.values():
            for sex in ("", *p.sex_reference_ranges):
                distinct.setdefault((p.grading.name, p.grading.version, p.grading.critical_min_grade, sex),
                                    p.for_sex(sex))
        return list(distinct.values())


@cache
def packaged_library() -> Library:
    """The protocols shipped with monitor (loaded once per process)."""
    return Library()
