"""Lab collection times: one outside the plausible range around today (settings [dates]) is
quarantined with the reason, and one at the ends of the calendar (year 1 or 9999 with an offset)
is quarantined too, never an exception that loses the rest of the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, Quarantine
from monitor.services.ingest import ingest_file
from tests.integration import ingest_context

NOW = datetime(2026, 1, 15, 9, tzinfo=UTC)  # the default range: 1926-01-15 .. 2026-01-16 for results
#: Collection times as ISO text, by the WBC value that marks the record.
TIMES = {
    "5.1": "2026-01-14T09:00:00+00:00",  # yesterday: stored
    "5.2": "0001-01-01T00:00:00+14:00",  # year 1, before 0001-01-01 in UTC
    "5.3": "9999-12-31T23:59:00+00:00",  # the last minute of the calendar
    "5.4": "9999-12-31T23:59:00-12:00",  # after it, in UTC
    "5.5": "2026-01-17T09:00:00+00:00",  # 2 days ahead
    "5.6": "1925-01-10T09:00:00+00:00",  # 101 years back
    "5.7": "2025-06-30T09:00:00+01:00",  # stored
}
QUARANTINED = {"5.2": "collection time 0001-01-01T00:00:00+14:00", "5.3": "collection date 9999-12-31 is outside",
               "5.4": "collection time 9999-12-31T23:59:00-12:00", "5.5": "collection date 2026-01-17 is outside",
               "5.6": "collection date 1925-01-10 is outside"}


def hl7_time(iso: str) -> str:
    return iso[:19].replace("-", "").replace("T", "").replace(":", "") + iso[19:].replace(":", "")


def csv_file() -> str:
    return "mrn,collected_at,code,value,unit\n" + "".join(
        f"D1,{when},6690-2,{value},10*9/L\n" for value, when in TIMES.items())


def hl7_file() -> str:
    return "".join(f"MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260115090000||ORU^R01|C{value}|P|2.5.1\rPID|1||D1^^^NORTH^MR\r"
                   f"OBR|1||F{value}|57021-8^CBC^LN|||{hl7_time(when)}\rOBX|1|NM|6690-2^^LN||{value}|10*9/L|||||F\r\n"
                   for value, when in TIMES.items())


def fhir_file() -> str:
    entries = [{"resource": {"resourceType": "Observation", "id": f"w{i}", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
                             "subject": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": "D1"}},
                             "effectiveDateTime": when, "valueQuantity": {"value": float(value), "unit": "10*9/L"}}}
               for i, (value, when) in enumerate(TIMES.items())]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


FILES = {"csv": csv_file, "hl7": hl7_file, "fhir": fhir_file}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_collection_time_outside_the_plausible_range_is_quarantined_and_the_rest_of_the_file_stored(
        session: Session, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"labs.{kind}"
    path.write_text(FILES[kind](), encoding="utf-8")
    report = ingest_file(session, kind, path, ingest_context(NOW))
    assert (report.held, report.quarantined, report.total) == (2, 5, 7)
    assert sorted(h.raw_value for h in session.exec(select(HeldResult)).all()) == ["5.1", "5.7"]
    quarantined = session.exec(select(Quarantine)).all()
    reasons = {value: q.reason for q in quarantined for value in QUARANTINED if value in q.raw}
    assert set(reasons) == set(QUARANTINED)
    for value, start in QUARANTINED.items():
        assert reasons[value].startswith(start), reasons[value]
    assert "settings [dates]" in reasons["5.5"] and "100 years back" in reasons["5.6"]
