"""Grading files (CTCAE versions) and drug-safety profiles a protocol selects."""


from __future__ import annotations

from pathlib import Path

from monitor.domain.analytes import Catalog
from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    GradeTerm,
    Grading,
    Stage,
)
from monitor.protocols.files import validated
from monitor.protocols.schema import (
    GradingFile,
    SafetyProfileFile,
    StageIn,
)


def load_grading(name: str, directory: Path, critical_min_grade: int) -> Grading:
    path = directory / "grading" / f"{name}.toml"
    data = validated(GradingFile, path)
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


def stage_of(s: StageIn) -> Stage:
    return Stage(id=s.id, every_days=s.every_days, panels=tuple(s.panels), window_days=s.window_days,
                 until_day=s.until_day, count=s.count, until_dose_stable_days=s.until_dose_stable_days,
                 at_days=tuple(s.at_days), source=s.source)


def load_safety_profile(name: str, directory: Path, protocol_path: Path, catalog: Catalog) -> SafetyProfileFile:
    path = directory / "safety" / f"{name}.toml"
    if not path.is_file():
        known = sorted(f.stem for f in (directory / "safety").glob("*.toml"))
        raise ProtocolError(f"{protocol_path.name}: safety.profile: no safety profile {name!r}; known: "
                            f"{', '.join(known) or 'none'} (fix it in {protocol_path})")
    profile = validated(SafetyProfileFile, path)
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
    if profile.after_stop is not None and stage_of(profile.after_stop).open_ended:
        fail("after_stop", "the counts after a stop must end: give at_days, count or until_day")
    if profile.profile.source not in profile.sources:
        fail("profile.source", f"unknown source tag {profile.profile.source!r}; define it in [sources]")
    return profile
