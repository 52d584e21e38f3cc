"""Small builders for unit tests: the real packaged protocol and snapshots made of plain values."""

from __future__ import annotations

from datetime import date, timedelta

from monitor.domain.analytes import Catalog
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.snapshot import DoseEvent, Genotype, PhaseEpisode, Result, Snapshot, Weight
from monitor.protocols import packaged_library

PROTOCOL: MonitoringProtocol = packaged_library().get("aih-azathioprine")
CATALOG: Catalog = packaged_library().catalog

#: A Monday, so week arithmetic is easy to read in failures.
START = date(2026, 1, 5)


def day(n: int, start: date = START) -> date:
    return start + timedelta(days=n)


def week_starts(week: int, start: date = START) -> date:
    """Week N of a regimen starts 7 × (N - 1) days after the phase starts."""
    return start + timedelta(days=7 * (week - 1))


def result(analyte: str, value: float, *, on: date = START, status: str = "final",
           ref_low: float | None = None, ref_high: float | None = None, id: int = 1) -> Result:
    return Result(id=id, analyte=analyte, value=value, observed_on=on, status=status,
                  ref_low=ref_low, ref_high=ref_high)


def snapshot(*, phase: Phase = Phase.INDUCTION, start: date = START, weight_kg: float | None = 60,
             doses: tuple[DoseEvent, ...] = (), results: tuple[Result, ...] = (),
             phases: tuple[PhaseEpisode, ...] | None = None,
             weights: tuple[Weight, ...] | None = None,
             genotypes: tuple[Genotype, ...] | None = None) -> Snapshot:
    return Snapshot(
        enrollment_id=1,
        start_on=start,
        phases=phases if phases is not None else (PhaseEpisode(phase, start),),
        weights=weights if weights is not None else (
            () if weight_kg is None else (Weight(start, weight_kg),)),
        doses=doses,
        results=results,
        genotypes=genotypes if genotypes is not None else (
            Genotype("TPMT", "normal", start), Genotype("NUDT15", "normal", start)),
    )


def on_azathioprine(anchor: date = START, *, doses: tuple[DoseEvent, ...] = (),
                    results: tuple[Result, ...] = ()) -> Snapshot:
    """A patient in maintenance whose first recorded azathioprine dose (100 mg) is on `anchor`."""
    return snapshot(phase=Phase.MAINTENANCE, start=anchor,
                    doses=(DoseEvent("azathioprine", 100, anchor), *doses), results=results)
