"""The prepare stage of ingestion (no database): which results are graded for a critical band."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from monitor.ingest.records import IncomingResult
from monitor.ingest.worker import fewer_collections
from monitor.services.prepare import Context, prepare
from tests.unit.builders import CATALOG

AT = datetime(2026, 1, 30, 9, tzinfo=UTC)
CTX = Context(catalog=CATALOG, clinic_zone=ZoneInfo("Europe/London"), hold_days=180, now=AT)


def wbc(value: str, status: str = "final", low: float | None = None, high: float | None = None) -> IncomingResult:
    return IncomingResult(format="csv", source_key=f"k{value}{status}{low}", origin="t", raw_source="{}",
                          mrn="M1", code="6690-2", value=value, unit="10*9/L", observed_at=AT, status=status,
                          ref_low=low, ref_high=high)


@pytest.mark.parametrize(("result", "screened"), [
    (wbc("5.0"), False),                          # inside the catalog's WBC range, 4.0-11.0 (analytes.toml)
    (wbc("1.0"), True),                           # below it
    (wbc("1.0", status="preliminary"), False),    # only final and corrected results raise flags
    (wbc("1.0", status="corrected"), True),
    (wbc("12.0", low=4.0, high=15.0), False),     # the lab's own range wins over the catalog's
    (wbc("5.0", low=6.0, high=10.0), True),
])
def test_only_a_final_or_corrected_result_outside_its_reference_range_is_graded_at_ingestion(
        result: IncomingResult, screened: bool) -> None:
    [pending] = prepare([result], CTX, (str, str)).pending
    assert pending.outside_range is screened


def test_fewer_collections_restores_the_collector_thresholds_even_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError), fewer_collections(young=12345):
        assert gc.get_threshold()[0] == 12345
        raise ValueError
    assert gc.get_threshold() == before
