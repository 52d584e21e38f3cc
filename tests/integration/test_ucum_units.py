"""Units outside the analyte table are parsed as UCUM (ucumvert) and converted when the dimension
matches; anything else is quarantined, never guessed (CLINICAL.md §9.2: reject units not understood)."""

from __future__ import annotations

import pytest

from monitor.ingest.units import ucum_factor


@pytest.mark.parametrize(
    ("unit", "canonical", "factor"),
    [
        pytest.param("mg/L", "g/L", 0.001, id="albumin mg/L -> g/L (SI prefix)"),
        pytest.param("ug/dL", "g/L", 1e-5, id="mass concentration ug/dL -> g/L"),
        pytest.param("nmol/L", "umol/L", 0.001, id="bilirubin nmol/L -> umol/L"),
        pytest.param("10*6/mL", "10*9/L", 1.0, id="counts 10*6/mL = 10*9/L"),
        pytest.param("/nL", "10*9/L", 1.0, id="/nL = 10*9/L"),
    ],
)
def test_a_ucum_unit_of_the_same_dimension_converts(unit: str, canonical: str, factor: float) -> None:
    assert ucum_factor(unit, canonical) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("unit", "canonical"),
    [
        pytest.param("g/l-1", "g/L", id="g/l-1 parses as g.L: a different dimension (LAB-ORU quirk)"),
        pytest.param("mg/dL", "umol/L", id="mass to molar needs a molar mass: only the table does that"),
        pytest.param("furlongs", "10*9/L", id="not UCUM"),
        pytest.param("", "10*9/L", id="no unit"),
        pytest.param("%", "10*9/L", id="a percentage is not a count"),
    ],
)
def test_anything_else_is_not_converted(unit: str, canonical: str) -> None:
    assert ucum_factor(unit, canonical) is None
