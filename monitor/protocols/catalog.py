"""The catalogs every protocol shares: analytes (codes, units, ranges, %-differentials) and drugs
(generic names, synonyms, brands, classes)."""


from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from monitor.domain.analytes import Analyte, Catalog, Conversion, Range, normalise_unit
from monitor.domain.drugs import DrugEntry, DrugVocabulary, SpellingClash, fold
from monitor.domain.errors import ProtocolError
from monitor.paths import config_dir
from monitor.protocols.files import validated
from monitor.protocols.schema import (
    MOLAR_SCALE,
    AnalyteIn,
    AnalytesFile,
    DifferentialIn,
    DrugsFile,
)


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
    data = validated(AnalytesFile, path)
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
    data = validated(DrugsFile, path)

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
