"""Which texts are lab values (no database): a plain ASCII decimal, an exponent only where the format
has one, never negative, 0 only where the analyte can be 0 (config/analytes.toml `zero_possible`).
Anything else is quarantined with the reason, never stored as a number Python's float() made of it."""

from __future__ import annotations

from datetime import UTC, datetime
from math import copysign
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domain.analytes import ImpossibleValue, UnitProblem, round6
from monitor.ingest.records import IncomingResult, parse_number
from monitor.services.prepare import Context, Prepared, prepare
from tests.unit.builders import CATALOG

AT = datetime(2026, 1, 30, 9, tzinfo=UTC)
CTX = Context(catalog=CATALOG, clinic_zone=ZoneInfo("Europe/London"), hold_days=180, now=AT)
FORMATS = ("csv", "synthea-csv", "hl7", "fhir")
#: LOINC code and a unit of each analyte: some that can be 0 (an absent cell line), some that cannot.
CODES = {"WBC": ("6690-2", "10*9/L"), "NEUT": ("751-8", "10*9/L"), "LYMPH": ("731-0", "10*9/L"),
         "EOS": ("711-2", "10*9/L"), "PLT": ("777-3", "10*9/L"), "HGB": ("718-7", "g/L"),
         "ALB": ("1751-7", "g/L"), "CREAT": ("2160-0", "umol/L"), "ALT": ("1742-6", "U/L")}


def result(value: str, analyte: str = "WBC", fmt: str = "csv") -> IncomingResult:
    code, unit = CODES[analyte]
    return IncomingResult(format=fmt, source_key="k:1", origin="t:2", raw_source="{}", mrn="M1",
                          code=code, value=value, unit=unit, observed_at=AT)


def prepared(value: str, analyte: str = "WBC", fmt: str = "csv") -> Prepared:
    return prepare([result(value, analyte, fmt)], CTX, (str, str))


def stored(value: str, analyte: str = "WBC", fmt: str = "csv") -> float | None:
    """The canonical value stored, or None when the record was quarantined (one or the other)."""
    out = prepared(value, analyte, fmt)
    assert len(out.pending) + out.report.quarantined == 1
    return out.pending[0].value if out.pending else None


def reason(value: str, analyte: str = "WBC", fmt: str = "csv") -> str:
    [row] = prepared(value, analyte, fmt).quarantine
    return str(row["reason"])


@pytest.mark.parametrize("value", [
    pytest.param("５.０", id="fullwidth digits"),
    pytest.param("٥", id="Arabic-Indic digit"),
    pytest.param("۵.۰", id="extended Arabic-Indic digits"),
    pytest.param("५", id="Devanagari digit"),
    pytest.param("𝟓", id="mathematical bold digit"),
    pytest.param("1_0", id="underscore between digits"),
    pytest.param("5\u00a0", id="a no-break space after it"),
    pytest.param("nan", id="nan"),
    pytest.param("inf", id="infinity"),
    pytest.param("0x10", id="hexadecimal"),
])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fullwidth_digit_or_other_value_float_accepts_is_quarantined(value: str, fmt: str) -> None:
    assert stored(value, fmt=fmt) is None
    why = reason(value, fmt=fmt)
    assert f"WBC value {value!r} is not a number" in why and "ASCII" in why


@pytest.mark.parametrize("fmt", ["csv", "synthea-csv", "hl7"])
@pytest.mark.parametrize("value", ["5e0", "5E0", "1e-320", "0.5e1"])
def test_an_exponent_is_quarantined_where_the_format_has_none(value: str, fmt: str) -> None:
    assert stored(value, fmt=fmt) is None
    assert "exponent" in reason(value, fmt=fmt)


@pytest.mark.parametrize(("value", "expected"), [("5e0", 5.0), ("5E0", 5.0), ("0.5e1", 5.0), ("6.5", 6.5)])
def test_a_fhir_json_number_may_carry_an_exponent(value: str, expected: float) -> None:
    assert stored(value, fmt="fhir") == expected


@pytest.mark.parametrize("analyte", sorted(CODES))
@pytest.mark.parametrize("value", ["-0", "-0.0", "-5", "-0.001"])
def test_a_negative_value_or_minus_zero_is_quarantined_for_every_analyte(value: str, analyte: str) -> None:
    assert stored(value, analyte) is None
    assert "negative" in reason(value, analyte)
    assert prepared(value, analyte).report.reasons == {"impossible value": 1}


@pytest.mark.parametrize(("analyte", "possible"), [
    ("WBC", False), ("PLT", False), ("HGB", False), ("ALB", False), ("CREAT", False), ("ALT", False),
    ("NEUT", True), ("LYMPH", True), ("EOS", True),  # an absent cell line is a real result
])
def test_zero_is_stored_only_for_an_analyte_whose_zero_is_possible(analyte: str, possible: bool) -> None:
    assert CATALOG.analytes[analyte].zero_possible is possible
    assert stored("0", analyte) == (0.0 if possible else None)
    if not possible:
        assert f"{analyte} 0 " in reason("0", analyte) and "zero_possible" in reason("0", analyte)


