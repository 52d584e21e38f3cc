"""Small builders for unit tests: the real packaged protocol and snapshots made of plain values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from monitor.domain.analytes import Catalog
from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import (
    DoseEvent,
    Genotype,
    Medication,
    Override,
    PhaseEpisode,
    Result,
    Snapshot,
    Weight,
)
from monitor.protocols import packaged_library

PROTOCOL: MonitoringProtocol = packaged_library().get("aih-azathioprine")
CATALOG: Catalog = packaged_library().catalog

#: A Monday, so week arithmetic is easy to read in failures.
START = date(2026, 1, 5)

#: TPMT and NUDT15 are tested before treatment (SPS baseline bloods, CPIC18): the default genotypes
#: are dated four weeks before the start, so they are known on every day a test looks at.
GENOTYPED = timedelta(days=28)


def day(n: int, start: date = START) -> date:
    return start + timedelta(days=n)


def week_starts(week: int, start: date = START) -> date:
    """Week N of a regimen starts 7 × (N - 1) days after the phase starts."""
    return start + timedelta(days=7 * (week - 1))


def result(analyte: str, value: float, *, on: date = START, status: str = "final",
           ref_low: float | None = None, ref_high: float | None = None, id: int = 1) -> Result:
    return Result(id=id, analyte=analyte, value=value, observed_on=on, status=status,
                  ref_low=ref_low, ref_high=ref_high)


def series(analyte: str, values: list[float], *, days: list[int], first_id: int = 1) -> tuple[Result, ...]:
    """One analyte's results on the given days after START, with distinct ids."""
    pairs = zip(values, days, strict=True)
    return tuple(result(analyte, v, on=day(n), id=first_id + i) for i, (v, n) in enumerate(pairs))


def responded(on: date, *, first_id: int = 100, alt: float = 30, ast: float = 30,
              igg: float = 12) -> tuple[Result, ...]:
    """ALT, AST and IgG at or below the fallback ULN (40, 40, 16) on one day: complete biochemical response."""
    return (result("ALT", alt, on=on, id=first_id), result("AST", ast, on=on, id=first_id + 1),
            result("IGG", igg, on=on, id=first_id + 2))


def snapshot(*, phase: Phase = Phase.INDUCTION, start: date = START, weight_kg: float | None = 60,
             doses: tuple[DoseEvent, ...] = (), results: tuple[Result, ...] = (),
             phases: tuple[PhaseEpisode, ...] | None = None,
             weights: tuple[Weight, ...] | None = None,
             genotypes: tuple[Genotype, ...] | None = None,
             medications: tuple[Medication, ...] = (),
             overrides: tuple[Override, ...] = (),
             acknowledged: Mapping[str, str] | None = None) -> Snapshot:
    tested = start - GENOTYPED
    return Snapshot(
        enrollment_id=1,
        start_on=start,
        phases=phases if phases is not None else (PhaseEpisode(phase, start),),
        weights=weights if weights is not None else (
            () if weight_kg is None else (Weight(start, weight_kg),)),
        doses=doses,
        results=results,
        genotypes=genotypes if genotypes is not None else (
            Genotype("TPMT", "normal", tested), Genotype("NUDT15", "normal", tested)),
        medications=medications,
        overrides=overrides,
        acknowledged=acknowledged or {},
    )


def on_azathioprine(anchor: date = START, *, doses: tuple[DoseEvent, ...] = (),
                    results: tuple[Result, ...] = (), weight_kg: float = 60,
                    medications: tuple[Medication, ...] = (),
                    genotypes: tuple[Genotype, ...] | None = None) -> Snapshot:
    """A patient in maintenance whose first recorded azathioprine dose (100 mg) is on `anchor`."""
    return snapshot(phase=Phase.MAINTENANCE, start=anchor, weight_kg=weight_kg,
                    doses=(DoseEvent("azathioprine", 100, anchor), *doses), results=results,
                    medications=medications, genotypes=genotypes)


def plan(snap: Snapshot, today: date) -> Plan:
    return evaluate(snap, PROTOCOL, today=today)
