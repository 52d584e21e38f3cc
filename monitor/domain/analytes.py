"""Analytes: which codes name them, their canonical unit and how other units convert to it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from math import copysign


@lru_cache(maxsize=4096)
def normalise_unit(unit: str) -> str:
    """Fold the spellings labs use for one unit into one key (`10^3/µL` -> `10*3/ul`)."""
    folded = re.sub(r"\{[^}]*\}", "", unit.strip())  # UCUM annotations are unity: {cells}/uL
    folded = re.sub(r"^cells(?=/)", "", folded, flags=re.IGNORECASE)  # US spelling of {cells}/uL
    folded = folded.replace(" ", "").replace("^", "*").replace("µ", "u").replace("μ", "u")
    if folded[:1] in ("x", "X") and folded[1:3] == "10":
        folded = folded[1:]
    return folded.lower()


def round6(value: float) -> float:
    """`round(value, 6)`, without its cost (a correctly rounded decimal conversion, the dearest step
    of preparing a result) when `value` has six decimals or fewer already, as a lab value has: then
    the shortest decimal that reads as it (`repr`) is that rounding, and the value is returned as it
    is. Exact for |value| < 1e9, where a double's spacing is far below 0.5e-6."""
    text = repr(value)
    dot = text.find(".")
    if dot >= 0 and len(text) - dot <= 7 and "e" not in text and -1e9 < value < 1e9:
        return value
    return round(value, 6)


#: The most codes a catalog remembers the %-differential of (`Catalog.count_for_percent`): a
#: hostile file's endless distinct codes must not grow it without end.
REMEMBERED_CODES = 4096


@dataclass(frozen=True)
class Range:
    low: float | None
    high: float | None

    def __str__(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        return f"{low}–{high}"


@dataclass(frozen=True)
class Conversion:
    """`canonical = raw × factor`; `derivation` says where the factor comes from."""

    factor: float
    derivation: str


@dataclass(frozen=True)
class Analyte:
    key: str  # short name used everywhere: WBC, NEUT, ALT...
    name: str
    loinc: str
    panel: str  # the draw this analyte belongs to: CBC, LFT, RENAL, IGG
    unit: str  # canonical UCUM unit
    conversions: dict[str, Conversion]  # normalised unit -> conversion to canonical
    reference: Range
    plausible: Range  # non-zero canonical values outside this are quarantined, never guessed
    synonyms: tuple[str, ...] = ()
    zero_possible: bool = False  # a result of exactly 0 is real (an absent cell line), not an error
    reference_by_sex: dict[str, Range] = field(default_factory=dict)  # "F"/"M" -> fallback range, if it differs


class UnitProblem(ValueError):
    """A value that cannot be stored exactly in the canonical unit; the message is the reason."""


class ImpossibleValue(UnitProblem):
    """A value no patient can have, whatever the unit: negative (or -0), or 0 where 0 is impossible."""


@dataclass(frozen=True)
class Catalog:
    analytes: dict[str, Analyte]
    codes: dict[str, str]  # LOINC or local code (lower-cased) -> analyte key
    ignored: dict[str, str] = field(default_factory=dict)  # code -> why it is not monitored
    #: %-differentials: a % of leukocytes code (lower-cased) -> key of the analyte of its absolute
    #: count, derived as `leukocytes` × % / 100 (config/analytes.toml [differential]).
    percent: dict[str, str] = field(default_factory=dict)
    leukocytes: str | None = None
    #: `count_for_percent` of each code asked about (asked for every record a reader reads).
    _percent_of: dict[str, Analyte | None] = field(default_factory=dict, init=False, compare=False, repr=False)

    def analyte_for(self, code: str) -> Analyte | None:
        key = self.codes.get(code.strip().lower())
        return self.analytes[key] if key else None

    def count_for_percent(self, code: str) -> Analyte | None:
        """The analyte whose absolute count a %-differential code gives, or None (not a %)."""
        try:
            return self._percent_of[code]
        except KeyError:
            key = self.percent.get(code.strip().lower())
            found = self.analytes[key] if key else None
            if len(self._percent_of) < REMEMBERED_CODES:
                self._percent_of[code] = found
            return found

    def ignored_reason(self, code: str) -> str | None:
        return self.ignored.get(code.strip().lower())

    @staticmethod
    def conversion(analyte: Analyte, unit: str) -> Conversion:
        """How `unit` converts to the analyte's canonical unit.

        Raises:
            UnitProblem: the unit is not accepted for this analyte.
        """
        conversion = analyte.conversions.get(normalise_unit(unit))
        if conversion is None:
            shown = unit if unit.strip() else "(no unit)"
            raise UnitProblem(
                f"unit {shown!r} is not accepted for {analyte.key}; accepted: "
                + ", ".join(sorted(analyte.conversions))
            )
        return conversion

    def to_canonical(self, analyte: Analyte, value: float, unit: str, factor: float | None = None) -> float:
        """Convert `value unit` to the analyte's canonical unit (with `factor`, if given, instead of
        the table's).

        Raises:
            ImpossibleValue: the value is negative or -0, or 0 for an analyte that cannot be 0.
            UnitProblem: the unit is not accepted for this analyte, or the converted value is
                outside the plausible range (a wrong unit is more likely than such a value).
        """
        if value < 0 or copysign(1.0, value) < 0:
            raise ImpossibleValue(f"{analyte.key} {value:g} {unit} is negative; no lab value is below 0 (-0 "
                                  "included): have the lab correct it")
        if value == 0:
            if analyte.zero_possible:
                return 0.0
            raise ImpossibleValue(
                f"{analyte.key} 0 {unit} is impossible: a {analyte.name.lower()} result is never 0 "
                "(config/analytes.toml zero_possible); a 0 is a placeholder or a result below the "
                "limit of detection: check it with the lab"
            )
        canonical = round6(value * (factor if factor is not None else self.conversion(analyte, unit).factor))
        low, high = analyte.plausible.low, analyte.plausible.high
        if canonical == 0 or (low is not None and canonical < low) or (high is not None and canonical > high):
            raise UnitProblem(
                f"{analyte.key} {value:g} {unit} is {canonical:g} {analyte.unit}, outside the "
                f"plausible range {analyte.plausible} {analyte.unit}; check the unit"
            )
        return canonical
