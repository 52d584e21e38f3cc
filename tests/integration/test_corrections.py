"""Corrections and retractions through the real ingest service: replace, withdraw, never duplicate."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from monitor.db.tables import HeldResult, LabResult
from monitor.ingest.fhir_reader import read_json
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.records import IncomingResult, ReadOptions, Record
from monitor.protocols import packaged_library
from monitor.services.ingest import ingest_records
from monitor.services.patients import EnrollmentRequest, enroll
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
OPTIONS = ReadOptions(lab_zone=LONDON)
CATALOG = packaged_library().catalog


def observation(status: str, value: float, version: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "wbc-1", "meta": {"versionId": version}, "status": status,
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
            "subject": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": "FIX001"}},
            "effectiveDateTime": "2026-02-27T08:00:00Z",
            "valueQuantity": {"value": value, "unit": "10*3/uL", "system": "http://unitsofmeasure.org",
                              "code": "10*3/uL"}}


def counts(session: Session, records: Iterable[Record]) -> dict[str, int]:
    """The non-zero counts of ingesting `records` (critical results evaluated at once)."""
    report = ingest_records(session, records, ingest_context(NOW, library=packaged_library(), options=OPTIONS))
    return {k: v for k, v in report.as_dict().items() if isinstance(v, int) and v and k != "seen"}


def ingest(session: Session, resource: dict[str, Any]) -> dict[str, int]:
    return counts(session, read_json(resource, "feed", OPTIONS, CATALOG))


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


def oru(control: str, status: str, value: str, *, order: str = "F-778", code: str = "6690-2", sub: str = "",
        extra: str = "") -> str:
    """One ORU^R01 with a WBC; `order` is OBR-3, the lab's filler order number."""
    return "\r".join([
        f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|202602270900||ORU^R01|{control}|P|2.5.1",
        "PID|1||FIX001^^^HOSP^MR", f"OBR|1|P-1|{order}|58410-2^CBC^LN|||202602270800",
        f"OBX|1|NM|{code}^WBC^LN|{sub}|{value}|10*9/L|4.0-11.0||||{status}", *([extra] if extra else [])]) + "\r"


def ingest_hl7(session: Session, *messages: str) -> dict[str, int]:
    return counts(session, read_text("".join(messages), "feed", OPTIONS, CATALOG))


def wbc_rows(session: Session) -> list[tuple[float, str]]:
    return [(r.value, r.status) for r in session.exec(select(LabResult)).all()]


def enroll_fix001(session: Session) -> None:
    enroll(session, packaged_library(), EnrollmentRequest("FIX001", "aih-azathioprine", date(2026, 1, 5), 70,
                                                          tpmt="normal"),
           today=date(2026, 3, 1), now=NOW, actor="test")
    session.commit()


def test_an_hl7_correction_in_a_new_message_replaces_the_result_of_the_same_order_and_test(session: Session) -> None:
    """Labs send a correction as a new message (new MSH-10) naming the same filler order number
    (OBR-3) and test (OBX-3): it updates that row, it is not a second result of the day."""
    enroll_fix001(session)
    assert ingest_hl7(session, oru("M1", "F", "5.0")) == {"stored": 1}
    assert ingest_hl7(session, oru("M2", "C", "3.1")) == {"corrected": 1}
    assert wbc_rows(session) == [(3.1, "corrected")]
    assert ingest_hl7(session, oru("M2", "C", "3.1")) == {"duplicate": 1}  # the correction re-delivered
    assert ingest_hl7(session, oru("M3", "F", "7.0")) == {"quarantined": 1}  # a new value without C
    assert wbc_rows(session) == [(3.1, "corrected")]


def test_the_final_result_replaces_the_preliminary_one_across_messages_and_within_a_file(session: Session) -> None:
    enroll_fix001(session)
    assert ingest_hl7(session, oru("M1", "P", "5.0")) == {"stored": 1}
    assert ingest_hl7(session, oru("M2", "F", "5.2")) == {"corrected": 1}
    assert wbc_rows(session) == [(5.2, "final")]
    # Preliminary and final of another order in one file (one batch): one row, the final.
    assert ingest_hl7(session, oru("M3", "P", "6.0", order="F-779"), oru("M4", "F", "6.4", order="F-779")) == {
        "stored": 1, "corrected": 1}
    assert sorted(wbc_rows(session)) == [(5.2, "final"), (6.4, "final")]


def test_a_correction_of_a_held_result_updates_it_and_other_orders_or_tests_are_new_results(
        session: Session) -> None:
    assert ingest_hl7(session, oru("M1", "F", "5.0")) == {"held": 1}
    assert ingest_hl7(session, oru("M2", "C", "4.0")) == {"corrected": 1}
    assert [(h.value, h.status) for h in session.exec(select(HeldResult)).all()] == [(4.0, "corrected")]
    assert ingest_hl7(session, oru("M3", "F", "5.0", order="F-900")) == {"held": 1}  # another order
    assert ingest_hl7(session, oru("M4", "F", "5.0", sub="2")) == {"held": 1}  # another OBX-4 sub-id


def test_a_test_twice_in_one_order_group_gets_no_order_key_so_nothing_is_linked_by_guess() -> None:
    twice = oru("M1", "F", "5.0", extra="OBX|2|NM|6690-2^WBC^LN||5.1|10*9/L|4.0-11.0||||F")
    records = [r for r in read_text(twice, "feed", OPTIONS, CATALOG) if isinstance(r, IncomingResult)]
    assert [r.order_key for r in records] == [None, None]
    [once] = [r for r in read_text(oru("M1", "F", "5.0"), "feed", OPTIONS, CATALOG) if isinstance(r, IncomingResult)]
    assert once.order_key == "hl7:LAB/HOSP|F-778|6690-2|"
    [placer] = [r for r in read_text(oru("M1", "F", "5.0", order=""), "feed", OPTIONS, CATALOG)
                if isinstance(r, IncomingResult)]
    assert placer.order_key == "hl7:LAB/HOSP|placer:P-1|6690-2|"
