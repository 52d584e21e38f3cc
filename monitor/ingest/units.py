"""UCUM unit parsing (ucumvert) for units the analyte table does not list.

The table in config/analytes.toml stays the first authority (it holds lab spellings that are not
UCUM, and molar-mass conversions). A unit it does not list is parsed as UCUM and converted when
its dimension matches the canonical unit exactly, e.g. `ug/L` or `nmol/L`; anything else stays
a unit problem. Plain pint must never read UCUM strings (`10*3/uL` would become 30/uL).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry  # about 0.8 s: only built when a table miss needs it

    return PintUcumRegistry()


@cache
def ucum_factor(unit: str, canonical: str) -> float | None:
    """`canonical = raw × factor` when `unit` is valid UCUM of the same dimension, else None."""
    if not unit.strip():
        return None
    try:
        registry = _registry()
        quantity = registry.from_ucum(unit.strip())
        target = registry.from_ucum(canonical)
        if quantity.dimensionality != target.dimensionality:
            return None
        return float((quantity / target).to("dimensionless").magnitude)
    except Exception:  # ucumvert raises several kinds for malformed units: all mean "not UCUM"
        log.debug("unit is not convertible UCUM")
        return None
