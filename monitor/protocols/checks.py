"""Cross-checks of a protocol file: every drug, analyte, panel and source tag it names exists."""


from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from monitor.domain.analytes import Catalog
from monitor.domain.drugs import DrugVocabulary
from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    Grading,
)
from monitor.protocols.schema import (
    InductionIn,
    ProtocolFile,
    SafetyProfileFile,
    StepIn,
)


@dataclass
class _Refs:
    """What a protocol file names, each with where it says so: checked together against what exists."""

    cited: list[tuple[str, str]] = field(default_factory=list)  # (key, source tag)
    drugs: list[tuple[str, str]] = field(default_factory=list)
    analytes: list[tuple[str, str]] = field(default_factory=list)
    panels: list[tuple[str, str]] = field(default_factory=list)


def check_refs(path: Path, p: ProtocolFile, profile: SafetyProfileFile, sources: dict[str, str],
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
        for where, step in induction_steps(path, p.induction):
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


def induction_steps(path: Path, i: InductionIn) -> list[tuple[str, StepIn]]:
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


def check_drug_names(path: Path, p: ProtocolFile, drug_list: DrugVocabulary) -> None:
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
