"""%-differentials (config/analytes.toml [differential]): the same draw gives the same absolute
counts over HL7, FHIR and CSV, a % is counted as the count derived from it (or ignored when its
count was sent), and a % with no WBC in its draw is quarantined saying so."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, Quarantine
from monitor.domain.analytes import Range
from monitor.ingest.files import read_file
from monitor.ingest.records import ReadOptions
from monitor.protocols import load_catalog
from monitor.services import quarantine
from monitor.services.ingest import ingest_file
from monitor.services.prepare import IngestReport
from tests.integration import LONDON, ingest_context

NOW = datetime(2026, 1, 15, 9, tzinfo=UTC)
CATALOG = load_catalog()
OPTIONS = ReadOptions(lab_zone=LONDON)
#: One draw: WBC, neutrophils 60 % (26511-6, no absolute count sent: derived), lymphocytes 30 % beside
#: their absolute count (sent: the % is ignored), eosinophils 2 % (derived).
DRAW = [("6690-2", "5.0", "10*9/L"), ("26511-6", "60", "%"), ("736-9", "30", "%"), ("731-0", "1.4", "10*9/L"),
        ("713-8", "2", "%")]
EXPECTED = {"WBC": 5.0, "NEUT": 3.0, "LYMPH": 1.4, "EOS": 0.1}


def hl7(draw: list[tuple[str, str, str]]) -> str:
    head = ["MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260105093000||ORU^R01|CTRL1|P|2.5.1",
            "PID|1||D1^^^NORTH^MR", "OBR|1||F1|57021-8^CBC^LN|||20260105083000"]
    return "\r".join(head + [f"OBX|{i}|NM|{code}^^LN||{value}|{unit}|||||F"
                             for i, (code, value, unit) in enumerate(draw, 1)]) + "\r"


def fhir(draw: list[tuple[str, str, str]]) -> str:
    contained: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "pt", "identifier": [
        {"type": {"coding": [{"code": "MR"}]}, "value": "D1"}]}]
    for i, (code, value, unit) in enumerate(draw):
        contained.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                          "valueQuantity": {"value": json.loads(value), "unit": unit}})
    return json.dumps({"resourceType": "DiagnosticReport", "id": "cbc", "status": "final",
                       "subject": {"reference": "#pt"}, "effectiveDateTime": "2026-01-05T08:30:00Z",
                       "contained": contained, "result": [{"reference": f"#o{i}"} for i in range(len(draw))]})


def csv(draw: list[tuple[str, str, str]]) -> str:
    return "mrn,collected_at,code,value,unit\n" + "".join(
        f"D1,2026-01-05T08:30:00Z,{code},{value},{unit}\n" for code, value, unit in draw)


WRITERS = {"hl7": hl7, "fhir": fhir, "csv": csv}


def ingest(session: Session, tmp_path: Path, kind: str, draw: list[tuple[str, str, str]]) -> IngestReport:
    path = tmp_path / f"draw.{kind}"
    path.write_text(WRITERS[kind](draw), encoding="utf-8")
    report = ingest_file(session, kind, path, ingest_context(NOW))
    assert report.total == len(list(read_file(kind, path, OPTIONS, CATALOG)))  # every record accounted for
    return report


def test_the_same_draw_stores_the_same_absolute_counts_over_hl7_fhir_and_csv(session: Session,
                                                                              tmp_path: Path) -> None:
    reports = {kind: ingest(session, tmp_path, kind, DRAW) for kind in WRITERS}
    held: dict[str, dict[str, float]] = {}
    for h in session.exec(select(HeldResult)).all():
        held.setdefault(h.source, {})[h.analyte] = h.value
    assert held == {"hl7": EXPECTED, "fhir": EXPECTED, "csv": EXPECTED}
    for report in reports.values():  # the two derived % held as their counts; the one whose count was sent: ignored
        assert (report.held, report.ignored, report.quarantined) == (4, 1, 0)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_percent_with_no_wbc_in_its_draw_is_quarantined_saying_so(session: Session, tmp_path: Path,
                                                                    kind: str) -> None:
    report = ingest(session, tmp_path, kind, [("770-8", "60", "%"), ("777-3", "250", "10*9/L")])
    assert (report.held, report.ignored, report.quarantined) == (1, 0, 1)
    [q] = session.exec(select(Quarantine)).all()
    assert "neutrophils as a % of leukocytes" in q.reason and "no WBC" in q.reason
    assert "send the absolute count (751-8)" in q.reason


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_percent_that_is_not_a_number_or_not_in_percent_is_quarantined_with_why(
        session: Session, tmp_path: Path, kind: str) -> None:
    report = ingest(session, tmp_path, kind, [("6690-2", "5.0", "10*9/L"), ("770-8", "160", "%"),
                                              ("736-9", "30", "10*9/L")])
    assert (report.held, report.quarantined) == (1, 2)
    reasons = " | ".join(q.reason for q in session.exec(select(Quarantine)).all())
    assert "neutrophils 160 % is not a percentage" in reasons and "unit '10*9/L' is not %" in reasons


def test_a_csv_percent_whose_wbc_row_is_not_next_to_it_is_quarantined_saying_where_it_looked(
        session: Session, tmp_path: Path) -> None:
    text = ("mrn,collected_at,code,value,unit\nD1,2026-01-05T08:30:00Z,6690-2,5.0,10*9/L\n"
            "D1,2026-01-06T08:30:00Z,777-3,250,10*9/L\nD1,2026-01-05T08:30:00Z,26511-6,60,%\n")
    (tmp_path / "apart.csv").write_text(text, encoding="utf-8")
    report = ingest_file(session, "csv", tmp_path / "apart.csv", ingest_context(NOW))
    assert (report.held, report.quarantined) == (2, 1)
    [q] = session.exec(select(Quarantine)).all()
    assert "no WBC" in q.reason and "in the rows next to it with the same MRN and collection time" in q.reason


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_quarantined_derived_count_is_derived_again_on_replay(session: Session, tmp_path: Path,
                                                                kind: str) -> None:
    """WBC 400 x 90 % = 360, above NEUT's plausible 300: quarantined; replayed once the site allows it."""
    report = ingest(session, tmp_path, kind, [("6690-2", "400", "10*9/L"), ("770-8", "90", "%")])
    assert (report.held, report.ignored, report.quarantined) == (1, 0, 1)  # the % is its (quarantined) count
    [q] = session.exec(select(Quarantine)).all()
    assert "NEUT 360 10*9/L" in q.reason and "plausible range" in q.reason
    neut = CATALOG.analytes["NEUT"]
    wider = replace(CATALOG, analytes={**CATALOG.analytes, "NEUT": replace(neut, plausible=Range(0.001, 1000))})
    done = quarantine.replay(session, replace(ingest_context(NOW), catalog=wider), actor="test", now=NOW)
    assert (done.replayed, done.still_quarantined) == (1, 0)
    [derived] = session.exec(select(HeldResult).where(HeldResult.analyte == "NEUT")).all()
    assert (derived.value, derived.source_key.endswith("#abs")) == (360.0, True)
