"""Corrections and retractions through the real ingest service: replace, withdraw, never duplicate."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from monitor.db.tables import LabResult
from monitor.ingest.fhir_reader import read_json
from monitor.ingest.records import ReadOptions
from monitor.protocols import packaged_library
from monitor.services.ingest import Context, ingest_records
from monitor.services.patients import EnrollmentRequest, enroll

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
OPTIONS = ReadOptions(lab_zone=LONDON)


def observation(status: str, value: float, version: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "wbc-1", "meta": {"versionId": version}, "status": status,
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
            "subject": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": "FIX001"}},
            "effectiveDateTime": "2026-02-27T08:00:00Z",
            "valueQuantity": {"value": value, "unit": "10*3/uL", "system": "http://unitsofmeasure.org",
                              "code": "10*3/uL"}}


def ingest(session: Session, resource: dict[str, Any]) -> dict[str, int]:
    ctx = Context(catalog=packaged_library().catalog, clinic_zone=LONDON, hold_days=180, now=NOW,
                  library=packaged_library(), options=OPTIONS)
    report = ingest_records(session, read_json(resource, "feed", OPTIONS), ctx)
    return {k: v for k, v in report.as_dict().items() if isinstance(v, int) and v}


def test_an_amended_fhir_observation_corrects_the_stored_value_and_entered_in_error_retracts_it(
        session: Session) -> None:
    enroll(session, packaged_library(), EnrollmentRequest("FIX001", "aih-azathioprine", date(2026, 1, 5), 70,
                                                          tpmt="normal"),
           today=date(2026, 3, 1), now=NOW, actor="test")
    session.commit()
    assert ingest(session, observation("final", 5.0, "1")) == {"stored": 1}
    assert ingest(session, observation("final", 5.0, "1")) == {"duplicate": 1}
    assert ingest(session, observation("amended", 3.0, "2")) == {"corrected": 1}
    [row] = session.exec(select(LabResult)).all()
    assert (row.value, row.status) == (3.0, "corrected")
    assert ingest(session, observation("entered-in-error", 3.0, "3")) == {"retracted": 1}
    session.refresh(row)
    assert row.status == "retracted"
    assert ingest(session, observation("entered-in-error", 3.0, "3")) == {"ignored": 1}


def test_a_changed_value_without_a_correction_status_is_quarantined_not_stored_twice(session: Session) -> None:
    assert ingest(session, observation("final", 5.0, "1")) == {"held": 1}
    assert ingest(session, observation("final", 6.0, "2")) == {"quarantined": 1}
