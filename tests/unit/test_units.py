"""Codes and units through the analyte catalog (CLINICAL.md §9.1, §9.2; config/analytes.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.domain.analytes import ImpossibleValue, UnitProblem, normalise_unit
from tests.unit.builders import CATALOG

ANALYTES_FILE = Path(__file__).resolve().parents[2] / "config" / "analytes.toml"
FILE = tomllib.loads(ANALYTES_FILE.read_text(encoding="utf-8"))


def canonical(loinc: str, value: float, unit: str) -> float:
    analyte = CATALOG.analyte_for(loinc)
    assert analyte is not None, loinc
    return CATALOG.to_canonical(analyte, value, unit)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected"),
    [
        # counts: 10*3/uL family -> 10*9/L × 1 (§9.2 [V], admiral CV unit 10³/µL = SI unit)
        pytest.param("6690-2", 4.5, "10*3/uL", 4.5, id="§9.2[V] WBC 10*3/uL x1"),
        pytest.param("6690-2", 4.5, "K/uL", 4.5, id="§9.2[V] WBC K/uL x1"),
        pytest.param("6690-2", 4.5, "x10^3/µL", 4.5, id="§9.2[V] WBC x10^3/µL x1"),
        pytest.param("6690-2", 4.5, "10^3/mm3", 4.5, id="§9.2[V] WBC 10^3/mm3 x1"),
        pytest.param("6690-2", 4.5, "thou/uL", 4.5, id="§9.2[V] WBC thou/uL x1"),
        pytest.param("6690-2", 4.5, "10*9/L", 4.5, id="canonical 10*9/L"),
        pytest.param("6690-2", 4.5, "x10^9/L", 4.5, id="canonical spelled x10^9/L"),
        pytest.param("777-3", 210, "K/µL", 210, id="§9.2[V] PLT K/µL x1"),
        # cells per µL -> ÷ 1000 (§9.2 [M])
        pytest.param("6690-2", 4500, "/uL", 4.5, id="§9.2[M] WBC /uL /1000"),
        pytest.param("6690-2", 4500, "{cells}/uL", 4.5, id="§9.2[M] WBC {cells}/uL /1000"),
        pytest.param("751-8", 1500, "/mm3", 1.5, id="§9.2[M] NEUT /mm3 /1000"),
        pytest.param("731-0", 800, "{cells}/µL", 0.8, id="§9.2[M] LYMPH {cells}/µL /1000"),
        # mass -> SI
        pytest.param("1751-7", 3.5, "g/dL", 35, id="§9.2 albumin g/dL x10"),
        pytest.param("2465-3", 1200, "mg/dL", 12, id="§9.2 IgG mg/dL /100"),
        pytest.param("718-7", 13.5, "g/dL", 135, id="§9.2 Hb g/dL x10"),
        pytest.param("718-7", 6.2, "mmol/L", 99.9068, id="§9.2[M] Hb mmol/L x16.114"),
        # enzymes
        pytest.param("1742-6", 1.0, "ukat/L", 60, id="§9.2[M] ALT ukat/L x60"),
        pytest.param("1920-8", 0.5, "µkat/L", 30, id="§9.2[M] AST µkat/L x60"),
        pytest.param("6768-6", 2.0, "ukat/L", 120, id="§9.2[M] ALP ukat/L x60"),
        pytest.param("2324-2", 1.0, "ukat/L", 60, id="§9.2[M] GGT ukat/L x60"),
        pytest.param("1742-6", 42, "IU/L", 42, id="ALT IU/L x1"),
        pytest.param("1742-6", 42, "[IU]/L", 42, id="ALT [IU]/L x1"),
    ],
)
def test_it_converts_lab_units_to_the_canonical_unit(loinc: str, value: float, unit: str, expected: float) -> None:
    assert canonical(loinc, value, unit) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected"),
    [
        pytest.param("1975-2", 1.0, "mg/dL", 17.1, id="§9.2[M] bilirubin 1 mg/dL = 17.1 umol/L"),
        pytest.param("1975-2", 1.2, "mg/dL", 20.52, id="§9.3 bilirubin ULN 1.2 mg/dL ~ 21 umol/L"),
        pytest.param("1975-2", 6.0, "mg/dL", 102.6, id="§2.2 bilirubin gate 6 mg/dL = 102.6 umol/L"),
        pytest.param("1975-2", 10, "mg/L", 17.1, id="bilirubin mg/L"),
        pytest.param("2160-0", 1.0, "mg/dL", 88.4, id="§9.2[M] creatinine 1 mg/dL = 88.4 umol/L"),
        pytest.param("2160-0", 1.3, "mg/dL", 114.92, id="§9.3 creatinine 1.3 mg/dL ~ 115 umol/L"),
    ],
)
def test_it_converts_mass_to_molar_units_through_the_molar_mass(
    loinc: str, value: float, unit: str, expected: float
) -> None:
    # bilirubin 584.66 g/mol gives 17.104 per mg/dL; creatinine 113.12 g/mol gives 88.40: within 0.1 %
    assert canonical(loinc, value, unit) == pytest.approx(expected, rel=1e-3)


def test_molar_conversions_say_how_the_factor_was_derived() -> None:
    bili = CATALOG.analytes["BILI"]
    assert CATALOG.conversion(bili, "mg/dL").derivation == "× 0.01 g/L ÷ 584.66 g/mol"
    assert CATALOG.conversion(bili, "mg/dL").factor == pytest.approx(17.1, rel=1e-3)


@pytest.mark.parametrize(
    ("loinc", "unit"),
    [
        pytest.param("6690-2", "mg/dL", id="WBC in a mass unit"),
        pytest.param("718-7", "g/mL", id="Hb 13 g/mL is not an accepted unit"),
        pytest.param("1742-6", "mmol/L", id="ALT in mmol/L"),
        pytest.param("1751-7", "%", id="albumin in %"),
        pytest.param("6690-2", "", id="no unit at all"),
    ],
)
def test_an_unknown_unit_raises_a_unit_problem_naming_the_accepted_units(loinc: str, unit: str) -> None:
    analyte = CATALOG.analyte_for(loinc)
    assert analyte is not None
    with pytest.raises(UnitProblem) as caught:
        CATALOG.to_canonical(analyte, 13, unit)
    message = str(caught.value)
    assert "is not accepted for " + analyte.key in message
    for accepted in analyte.conversions:
        assert accepted in message


def test_a_missing_unit_is_shown_as_no_unit() -> None:
    with pytest.raises(UnitProblem, match=r"'\(no unit\)'"):
        canonical("6690-2", 4.5, " ")


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "shown"),
    [
        pytest.param("6690-2", 3.1, "/uL", "0.0031", id="WBC 3.1 /uL = 0.0031, below plausible 0.01"),
        pytest.param("777-3", 210000, "K/uL", "210000", id="PLT 210000 K/uL, above plausible 5000"),
        pytest.param("718-7", 135, "g/dL", "1350", id="Hb 135 g/dL = 1350 g/L, above plausible 300"),
        pytest.param("1751-7", 3.5, "g/L", "3.5", id="albumin 3.5 g/L (really g/dL), below plausible 5"),
        pytest.param("2160-0", 88, "mg/dL", "7779", id="creatinine 88 mg/dL (really umol/L)"),
    ],
)
def test_an_implausible_converted_value_raises_a_unit_problem(
    loinc: str, value: float, unit: str, shown: str
) -> None:
    with pytest.raises(UnitProblem) as caught:
        canonical(loinc, value, unit)
    message = str(caught.value)
    assert "outside the plausible range" in message and "check the unit" in message
    assert shown in message


@pytest.mark.parametrize(
    ("loinc", "unit", "possible"),
    [
        pytest.param("6690-2", "10*9/L", False, id="WBC 0: impossible (a placeholder or below detection)"),
        pytest.param("6690-2", "/uL", False, id="WBC 0 /uL"),
        pytest.param("777-3", "K/uL", False, id="PLT 0: impossible"),
        pytest.param("718-7", "g/dL", False, id="Hb 0: impossible"),
        pytest.param("751-8", "10*9/L", True, id="NEUT 0: absent neutrophils are a real result"),
        pytest.param("711-2", "10*9/L", True, id="EOS 0: absent eosinophils are a real result"),
    ],
)
def test_exact_zero_converts_only_where_the_analyte_can_be_zero(loinc: str, unit: str, possible: bool) -> None:
    if possible:
        assert canonical(loinc, 0, unit) == 0
    else:
        with pytest.raises(ImpossibleValue, match="zero_possible"):
            canonical(loinc, 0, unit)


@pytest.mark.parametrize(
    ("loinc", "value", "unit"),
    [
        pytest.param("6690-2", 0.01, "10*9/L", id="WBC at plausible low"),
        pytest.param("6690-2", 500, "10*9/L", id="WBC at plausible high"),
        pytest.param("777-3", 5000, "10*9/L", id="PLT at plausible high"),
    ],
)
def test_the_plausible_limits_themselves_are_accepted(loinc: str, value: float, unit: str) -> None:
    assert canonical(loinc, value, unit) == value


def test_just_outside_the_plausible_range_is_rejected() -> None:
    with pytest.raises(UnitProblem):
        canonical("777-3", 5000.1, "10*9/L")
    with pytest.raises(UnitProblem):
        canonical("6690-2", 0.0099, "10*9/L")


SYNONYMS = [
    pytest.param(code, key, id=f"§9.1 {code} -> {key}")
    for key, a in FILE["analytes"].items()
    for code in (a["loinc"], *a.get("synonyms", []))
]


@pytest.mark.parametrize(("code", "key"), SYNONYMS)
def test_every_loinc_code_and_synonym_maps_to_its_analyte(code: str, key: str) -> None:
    analyte = CATALOG.analyte_for(code)
    assert analyte is not None and analyte.key == key


def test_every_analyte_in_the_file_is_in_the_catalog() -> None:
    assert set(CATALOG.analytes) == set(FILE["analytes"])


@pytest.mark.parametrize(("code", "key"), sorted(FILE["local_codes"].items()))
def test_local_codes_map_case_insensitively_and_ignore_spaces(code: str, key: str) -> None:
    for spelling in (code, code.lower(), f" {code.upper()} "):
        analyte = CATALOG.analyte_for(spelling)
        assert analyte is not None and analyte.key == key


def test_not_monitored_codes_are_recognised_but_map_to_no_analyte() -> None:
    for code, why in FILE["not_monitored"].items():
        assert CATALOG.analyte_for(code) is None
        assert CATALOG.ignored_reason(code) == why


def test_an_unknown_code_maps_to_nothing() -> None:
    assert CATALOG.analyte_for("99999-9") is None
    assert CATALOG.ignored_reason("99999-9") is None


@pytest.mark.parametrize(
    ("unit", "folded"),
    [
        ("10^3/µL", "10*3/ul"),
        ("x10^9/L", "10*9/l"),
        ("X10^9/L", "10*9/l"),
        ("{cells}/uL", "/ul"),
        (" K / uL ", "k/ul"),
        ("μkat/L", "ukat/l"),  # Greek mu as well as the micro sign
        ("U/L", "u/l"),
    ],
)
def test_unit_spellings_fold_to_one_key(unit: str, folded: str) -> None:
    assert normalise_unit(unit) == folded


def test_every_accepted_unit_in_the_file_converts_with_its_factor() -> None:
    for key, a in FILE["analytes"].items():
        analyte = CATALOG.analytes[key]
        for unit, factor in a["units"].items():
            assert CATALOG.conversion(analyte, unit).factor == factor, (key, unit)
        assert CATALOG.conversion(analyte, a["unit"]).factor == 1, key
