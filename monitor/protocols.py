"""Load and validate config/analytes.toml, config/grading/*.toml and config/protocols/*.toml.

Errors name the file and the key, e.g. `aih-azathioprine.toml: thresholds[2].below: ...`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.domain.analytes import Analyte, Catalog, Conversion, Range, normalise_unit
from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    DoseTarget,
    Drug,
    GradeTerm,
    Grading,
    InductionRegimen,
    InductionStep,
    MonitoringProtocol,
    Phase,
    SafetySchedule,
    Severity,
    Stage,
    Threshold,
)
from monitor.paths import config_dir

M = TypeVar("M", bound=BaseModel)
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
    reference: RangeIn
    plausible: RangeIn
    units: dict[str, float]
    mass_units: dict[str, float] = {}
    molar_mass_g_per_mol: float | None = None

    @model_validator(mode="after")
    def _units(self) -> AnalyteIn:
        if self.unit not in self.units or self.units[self.unit] != 1:
            raise ValueError(f"the canonical unit {self.unit!r} must be in units with factor 1")
        if self.mass_units and (self.molar_mass_g_per_mol is None or self.unit not in MOLAR_SCALE):
            raise ValueError("mass_units need molar_mass_g_per_mol and a molar canonical unit")
        return self


class AnalytesFile(Strict):
    analytes: dict[str, AnalyteIn]
    local_codes: dict[str, str] = {}
    not_monitored: dict[str, str] = {}


class GradeTermIn(Strict):
    term: str
    kind: str
    direction: Literal["below", "above_uln_times"]
    cuts: list[float | Literal["LLN", "ULN"]]


class GradingMeta(Strict):
    name: str
    version: str
    source: str


class GradingFile(Strict):
    grading: GradingMeta
    terms: dict[str, GradeTermIn]


class StepIn(Strict):
    drug: str
    from_week: int = Field(ge=1)
    dose_mg: float
    scale_with_weight: bool = False
    apply_target: bool = False
    source: str


class InductionIn(Strict):
    id: str
    title: str
    reference_weight_kg: float
    max_scale: float = 1.0
    phases: list[Phase]
    source: str
    steps: list[StepIn]


class StageIn(Strict):
    id: str
    every_days: int
    window_days: int
    panels: list[str]
    until_day: int | None = None
    count: int | None = None
    until_dose_stable_days: int | None = None
    source: str

    @model_validator(mode="after")
    def _bounded_window(self) -> StageIn:
        if self.every_days < 1 or not 0 <= 2 * self.window_days < self.every_days:
            raise ValueError("every_days must be >= 1 and windows of neighbouring draws must not overlap")
        return self


class SafetyIn(Strict):
    anchor_drug: str
    source: str
    stages: list[StageIn]


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
    flag_lookback_days: int = 90
    missed_lookback_days: int = 90


class DrugIn(Strict):
    tablet_mg: float


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
    thresholds: list[ThresholdIn] = []


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ProtocolError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ProtocolError(f"{path}: not valid TOML: {e}") from None


def _validated(model: type[M], path: Path) -> M:
    try:
        return model.model_validate(_read(path))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in first["loc"])
        raise ProtocolError(
            f"{path.name}: {where.replace('.[', '[')}: {first['msg']} (fix it in {path})"
        ) from None


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
    return Catalog(analytes=analytes, codes=codes, ignored=ignored)


def load_grading(name: str, directory: Path) -> Grading:
    path = directory / "grading" / f"{name}.toml"
    data = _validated(GradingFile, path)
    terms = {
        analyte: GradeTerm(
            term=t.term, analyte=analyte, kind=t.kind, direction=t.direction,
            cuts=tuple(None if isinstance(c, str) else c for c in t.cuts),
            source=data.grading.source,
        )
        for analyte, t in data.terms.items()
    }
    return Grading(name=data.grading.name, version=data.grading.version, terms=terms,
                   critical_min_grade=3, source=data.grading.source)


def _check_refs(path: Path, p: ProtocolFile, catalog: Catalog, grading: Grading) -> None:
    def fail(where: str, what: str) -> None:
        raise ProtocolError(f"{path.name}: {where}: {what} (fix it in {path})")

    panels = {a.panel for a in catalog.analytes.values()}
    cited: list[tuple[str, str]] = [("safety.source", p.safety.source)]
    drugs: list[tuple[str, str]] = [("safety.anchor_drug", p.safety.anchor_drug)]
    drugs += [(f"dose_targets.{d}", d) for d in p.dose_targets]
    cited += [(f"dose_targets.{d}.source", t.source) for d, t in p.dose_targets.items()]
    if p.induction is not None:
        cited.append(("induction.source", p.induction.source))
        for i, step in enumerate(p.induction.steps):
            drugs.append((f"induction.steps[{i}].drug", step.drug))
            cited.append((f"induction.steps[{i}].source", step.source))
    for i, stage in enumerate(p.safety.stages):
        cited.append((f"safety.stages[{i}].source", stage.source))
        for panel in stage.panels:
            if panel not in panels:
                fail(f"safety.stages[{i}].panels", f"unknown panel {panel!r}; known: {sorted(panels)}")
    if not p.safety.stages or p.safety.stages[-1].until_day is not None or p.safety.stages[-1].count:
        fail("safety.stages", "the last stage must be open-ended (no until_day or count)")
    seen: set[str] = set()
    for i, t in enumerate(p.thresholds):
        cited.append((f"thresholds[{i}].source", t.source))
        if t.analyte not in catalog.analytes:
            fail(f"thresholds[{i}].analyte", f"unknown analyte {t.analyte!r}")
        if t.id in seen:
            fail(f"thresholds[{i}].id", f"duplicate threshold id {t.id!r}")
        seen.add(t.id)
    for analyte in grading.terms:
        if analyte not in catalog.analytes:
            fail("grading", f"{grading.name} term for unknown analyte {analyte!r}")
    cited.append(("sources", grading.source))
    for where, drug in drugs:
        if drug not in p.drugs:
            fail(where, f"unknown drug {drug!r}; add a [drugs.{drug}] table")
    for where, tag in cited:
        if tag not in p.sources:
            fail(where, f"unknown source tag {tag!r}; define it in [sources]")


def load_protocol(path: Path, catalog: Catalog, directory: Path | None = None) -> MonitoringProtocol:
    directory = directory or path.parent.parent
    p = _validated(ProtocolFile, path)
    if not (directory / "grading" / f"{p.protocol.grading}.toml").is_file():
        raise ProtocolError(f"{path.name}: protocol.grading: no grading file {p.protocol.grading!r} in "
                            f"{directory / 'grading'} (fix it in {path})")
    grading = load_grading(p.protocol.grading, directory)
    grading = Grading(grading.name, grading.version, grading.terms,
                      p.protocol.critical_min_grade, grading.source)
    _check_refs(path, p, catalog, grading)
    induction = None
    if p.induction is not None:
        i = p.induction
        induction = InductionRegimen(
            id=i.id, title=i.title, reference_weight_kg=i.reference_weight_kg,
            max_scale=i.max_scale, phases=tuple(i.phases), source=i.source,
            steps=tuple(InductionStep(s.drug, s.from_week, s.dose_mg, s.scale_with_weight,
                                      s.apply_target, s.source) for s in i.steps),
        )
    return MonitoringProtocol(
        id=p.protocol.id,
        version=p.protocol.version,
        title=p.protocol.title,
        sources=dict(p.sources),
        drugs={name: Drug(name, d.tablet_mg) for name, d in p.drugs.items()},
        induction=induction,
        dose_targets={
            drug: DoseTarget(drug, t.min_mg_per_kg, t.max_mg_per_kg, t.source)
            for drug, t in p.dose_targets.items()
        },
        safety=SafetySchedule(
            anchor_drug=p.safety.anchor_drug,
            source=p.safety.source,
            stages=tuple(
                Stage(id=s.id, every_days=s.every_days, panels=tuple(s.panels),
                      window_days=s.window_days, until_day=s.until_day, count=s.count,
                      until_dose_stable_days=s.until_dose_stable_days, source=s.source)
                for s in p.safety.stages
            ),
        ),
        thresholds=tuple(
            Threshold(id=t.id, analyte=t.analyte, kind=t.kind, severity=t.severity,
                      source=t.source, action=t.action, below=t.below, above=t.above,
                      above_uln_times=t.above_uln_times)
            for t in p.thresholds
        ),
        grading=grading,
        reference_ranges={k: a.reference for k, a in catalog.analytes.items()},
        panels={k: a.panel for k, a in catalog.analytes.items()},
        units={k: a.unit for k, a in catalog.analytes.items()},
        critical_action=p.protocol.critical_action,
        flag_lookback_days=p.protocol.flag_lookback_days,
        missed_lookback_days=p.protocol.missed_lookback_days,
    )


class Library:
    """Every protocol in a config folder, with the analyte catalog they share."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        if not (self.directory / "analytes.toml").is_file():
            raise ProtocolError(f"{self.directory}: no analytes.toml; a protocols directory needs "
                                "analytes.toml, grading/ and protocols/ like the packaged config/")
        self.catalog = load_catalog(self.directory)
        self.protocols: dict[str, MonitoringProtocol] = {}
        for path in sorted((self.directory / "protocols").glob("*.toml")):
            protocol = load_protocol(path, self.catalog, self.directory)
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


@cache
def packaged_library() -> Library:
    """The protocols shipped with monitor (loaded once per process)."""
    return Library()
