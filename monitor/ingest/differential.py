"""%-differentials: the absolute count of a cell line sent only as a % of leukocytes, for every reader.

The protocols' rules read absolute counts (BSR: neutrophils below 1.6 × 10⁹/L), and a lab may send
neutrophils only as a % (770-8). With a WBC in the same draw the count is derived, WBC × % / 100 in
the WBC's unit (CLINICAL.md §9.1), and takes the place of the % (one record in, one outcome out:
the % is accounted for as its count, stored or held). A % whose absolute count the lab sent, or
that another % of the same cell line already gave, is counted `ignored`. A % that gives no count
(no WBC in its draw, not a number, not in %) is quarantined with the reason. Which codes are
%-differentials is config/analytes.toml [differential]. Each reader says what a draw is (an HL7 OBR
group, a FHIR report or panel, neighbouring CSV rows) and how a derived record is keyed and kept
for replay (`derive`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from math import copysign

from monitor.domain.analytes import Analyte, Catalog
from monitor.ingest.records import (
    EXPONENT_FORMATS,
    IncomingResult,
    RawSource,
    Record,
    Skipped,
    Unreadable,
    number_problem,
    parse_number,
)


@dataclass(frozen=True)
class Derivation:
    """An absolute count to derive from a % and the WBC of its draw."""

    percent: IncomingResult
    wbc: IncomingResult
    count: Analyte  # the analyte of the absolute count (NEUT)

    @property
    def cells(self) -> str:
        return _cells(self.count)

    @property
    def value(self) -> str:
        """WBC × % / 100, exact (both are checked decimals), in plain notation."""
        product = Decimal(self.wbc.value.strip()) * Decimal(self.percent.value.strip()) / 100
        return f"{product.normalize():f}"

    @property
    def note(self) -> str:
        return f"derived: {self.cells} = WBC {self.wbc.value} {self.wbc.unit} x {self.percent.value} % / 100"

    def result(self, source_key: str, origin: str, raw_source: RawSource, order_key: str | None = None,
               ) -> IncomingResult:
        """The derived count: the %'s patient and time, the WBC's unit; preliminary if either was."""
        statuses = {self.wbc.status, self.percent.status}
        return IncomingResult(
            format=self.percent.format, source_key=source_key, origin=origin, raw_source=raw_source,
            mrn=self.percent.mrn, code=self.count.loinc, value=self.value, unit=self.wbc.unit,
            observed_at=self.percent.observed_at, order_key=order_key,
            status=next((s for s in ("preliminary", "corrected") if s in statuses), "final"),
        )


def with_absolute_counts(records: list[Record], catalog: Catalog, derive: Callable[[Derivation], IncomingResult],
                         draw: str) -> list[Record]:
    """The records of one draw with each %-differential replaced: by its derived absolute count
    (`derive` makes the record), by a `Skipped` (counted ignored) when its absolute count was sent
    or derived from another %, else by an `Unreadable` saying why not. `draw` says what a draw is,
    for that reason. As many records come out as went in."""
    percents = [r for r in records if isinstance(r, IncomingResult) and r.status != "retracted"
                and catalog.count_for_percent(r.code) is not None]
    if not percents:
        return records  # no differential: the common case
    results = [r for r in records if isinstance(r, IncomingResult)]
    counted = {a.key: "was sent" for r in results if (a := catalog.analyte_for(r.code)) is not None}
    replaced: dict[int, Record] = {}
    for pct in percents:
        count = catalog.count_for_percent(pct.code)
        assert count is not None
        if count.key not in counted:
            wbc = _wbc(results, pct, catalog)
            problem = _problem(pct, wbc, count, draw)
            if wbc is None or problem:
                replaced[id(pct)] = Unreadable(pct.format, pct.origin, pct.raw, problem)
                continue
            replaced[id(pct)] = derive(Derivation(pct, wbc, count))
            counted[count.key] = f"is derived from {pct.code} and the WBC"
            continue
        replaced[id(pct)] = Skipped(pct.origin, f"{pct.code}: {_cells(count)} as a % of leukocytes; its "
                                    f"absolute count ({count.key}) {counted[count.key]}")
    return [replaced.get(id(r), r) for r in records]


def derived_from(parts: list[Record], catalog: Catalog, derive: Callable[[Derivation], IncomingResult],
                 draw: str) -> Record | None:
    """The one count derived from `parts` (a WBC and a %, read again for quarantine replay), or
    None when they no longer give exactly one."""
    derived = [r for r, part in zip(with_absolute_counts(parts, catalog, derive, draw), parts, strict=True)
               if r is not part and isinstance(r, IncomingResult)]
    return derived[0] if len(derived) == 1 else None


def _cells(count: Analyte) -> str:
    return count.name.removesuffix(" (absolute)").lower()


def _number(r: IncomingResult) -> float | None:
    return parse_number(r.value, exponent=r.format in EXPONENT_FORMATS)


def _wbc(results: list[IncomingResult], pct: IncomingResult, catalog: Catalog) -> IncomingResult | None:
    """The first WBC of the draw, of the %'s patient, with a value above 0 to derive from."""
    for r in results:
        analyte = catalog.analyte_for(r.code)
        if (analyte is not None and analyte.key == catalog.leukocytes and r.status != "retracted"
                and r.mrn == pct.mrn and (n := _number(r)) is not None and n > 0):
            return r
    return None


def _problem(pct: IncomingResult, wbc: IncomingResult | None, count: Analyte, draw: str) -> str:
    """Why no absolute count can be derived from `pct`, or ""."""
    cells = _cells(count)
    fix = f"have the lab send the absolute count ({count.loinc}) or the WBC with the %, then replay"
    if wbc is None:
        return (f"{pct.code} is {cells} as a % of leukocytes, and there is no WBC (with a value above 0) "
                f"{draw} to derive the absolute count from (WBC x % / 100); {fix}")
    if pct.unit.strip() != "%":
        return f"{pct.code} ({cells} %): unit {pct.unit!r} is not %, so no absolute count is derived; {fix}"
    number = _number(pct)
    if number is None:
        return (f"{pct.code} ({cells} %): value {pct.value!r} is not a number: "
                f"{number_problem(pct.value, exponent=pct.format in EXPONENT_FORMATS)}")
    if not 0 <= number <= 100 or copysign(1.0, number) < 0:
        return f"{pct.code}: {cells} {pct.value} % is not a percentage (0 to 100); {fix}"
    return ""