@pytest.mark.parametrize("analyte", ["WBC", "NEUT", "EOS"])
@pytest.mark.parametrize("value", ["1e-320", "5e-324", "1e-400", "2.2e-308", "1e-7"])
def test_a_denormal_or_underflowing_fhir_value_is_quarantined_not_stored_as_zero(value: str, analyte: str) -> None:
    assert stored(value, analyte, "fhir") is None


def test_a_plain_decimal_too_small_for_a_double_is_quarantined_not_read_as_zero() -> None:
    tiny = "0." + "0" * 400 + "1"
    assert parse_number(tiny) is None
    assert stored(tiny, "EOS") is None and "too small" in reason(tiny, "EOS")


def test_a_value_with_a_comparator_is_still_quarantined_as_a_censored_result() -> None:
    assert stored("< 0.5") is None
    assert "'< 0.5' is not a number" in reason("< 0.5") and "comparator" in reason("< 0.5")


def test_the_catalog_refuses_a_negative_or_impossible_zero_as_an_impossible_value() -> None:
    wbc, eos = CATALOG.analytes["WBC"], CATALOG.analytes["EOS"]
    for analyte, value in ((wbc, -0.0), (eos, -0.0), (eos, -1.0), (wbc, 0.0)):
        with pytest.raises(ImpossibleValue):
            CATALOG.to_canonical(analyte, value, "10*9/L")
    assert issubclass(ImpossibleValue, UnitProblem)
    assert CATALOG.to_canonical(eos, 0.0, "10*9/L") == 0.0


# --- the value grammar, over random text ---

DIGITS = st.characters(categories=["Nd"])  # every Unicode decimal digit, ASCII or not
PLAIN = st.from_regex(r"\A[+-]?(?:[0-9]{1,6}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})\Z")
EXPONENT = st.from_regex(r"\A[+-]?[0-9]{1,3}(?:\.[0-9]{0,3})?[eE][+-]?[0-9]{1,3}\Z")
ASCII_DIGITS = set("0123456789")
ODD = st.text(alphabet=st.one_of(DIGITS, st.sampled_from("_.eE+-<> \u00a0\u3000,")), min_size=1, max_size=10)


def plain_decimal(text: str, fmt: str) -> bool:
    """What a lab value is, written out without the product's regex: optional sign, ASCII digits with
    at most one decimal point, an exponent only in FHIR, spaces or tabs around."""
    body = text.strip(" \t")
    if fmt == "fhir" and body.lower().count("e") == 1:
        body, _, exponent = body.lower().partition("e")
        exponent = exponent[1:] if exponent[:1] in "+-" else exponent
        if not exponent or not set(exponent) <= ASCII_DIGITS:
            return False
    body = body[1:] if body[:1] in "+-" else body
    whole, _, fraction = body.partition(".")
    return bool(whole + fraction) and set(whole + fraction) <= ASCII_DIGITS


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(text=st.one_of(PLAIN, EXPONENT, ODD), fmt=st.sampled_from(FORMATS), analyte=st.sampled_from(sorted(CODES)))
def test_only_a_plain_ascii_decimal_is_stored_and_zero_only_when_sent_for_an_analyte_that_can_be_zero(
        text: str, fmt: str, analyte: str) -> None:
    value = stored(text, analyte, fmt)
    if not plain_decimal(text, fmt):
        assert value is None, f"{text!r} ({fmt}) is not a plain ASCII decimal but was stored as {value}"
        return
    if value is None:
        return  # a lab value, but negative, implausible or an impossible zero
    mantissa = text.strip(" \t").lower().partition("e")[0]
    assert not mantissa.startswith("-"), f"negative {text!r} stored as {value}"
    if value == 0:
        assert CATALOG.analytes[analyte].zero_possible, f"{text!r} stored as 0 for {analyte}"
        assert not any(c in "123456789" for c in mantissa), f"{text!r} is not 0 but was stored as 0"
    else:
        low = CATALOG.analytes[analyte].plausible.low
        assert low is not None and value >= low


@given(st.floats(allow_nan=False) | st.integers(0, 9).flatmap(
    lambda places: st.decimals(-10**10, 10**10, places=places, allow_nan=False, allow_infinity=False)).map(float))
@settings(max_examples=3000)
def test_a_value_is_rounded_to_six_decimals_exactly_as_round_does_it(value: float) -> None:
    """`round6` skips `round(value, 6)` for a value with six decimals or fewer: the same double,
    whatever the value (a lab's decimal, any double, beyond the range where it may skip)."""
    rounded = round6(value)
    assert rounded == round(value, 6) and copysign(1.0, rounded) == copysign(1.0, round(value, 6))
