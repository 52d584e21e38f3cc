"""Hostile lab files through the real readers, the ingest service and the CLI, on a real database
(SQLite, and PostgreSQL with MONITOR_TEST_DATABASE_URL): nothing lost, nothing leaked, never a
traceback. Every record a reader sees (a CSV data row, an OBX, an Observation, a message or document
read whole) ends as exactly one outcome, and the report says how many it saw (`seen`).

The second half reads the synthetic fixture files in tests/fixtures: every reader feature that the
tests on ../shared/data/external cover, tested without that folder."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, LabResult, Quarantine
from monitor.ingest import fhir_reader, hl7_reader
from monitor.ingest.csv_reader import CELL_MAX, CELL_READ_MAX
from monitor.ingest.files import detect, read_file
from monitor.ingest.hl7_reader import read_text
from monitor.ingest.records import (
    IncomingResult,
    ReadOptions,
    Record,
    Skipped,
    Unreadable,
    UnreadableFile,
    unstorable,
)
from monitor.protocols import load_catalog
from monitor.services import ingest as service
from monitor.services import prepare, quarantine
from monitor.services.ingest import ingest_file, ingest_records
from monitor.services.prepare import ESCAPED, Context, IngestReport
from monitor.services.views import quarantine_list
from tests.conftest import EXTERNAL
from tests.functional.cli import Ran, run
from tests.integration import LONDON, dump_tables, ingest_context
from tests.integration.test_csv_ingest import expected_for
from tests.integration.test_hl7_reader import assert_only_records, mutate

pytestmark = pytest.mark.usefixtures("db_url")  # the CLI under test uses the test database

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
CATALOG = load_catalog()
OPTIONS = ReadOptions(lab_zone=LONDON)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEADER = "mrn,collected_at,code,value,unit"
MSH = "MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260105093000||{kind}|{control}|P|2.5.1||||||{charset}"


def context() -> Context:
    return ingest_context(NOW)


def ingest(session: Session, path: Path) -> IngestReport:
    """`ingest_file` as `monitor ingest` runs it, asserting the accounting: one outcome per record seen."""
    report = ingest_file(session, detect(path), path, context())
    assert report.total == report.seen, report
    return report


def rows(session: Session, model: Any) -> list[Any]:
    session.expire_all()
    return list(session.exec(select(model)).all())


def one_line_error(r: Ran) -> str:
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "Traceback" not in r.err, r.err
    return lines[0]


def counts(out: str) -> dict[str, int]:
    """The outcome counts of a `monitor ingest` summary line, and `seen`."""
    outcomes, seen = out.splitlines()[0].split(": ", 1)[1].split("; records seen: ")
    return {word: int(n) for n, word in (part.split() for part in outcomes.split(", "))} | {"seen": int(seen)}


def enroll(capsys: pytest.CaptureFixture[str], mrn: str) -> None:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", "2026-01-05",
            "--weight-kg", "72", "--tpmt", "normal")
    assert r.code == 0, r.err


def oru(control: str, mrn: str, obx: Iterable[str], *, kind: str = "ORU^R01", charset: str = "") -> str:
    head = [MSH.format(kind=kind, control=control, charset=charset).rstrip("|"), f"PID|1||{mrn}^^^NORTH^MR||DOE^JANE",
            f"OBR|1||F-{control}|58410-2^CBC^LN|||20260105083000"]
    return "\r".join([*head, *obx]) + "\r"


def obx(n: int, code: str = "6690-2", value: str = "5.1", unit: str = "10*9/L") -> str:
    return f"OBX|{n}|NM|{code}^^LN||{value}|{unit}|||||F"


# --- a Bundle of Bundles (issue item 1) ---------------------------------------------------------

def observation(oid: str, code: str, value: float, unit: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit}, **fields}


def subject(mrn: str) -> dict[str, Any]:
    return {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": mrn}}


def draw_bundle(n: int) -> dict[str, Any]:
    """One patient's draw as its own bundle: a report over three results, which every draw bundle
    names by the same local references (Observation/wbc, /plt, /alt)."""
    results = {"wbc": observation(f"wbc-{n}", "6690-2", 4 + n % 5, "10*9/L"),
               "plt": observation(f"plt-{n}", "777-3", 150 + n, "10*9/L"),
               "alt": observation(f"alt-{n}", "1742-6", 20 + n % 40, "U/L")}
    report = {"resourceType": "DiagnosticReport", "id": f"report-{n}", "status": "final",
              "subject": subject(f"BB{n:03d}"), "effectiveDateTime": "2026-01-05T08:30:00Z",
              "result": [{"reference": f"Observation/{local}"} for local in results]}
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": report}, *({"fullUrl": f"Observation/{local}", "resource": o} for local, o in results.items())]}


def test_a_collection_bundle_of_bundles_of_reports_has_every_observation_read(session: Session,
                                                                             tmp_path: Path) -> None:
    """Before: the nested bundles were dropped in silence: 0 stored, 0 quarantined, 0 ignored."""
    path = tmp_path / "collection.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": [{"resource": draw_bundle(n)} for n in range(300)]}))
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined, report.ignored) == (900, 900, 0, 0)
    held = {(h.mrn, h.analyte): h.value for h in rows(session, HeldResult)}
    assert held[("BB007", "WBC")] == 6 and held[("BB007", "PLT")] == 157 and held[("BB299", "ALT")] == 39
    assert len({h.source_key for h in rows(session, HeldResult)}) == 900


def test_nested_bundles_resolve_a_reference_in_their_own_bundle_first_then_the_ones_around_them() -> None:
    patient = {"resourceType": "Patient", "id": "p1",
               "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "OUTER1"}]}
    inner = draw_bundle(1)
    inner["entry"][0]["resource"]["subject"] = {"reference": "Patient/p1"}  # in the outer bundle only
    doc = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"fullUrl": "Patient/p1", "resource": patient}, {"resource": draw_bundle(2)}, {"resource": inner}]}
    records = list(fhir_reader.read_json(doc, "nested.json", OPTIONS, CATALOG))
    got = [(r.mrn, r.code, r.value) for r in records if isinstance(r, IncomingResult)]
    assert got == [("BB002", "6690-2", "6"), ("BB002", "777-3", "152"), ("BB002", "1742-6", "22"),
                   ("OUTER1", "6690-2", "5"), ("OUTER1", "777-3", "151"), ("OUTER1", "1742-6", "21")]
    results = [r for r in records if isinstance(r, IncomingResult)]
    assert records[3].origin == "nested.json:wbc-1" and len({r.source_key for r in results}) == len(records) == 6


def test_an_observation_no_entry_report_or_panel_leads_to_is_quarantined_where_it_is(session: Session,
                                                                                     tmp_path: Path) -> None:
    stray = observation("s1", "6690-2", 5.0, "10*9/L", subject=subject("S1"), effectiveDateTime="2026-01-05")
    hb = observation("hb", "718-7", 140, "g/L", subject=subject("S1"), effectiveDateTime="2026-01-05",
                     contained=[stray])  # contained, but no hasMember names it
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": hb}]}
    path = tmp_path / "stray.json"
    path.write_text(json.dumps(doc))
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (2, 1, 1)
    [q] = rows(session, Quarantine)
    assert q.origin == "stray.json:entry[0].resource.contained[0]" and json.loads(q.raw)["observation"] == stray
    assert "no bundle entry, report or panel lists" in q.reason


def test_a_nested_bundle_of_a_type_that_is_not_read_is_quarantined_whole_once(session: Session,
                                                                             tmp_path: Path) -> None:
    document = {**draw_bundle(3), "type": "document"}
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": [{"resource": draw_bundle(4)}, {"resource": document}]}))
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (4, 3, 1)
    [q] = rows(session, Quarantine)
    assert q.origin == "docs.json:entry 1" and "bundle type 'document' is not read" in q.reason
    assert json.loads(q.raw) == document  # whole, not one record per Observation in it


@pytest.mark.usefixtures("external")
def test_the_public_fhir_examples_read_the_same_inside_a_bundle_of_bundles_as_alone(session: Session,
                                                                                   tmp_path: Path) -> None:
    files = sorted((EXTERNAL / "fhir").glob("*.json"))
    alone: Counter[str] = Counter()
    entries = []
    for path in files:
        alone.update(type(r).__name__ for r in read_file("fhir", path, OPTIONS, CATALOG))
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries.append({"resource": doc if doc["resourceType"] == "Bundle" else
                        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": doc}]}})
    wrapped = tmp_path / "all.json"
    wrapped.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    assert Counter(type(r).__name__ for r in read_file("fhir", wrapped, OPTIONS, CATALOG)) == alone
    assert ingest(session, wrapped).seen == sum(alone.values()) > 300


# --- one byte that is not text (issue item 4) ---------------------------------------------------

def test_a_csv_row_with_a_byte_that_is_not_utf8_is_quarantined_naming_its_column_and_the_rest_stored(
        capsys: pytest.CaptureFixture[str], session: Session, tmp_path: Path) -> None:
    """Before: the whole file was refused (exit 2, "not UTF-8")."""
    enroll(capsys, "A1001")
    path = tmp_path / "labs.csv"
    path.write_bytes(f"{HEADER},comment\nA1001,2026-01-30,6690-2,3.1,10*9/L,\nA1001,2026-01-30,777-3,250,10*9/L,"
                     "pr\xe9l\xe8vement\nA1001,2026-01-30,1742-6,30,U/L,\n".encode("latin-1"))
    r = run(capsys, "ingest", str(path))
    assert r.code == 0 and r.err == "", r.err
    assert counts(r.out) == {"stored": 2, "duplicate": 0, "corrected": 0, "retracted": 0, "held": 0,
                             "quarantined": 1, "ignored": 0, "seen": 3}
    [q] = rows(session, Quarantine)
    assert q.origin == "labs.csv:3" and q.format == "csv"
    assert q.reason.startswith("cell 'comment' has byte 0xE9, which is not text in its character set; export")
    assert json.loads(q.raw)["comment"] == "pr\udce9l\udce8vement"  # each byte kept, JSON-escaped
    assert "vement" not in r.out  # the cell is not echoed


def test_a_large_csv_with_one_bad_byte_late_stores_every_other_row_in_the_worker(
        session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `not UTF-8` (exit 2) after committing the rows of the batches before it."""
    lines = [f"{HEADER},source_id"] + [f"W{n % 50:03d},2026-01-{5 + n % 20:02d},6690-2,{4 + n % 3}.{n % 10},10*9/L,s{n}"
                                       for n in range(3000)]
    lines[2000] = lines[2000].replace("10*9/L", "10*9/\xb5L")
    path = tmp_path / "big.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    monkeypatch.setattr(service, "WORKER_MIN_BYTES", 0)  # read in a worker process
    monkeypatch.setattr(prepare, "BATCH", 250)
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (3000, 2999, 1)
    [q] = rows(session, Quarantine)
    assert q.origin == "big.csv:2001" and "cell 'unit' has byte 0xB5" in q.reason


LATIN1_ORU = ("MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260105093000||ORU^R01|L1|P|2.5.1||||||8859/1\r"
              "PID|1||L1001^^^NORTH^MR||M\xfcller^J\xfcrgen\rOBR|1||F1|24325-3^LFT^LN|||20260105083000\r"
              "OBX|1|NM|1975-2^Bilirubin^LN||12|\xb5mol/L|||||F\r")


def test_an_hl7_file_is_read_in_the_character_set_its_msh18_names(session: Session, tmp_path: Path) -> None:
    """Before: a Latin-1 file (Müller) was refused whole as not UTF-8, though MLLP took the same bytes."""
    path = tmp_path / "latin1.hl7"
    path.write_bytes(LATIN1_ORU.encode("latin-1"))
    report = ingest(session, path)
    assert (report.seen, report.held) == (1, 1)
    [bilirubin] = rows(session, HeldResult)
    assert (bilirubin.mrn, bilirubin.analyte, bilirubin.value, bilirubin.raw_unit) == ("L1001", "BILI", 12, "µmol/L")


def test_without_msh18_the_hl7_encoding_setting_decides_and_a_byte_outside_it_quarantines_only_its_records(
        capsys: pytest.CaptureFixture[str], session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "feed.hl7"
    latin = LATIN1_ORU.replace("||||||8859/1", "")
    path.write_bytes(latin.encode("latin-1") + oru("C2", "L1002", [obx(1), obx(2, "777-3", "250")]).encode())
    r = run(capsys, "ingest", str(path))
    assert r.code == 0 and r.err == "", r.err
    assert (counts(r.out)["held"], counts(r.out)["quarantined"], counts(r.out)["seen"]) == (2, 1, 3)
    [q] = rows(session, Quarantine)
    assert q.format == ESCAPED and q.origin == "feed.hl7:message 1:OBX 1"
    assert "PID|1||L1001^^^NORTH^MR||M\\xfcller^J\\xfcrgen" in q.raw  # the bytes shown, escaped
    assert q.reason.startswith("segment 'PID' has byte 0xFC, which is not text in its character set, 'UNICODE "
                               "UTF-8' (setting ingest.hl7_encoding, as MSH-18 is empty); have the lab give")
    assert "M\xfcller" not in r.out + r.err and "L1001" not in r.out + r.err

    monkeypatch.setenv("MONITOR_INGEST__HL7_ENCODING", "8859/1")
    again = run(capsys, "ingest", str(path))
    assert again.code == 0, again.err
    assert (counts(again.out)["held"], counts(again.out)["duplicate"], counts(again.out)["seen"]) == (1, 2, 3)


def test_an_hl7_encoding_setting_monitor_cannot_read_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "feed.hl7"
    path.write_text(oru("C1", "A1", [obx(1)]))
    monkeypatch.setenv("MONITOR_INGEST__HL7_ENCODING", "UNICODE UTF-16")
    assert "setting ingest.hl7_encoding 'UNICODE UTF-16' is not a character set monitor reads" in one_line_error(
        run(capsys, "ingest", str(path)))


def test_a_message_in_a_character_set_monitor_cannot_read_is_quarantined_whole(session: Session,
                                                                             tmp_path: Path) -> None:
    path = tmp_path / "utf16.hl7"
    path.write_text(oru("C1", "A1", [obx(1), obx(2)], charset="UNICODE UTF-16") + oru("C2", "A2", [obx(1)]))
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (2, 1, 1)
    [q] = rows(session, Quarantine)
    assert "its character set, 'UNICODE UTF-16' (MSH-18), is not one monitor reads" in q.reason


def test_a_file_that_stops_early_keeps_what_came_before_and_says_what_that_was(
        capsys: pytest.CaptureFixture[str], session: Session, tmp_path: Path) -> None:
    """A cell the csv module cannot read past (a quote never closed): before, a `_csv.Error`
    traceback at 131,072 characters."""
    enroll(capsys, "A1001")
    path = tmp_path / "open-quote.csv"
    path.write_text(f"{HEADER}\nA1001,2026-01-30,6690-2,3.1,10*9/L\nA1001,2026-01-30,777-3,\"250" + "0" * CELL_READ_MAX
                    + "\nA1001,2026-01-31,6690-2,3.3,10*9/L\n")
    error = one_line_error(run(capsys, "ingest", str(path)))
    assert error == (f"monitor: error: open-quote.csv: line 3: a cell is longer than {CELL_READ_MAX:,} characters (a "
                     "quote that is never closed?), so reading stopped there; committed before it: 1 stored, 0 "
                     "duplicate, 0 corrected, 0 retracted, 0 held, 0 quarantined, 0 ignored; records seen: 1; fix "
                     "the file and ingest it again (what was committed counts as duplicate)")
    assert [r.analyte for r in rows(session, LabResult)] == ["WBC"]  # the row before the stop


# --- NUL (issue item 5) -------------------------------------------------------------------------

@pytest.mark.parametrize("column", ["mrn", "collected_at", "code", "value", "unit", "source_id"])
def test_a_nul_in_any_csv_cell_quarantines_its_row_and_keeps_every_other(session: Session, tmp_path: Path,
                                                                         column: str) -> None:
    """Before: a NUL in the MRN or the source id was a traceback on PostgreSQL with nothing stored
    (SQLite held a result under it); in another cell the row was quarantined for that cell's value."""
    cells = {"mrn": "N1", "collected_at": "2026-01-30", "code": "777-3", "value": "250", "unit": "10*9/L",
             "source_id": "id-2"}
    bad = ",".join(cell + "\x00" if name == column else cell for name, cell in cells.items())
    path = tmp_path / "nul.csv"
    path.write_text(f"{HEADER},source_id\nN1,2026-01-30,6690-2,3.1,10*9/L,id-1\n{bad}\n"
                    "N1,2026-01-30,1742-6,30,U/L,id-3\n")
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (3, 2, 1)
    [q] = rows(session, Quarantine)
    assert q.reason.startswith(f"cell {column!r} has a NUL character") and "\x00" not in q.raw + q.reason


def test_a_nul_in_an_hl7_message_quarantines_the_records_that_hold_it_escaped_and_keeps_the_others(
        session: Session, tmp_path: Path) -> None:
    path = tmp_path / "nul.hl7"
    path.write_text(oru("C1", "N1", [obx(1), obx(2, "777-3", "25\x000"), obx(3, "1742-6", "30", "U/L")]))
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (3, 2, 1)
    [q] = rows(session, Quarantine)
    assert q.format == ESCAPED and q.origin == "nul.hl7:message 1:OBX 2"
    assert "OBX|2|NM|777-3^^LN||25\\x000|10*9/L" in q.raw and "\x00" not in q.raw
    assert q.reason == "segment 'OBX' has a NUL character; have the lab send it without, then ingest it again"


def test_a_nul_arriving_as_text_as_over_mllp_quarantines_its_record_and_keeps_the_others(session: Session) -> None:
    """What `services/inbound.py` does with a message once its raw text is kept (NUL-safe: storable_text)."""
    records = list(read_text(oru("C1", "N\x002", [obx(1)]) + oru("C2", "N3", [obx(1)]), "mllp:1", OPTIONS, CATALOG))
    report = ingest_records(session, records, context())
    assert (report.seen, report.held, report.quarantined) == (2, 1, 1)
    assert [h.mrn for h in rows(session, HeldResult)] == ["N3"]


@pytest.mark.parametrize("text", ["6690-2\\u0000", "6690-2\\udcff", "\\ud800"])
def test_a_nul_or_lone_surrogate_in_a_fhir_string_quarantines_that_observation(session: Session, tmp_path: Path,
                                                                               text: str) -> None:
    bad = observation("o2", "6690-2", 3.3, "10*9/L", subject=subject("F1"), effectiveDateTime="2026-01-05")
    good = {**bad, "id": "o1"}
    document = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": good}, {"resource": bad}]}).replace('"o2", "status"', f'"o2", "note": "{text}", "status"')
    path = tmp_path / "escapes.json"
    path.write_text(document)
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (2, 1, 1)
    [q] = rows(session, Quarantine)
    assert q.reason.startswith("note has ") and q.origin == "escapes.json:o2"


def test_an_escaped_quarantined_record_stays_quarantined_on_replay_with_its_reason(session: Session,
                                                                                  tmp_path: Path) -> None:
    path = tmp_path / "nul.hl7"
    path.write_text(oru("C1", "N1", [obx(1, value="5\x001")]))
    ingest(session, path)
    [before] = rows(session, Quarantine)
    done = quarantine.replay(session, context(), actor="test", now=NOW)
    assert (done.replayed, done.still_quarantined) == (0, 1)
    reopened = [q for q in rows(session, Quarantine) if q.status == "open"]
    assert [(q.format, q.raw, q.reason) for q in reopened] == [(ESCAPED, before.raw, before.reason)]


# --- a damaged message type (issue item 6) ------------------------------------------------------

@pytest.mark.parametrize("msh9", ["", "OR U^R01", "CTRL9", "ORX1^R01", "^R01"])
def test_an_oru_whose_msh9_is_damaged_is_quarantined_whole_never_ignored(session: Session, tmp_path: Path,
                                                                        msh9: str) -> None:
    """Before: an 80-OBX result message with a damaged MSH-9 was "1 ignored", with no copy kept."""
    message = oru("C80", "D1", [obx(n, value=f"{4 + n % 5}.{n % 10}") for n in range(1, 81)], kind=msh9)
    path = tmp_path / "damaged.hl7"
    path.write_text(message)
    report = ingest(session, path)
    assert (report.seen, report.quarantined, report.ignored) == (1, 1, 0)
    [q] = quarantine_list(session)  # each record's raw text whole (shared header parts put back)
    assert q["origin"] == "damaged.hl7:message 1"
    assert q["raw"].replace("\n", "") == message.rstrip("\r")  # whole (a file's lines keep their "\n")
    assert q["reason"].startswith(f"MSH-9 message type {msh9!r} is not an HL7 message type")


def test_a_message_of_another_hl7_type_is_still_ignored_with_its_reason() -> None:
    [adt] = read_text(oru("A1", "D1", [obx(1, "29463-7", "72", "kg")], kind="ADT^A08"), "adt.hl7", OPTIONS, CATALOG)
    assert adt == Skipped("adt.hl7:message 1", "ADT^A08 message is not a lab result (ORU)")


# --- CSV cells and headers (issue item 11) ------------------------------------------------------

def test_a_csv_cell_over_131072_characters_quarantines_its_row_naming_the_column(session: Session,
                                                                                tmp_path: Path) -> None:
    """Before: a `_csv.Error` traceback."""
    path = tmp_path / "long.csv"
    path.write_text(f"{HEADER},note\nL1,2026-01-30,6690-2,3.1,10*9/L,\nL1,2026-01-30,777-3,250,10*9/L,"
                    f"{'x' * (CELL_MAX + 1)}\nL1,2026-01-30,1742-6,30,U/L,\n")
    report = ingest(session, path)
    assert (report.seen, report.held, report.quarantined) == (3, 2, 1)
    [q] = rows(session, Quarantine)
    assert q.reason.startswith(f"cell 'note' has {CELL_MAX + 1:,} characters, more than the {CELL_MAX:,} a lab CSV")
    assert len(q.raw) > CELL_MAX  # kept whole


@pytest.mark.parametrize("header", ["mrn,collected_at,code,value,unit,value", "MRN,collected_at,Code,value,unit, code"])
def test_a_csv_header_that_names_a_column_twice_is_refused_whole_naming_it(
        capsys: pytest.CaptureFixture[str], engine: Any, tmp_path: Path, header: str) -> None:
    """Before: the last of the two was used in silence."""
    path = tmp_path / "twice.csv"
    path.write_text(f"{header}\nT1,2026-01-30,6690-2,3.1,10*9/L,9.9\n")
    before = dump_tables(engine)
    error = one_line_error(run(capsys, "ingest", str(path)))
    twice = "value" if header.endswith("value") else "code"
    columns = "4, 6" if twice == "value" else "3, 6"
    assert error == (f"monitor: error: twice.csv: the header names the column {twice!r} more than once (columns "
                     f"{columns}), so its cells are ambiguous; rename or remove all but one, then ingest the file "
                     "again (nothing was read)")
    assert dump_tables(engine) == before


# --- nothing leaked -----------------------------------------------------------------------------

def test_hostile_files_leak_no_patient_data_to_stderr_or_the_log(capsys: pytest.CaptureFixture[str],
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 tmp_path: Path) -> None:
    secret = "ZZSECRET42"
    files = {
        "a.csv": f"{HEADER}\n{secret},2026-01-30,6690-2,3.1\x00,10*9/L\n{secret},2026-01-30,777-3,\"{secret}"
                 + "9" * CELL_READ_MAX,
        "b.hl7": oru("C1", secret, [obx(1, value=secret)], kind=f"{secret}^X") + oru("C2", secret, [obx(1)]),
        "c.json": json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draw_bundle(1)}]}
                             ).replace("BB001", secret),
    }
    caplog.set_level(logging.DEBUG)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        r = run(capsys, "ingest", str(tmp_path / name))
        assert "Traceback" not in r.err and secret not in r.err and secret not in r.out, r.err
    assert secret not in caplog.text


# --- the accounting, for any file ---------------------------------------------------------------

TEXT = st.text(st.sampled_from("AZaz09|^~\\&,;\"'\r\n\t .-+<>:/%*\x00\x01\x7f\xa0\xb5\xe9\xfc\u2028\ufeff\udcff"),
               max_size=12)


@st.composite
def hostile_file(draw: st.DrawFn) -> bytes:
    """A small lab file of any kind with hostile parts: bytes that are not UTF-8, NUL and control
    characters, Latin-1, a BOM, dates far from today, long keys, deep nesting, damaged headers."""
    kind = draw(st.sampled_from(["csv", "hl7", "fhir"]))
    cell = st.one_of(TEXT, st.sampled_from(["A1", "6690-2", "5.1", "10*9/L", "2026-01-05", "0001-01-01",
                                            "9999-12-31T23:59+14:00", "K" * 300, "F", "C", "P"]))
    if kind == "csv":
        header = draw(st.sampled_from([HEADER, f"{HEADER},source_id,status", f"{HEADER},value",
                                       "DATE,PATIENT,CODE,VALUE,UNITS,CATEGORY"]))
        lines = [",".join(draw(st.lists(cell, min_size=4, max_size=8))) for _ in range(draw(st.integers(0, 6)))]
        text = "\n".join([header, *lines])
    elif kind == "hl7":
        segments = [obx(n, draw(cell), draw(cell), draw(cell)) for n in range(draw(st.integers(0, 5)))]
        text = oru(draw(cell), draw(cell), segments, kind=draw(st.sampled_from(["ORU^R01", "", "ADT^A01", "X"])),
                   charset=draw(st.sampled_from(["", "8859/1", "ASCII", "UNICODE UTF-8", "ZZZ"])))
        text = text[:draw(st.integers(0, len(text)))] if draw(st.booleans()) else text
    else:
        inner: Any = draw_bundle(draw(st.integers(0, 999)))
        for _ in range(draw(st.integers(0, 40))):
            inner = {"resourceType": "Bundle", "type": draw(st.sampled_from(["collection", "batch", "document"])),
                     "entry": [{"resource": inner}, {"resource": {"resourceType": draw(cell)}}]}
        text = json.dumps(inner).replace("6690-2", draw(cell).replace('"', "").replace("\\", ""))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
    data = text.encode(encoding, "surrogateescape" if encoding == "utf-8" else "replace")
    return data + draw(st.binary(max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile_file())
def test_every_record_seen_in_any_file_ends_as_exactly_one_outcome_and_nothing_raises(
        session: Session, tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("hostile") / "file"
    path.write_bytes(data)
    try:
        kind = detect(path)
        records = list(read_file(kind, path, OPTIONS, CATALOG))
        report = ingest_file(session, kind, path, context())
    except UnreadableFile as refused:  # a whole file refused: one line, no patient data
        assert "\n" not in str(refused)
        session.rollback()
        return
    assert report.total == report.seen == len(records)
    texts = [t for h in rows(session, HeldResult) for t in (h.mrn, h.source_key, h.code, h.raw_value, h.raw_unit)]
    texts += [t for q in rows(session, Quarantine) for t in (q.origin, q.raw, q.reason)]
    assert not [t for t in texts if unstorable(t)]  # what the database keeps is text it can keep


# --- the reader features, on the synthetic fixtures (no ../shared needed) -----------------------
# One synthetic file per feature the tests on ../shared/data/external cover (SOURCES.md there lists
# them): tests/fixtures/{hl7,fhir,csv}, written for monitor, no patient data.

ALL_FIXTURES = sorted(p for p in FIXTURES.glob("*/*") if p.suffix in (".hl7", ".er7", ".json", ".csv"))


def fixture(kind: str, name: str) -> Path:
    return FIXTURES / kind / name


def read(kind: str, name: str, options: ReadOptions = OPTIONS) -> list[Record]:
    return list(read_file(kind, fixture(kind, name), options, CATALOG))


def kinds(records: Iterable[Record]) -> dict[str, int]:
    return dict(Counter(type(r).__name__ for r in records))


def by_code(records: Iterable[Record]) -> dict[str, IncomingResult]:
    return {r.code: r for r in records if isinstance(r, IncomingResult)}


def reasons(records: Iterable[Record]) -> list[str]:
    return [r.reason for r in records if isinstance(r, Skipped | Unreadable)]


def tz(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_every_fixture_ingests_with_exit_0_and_again_as_duplicates_only(capsys: pytest.CaptureFixture[str],
                                                                       path: Path) -> None:
    first = run(capsys, "ingest", str(path))
    assert first.code == 0 and first.err == "", first.err
    again = run(capsys, "ingest", str(path))
    assert again.code == 0, again.err
    one, two = counts(first.out), counts(again.out)
    assert one["seen"] == two["seen"] > 0 and (two["stored"], two["held"]) == (0, 0)
    assert two["duplicate"] == one["stored"] + one["held"] + one["duplicate"]
    assert (two["quarantined"], two["ignored"]) == (one["quarantined"], one["ignored"])


def test_the_fixtures_cover_every_reader() -> None:
    assert Counter(p.parent.name for p in ALL_FIXTURES) == {"hl7": 12, "fhir": 7, "csv": 3}


# HL7 v2 -----------------------------------------------------------------------------------------

def test_an_lri_cbc_with_a_bom_and_lf_lines_gives_a_record_per_obx_in_cells_per_microlitre() -> None:
    records = read("hl7", "01-cbc-lri-bom-lf.hl7")
    assert kinds(records) == {"IncomingResult": 8, "Skipped": 2}  # 2 % whose absolute counts were sent
    wbc = by_code(records)["26464-8"]
    assert (wbc.value, wbc.unit, wbc.ref_low, wbc.ref_high) == ("6400", "{cells}/uL", 4300, 10800)  # "4300 to 10800"
    assert (wbc.mrn, wbc.status, wbc.observed_at) == ("SYN1001", "final", datetime(2025, 8, 11, 7, 15, tzinfo=tz(-5)))
    assert wbc.source_key == "hl7:SYNTH LAB APP/SYNTH LAB|SYN-LRI-001|1|1"  # sender, MSH-10, OBR group, OBX-1
    assert wbc.origin == "01-cbc-lri-bom-lf.hl7:message 1:OBX 1"
    assert [line[:3] for line in wbc.raw.replace("\n", "").split("\r")] == ["MSH", "PID", "OBR", "OBX", "ZMK"]
    assert by_code(records)["30400-6"].value == "not detected"  # CWE text: the catalog decides
    assert reasons(records) == ["26511-6: neutrophils as a % of leukocytes; its absolute count (NEUT) was sent",
                                "26478-8: lymphocytes as a % of leukocytes; its absolute count (LYMPH) was sent"]


def test_a_preliminary_report_skips_pending_obx_and_its_final_update_comes_under_its_own_keys() -> None:
    preliminary, final = read("hl7", "02-cbc-preliminary.hl7"), read("hl7", "03-cbc-final.hl7")
    assert kinds(preliminary) == {"Skipped": 2, "IncomingResult": 2, "Unreadable": 2}
    assert [r.origin[-5:] for r in preliminary if isinstance(r, Skipped)] == ["OBX 1", "OBX 6"]
    assert all("pending (result status I)" in why for why in reasons(preliminary) if "OBX" in why)
    assert {r.status for r in preliminary if isinstance(r, IncomingResult)} == {"preliminary"}
    assert by_code(preliminary)["718-7"].observed_at == datetime(2014, 10, 6, 6, 27, tzinfo=tz(7))
    # the differential's OBR group has no WBC: its % give no absolute count, and say so
    assert [why for why in reasons(final)] == [why for why in reasons(preliminary) if "no WBC" in why] != []
    assert all("in its OBR group" in why for why in reasons(final))
    assert {r.status for r in final if isinstance(r, IncomingResult)} == {"final"}
    keys = [{r.source_key for r in records if isinstance(r, IncomingResult)} for records in (preliminary, final)]
    assert not keys[0] & keys[1]


def test_a_structured_numeric_value_an_underscore_range_and_the_obr_time_are_read() -> None:
    [glucose] = read("hl7", "04-glucose-structured-numeric.hl7")  # CRLF between segments
    assert isinstance(glucose, IncomingResult)
    assert (glucose.code, glucose.value, glucose.unit, glucose.ref_low, glucose.ref_high) == (
        "1554-5", "182", "mg/dl", 70, 105)
    assert glucose.mrn == "555-44-0001"  # the only PID-3 identifier, untyped
    assert glucose.observed_at == datetime(2002, 2, 15, 7, 30, tzinfo=tz(6))  # OBR-7: no OBX-14


def test_a_kitchen_sink_message_accounts_for_every_obx() -> None:
    records = read("hl7", "05-kitchen-sink.hl7")
    assert kinds(records) == {"Skipped": 4, "IncomingResult": 1}
    why = reasons(records)
    assert "RP" in why[0] and "ED" in why[1] and "status O" in why[2] and "pending" in why[3]  # 27~25 is pending
    culture = by_code(records)["625-4"]
    assert (culture.value, culture.status, culture.mrn) == ("Salmonella", "preliminary", "14")  # the PI identifier
    assert culture.observed_at == datetime(2012, 3, 1, 12, tzinfo=LONDON)  # a bare date is local noon


def test_five_encoding_characters_and_text_results_are_read() -> None:
    records = read("hl7", "06-five-encoding-characters.hl7")
    assert kinds(records) == {"IncomingResult": 4}
    a1c = by_code(records)["55454-3"]
    assert (a1c.value, a1c.unit, a1c.ref_low, a1c.ref_high) == ("5.8", "mg/dL", 0.0, 5.6)  # "0.0 - 5.6 "
    assert [r.value for r in records[1:] if isinstance(r, IncomingResult)] == ["Reactive", "Reactive", "Non-Reactive"]


def test_a_loinc_alternate_wins_over_the_local_code_and_a_repeated_group_does_not_collide() -> None:
    records = read("hl7", "07-local-codes-with-loinc-alternates.hl7")
    assert kinds(records) == {"IncomingResult": 8}
    codes = by_code(records)
    assert (codes["6690-2"].value, codes["6690-2"].unit) == ("5.8", "THOU/uL") and "WBC" not in codes
    assert codes["CRP"].value == "< 1" and "GAP" in codes  # no LOINC: the local code is kept
    assert codes["6690-2"].observed_at == datetime(2010, 6, 4, 11, 44, tzinfo=LONDON)
    assert len({r.source_key for r in records if isinstance(r, IncomingResult)}) == 8


def test_absolute_counts_derived_from_a_percent_differential_are_held_in_the_canonical_unit(session: Session) -> None:
    records = read("hl7", "08-cbc-percent-differential.hl7")
    assert kinds(records) == {"IncomingResult": 7}  # each % read as its derived count; monocyte % is not one
    derived = {r.code: (r.value, r.unit) for r in records if isinstance(r, IncomingResult) and "#abs" in r.source_key}
    assert derived == {"751-8": ("3.52", "/nl"), "731-0": ("1.92", "/nl"), "711-2": ("0.256", "/nl")}
    assert "derived: neutrophils = WBC 6.4 /nl x 55 % / 100" in by_code(records)["751-8"].raw
    assert by_code(records)["plt"].value == "205"  # no LOINC: the local code
    ingest(session, fixture("hl7", "08-cbc-percent-differential.hl7"))
    held = {h.analyte: (h.value, h.unit) for h in rows(session, HeldResult) if h.source_key.endswith("#abs")}
    assert held == {"NEUT": (3.52, "10*9/L"), "LYMPH": (1.92, "10*9/L"), "EOS": (0.256, "10*9/L")}


def test_cr_only_separators_and_local_codes_are_read() -> None:
    records = read("hl7", "09-cr-only-separators.hl7")
    assert kinds(records) == {"IncomingResult": 4}
    assert (by_code(records)["2160-0"].value, by_code(records)["84295"].value) == ("1.1", "141")
    assert {r.mrn for r in records if isinstance(r, IncomingResult)} == {"4223199999"}


def test_a_stream_of_an_adt_then_an_oru_ignores_the_adt_and_reads_the_oru() -> None:
    adt, *results = read("hl7", "10-adt-then-oru.hl7")
    assert adt == Skipped("10-adt-then-oru.hl7:message 1", "ADT^A40 message is not a lab result (ORU)")
    assert [(r.origin.split(":", 1)[1], r.code) for r in results if isinstance(r, IncomingResult)] == [
        ("message 2:OBX 1", "6690-2"), ("message 2:OBX 2", "777-3")]


def test_a_corrected_result_keeps_its_status_and_its_text_reference_range() -> None:
    [lead] = read("hl7", "11-corrected-lead.er7")
    assert isinstance(lead, IncomingResult)
    assert (lead.value, lead.unit, lead.status, lead.ref_low, lead.ref_high) == ("25", "ug/dl", "corrected", None, 10)
    assert lead.observed_at == datetime(2008, 8, 15, 10, 30, tzinfo=tz(-7))


def test_a_batch_is_read_message_by_message_and_a_broken_header_quarantines_only_its_message() -> None:
    records = read("hl7", "12-batch-with-broken-header.hl7")
    assert kinds(records) == {"IncomingResult": 2, "Unreadable": 1}
    broken = records[2]
    assert isinstance(broken, Unreadable) and broken.origin == "12-batch-with-broken-header.hl7:message 2"
    assert "encoding characters '^~&'" in broken.reason and broken.raw.startswith("MSH|^~&|SYNTHLAB")
    assert "BTS" not in broken.raw and "FTS" not in broken.raw
    codes = by_code(records)
    assert (codes["10368-9"].value, codes["10368-9"].ref_high) == ("50", 10)  # a LOINC version in OBX-3
    assert (codes["625-4"].value, codes["625-4"].status) == ("Campylobacter jejuni", "preliminary")
    assert codes["625-4"].mrn == "36363699"  # the MR identifier, not the SS one


def test_every_hl7_fixture_record_reads_again_from_its_raw_under_its_key() -> None:
    for path in FIXTURES.glob("hl7/*"):
        for record in read_file("hl7", path, OPTIONS, CATALOG):
            if isinstance(record, IncomingResult | Unreadable):
                again = hl7_reader.from_raw(record.raw, record.origin, OPTIONS, CATALOG)
                assert again == record, path.name


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(data=st.data())
def test_mutated_fixture_messages_never_raise_and_yield_only_records(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from([p.read_text(encoding="utf-8-sig") for p in sorted(FIXTURES.glob("hl7/*"))]))
    for _ in range(data.draw(st.integers(1, 4))):
        text = mutate(data, text)
    assert_only_records(list(read_text(text, "mutated.hl7", OPTIONS, CATALOG)))


# FHIR R4 ----------------------------------------------------------------------------------------

def patient(pid: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn}]}


def load(name: str) -> Any:
    return json.loads(fixture("fhir", name).read_text(encoding="utf-8"))


def test_a_report_over_panels_reads_each_member_once_and_needs_its_patient_for_an_mrn(session: Session) -> None:
    name = "01-report-with-panels.json"
    alone = read("fhir", name)
    assert kinds(alone) == {"Unreadable": 9, "Skipped": 1}  # the patient is not in the file
    assert set(reasons(alone)) == {"no MRN identifier for the subject", "not a quantity"}
    records = list(fhir_reader.read_json(load(name), name, OPTIONS, CATALOG,
                                         references={"Patient/pt1": patient("pt1", "PANEL-1")}))
    assert kinds(records) == {"IncomingResult": 8, "Skipped": 2}  # 770-8 (its count was sent), urine text
    got = {r.origin.rsplit(":", 1)[1]: r for r in records if isinstance(r, IncomingResult)}
    assert {r.observed_at for r in got.values()} == {datetime(2015, 8, 16, 6, 40, 17, tzinfo=UTC)}  # inherited
    assert {r.mrn for r in got.values()} == {"PANEL-1"} and got["h1"].source_key == "fhir:h1"
    assert (got["h2"].value, got["h2"].unit) == ("250", "10*9/L")  # the UCUM code, not display x10*9/L
    assert (got["h3"].ref_low, got["h3"].ref_high) == (4.0, 11.0)
    assert (got["c1"].unit, got["c1"].ref_high, got["c2"].unit) == ("U/L", 45.0, "umol/L")  # no system
    assert got["c3"].value == "<5"  # the comparator kept: quarantined as not a number
    report = ingest_records(session, records, context())
    assert (report.held, report.ignored, report.quarantined) == (6, 3, 1)  # sodium is not monitored
    assert report.reasons == {"non-numeric value": 1}


def test_an_observation_timed_by_its_effective_period_keeps_its_ucum_unit() -> None:
    name = "02-observation-effective-period.json"
    [alone] = read("fhir", name)
    assert isinstance(alone, Unreadable) and alone.reason == "no MRN identifier for the subject"
    [hb] = fhir_reader.read_json(load(name), name, OPTIONS, CATALOG, references={"Patient/f1": patient("f1", "NL-9")})
    assert isinstance(hb, IncomingResult)
    assert (hb.value, hb.unit, hb.mrn, hb.ref_low, hb.ref_high) == ("7.2", "g/dL", "NL-9", 7.5, 10.0)
    assert hb.observed_at == datetime(2013, 4, 2, 10, 30, 10, tzinfo=tz(1))
    assert json.loads(hb.raw)["observation"]["id"] == "hb-period"


def test_a_report_over_observations_in_other_files_skips_each_alone_and_reads_them_given_as_references() -> None:
    name = "03-report-cross-file.json"
    alone = read("fhir", name)
    assert kinds(alone) == {"Skipped": 2} and set(reasons(alone)) == {"referenced Observation not in this file"}
    assert alone[0].origin == f"{name}:cbc-report->Observation/cbc-wbc"
    for other in ("04-observation-wbc.json", "05-observation-plt.json"):  # subject only by reference
        [obs] = read("fhir", other)
        assert isinstance(obs, Unreadable) and json.loads(obs.raw)["observation"] == load(other)
    references = {"Patient/example": patient("example", "XF-1"), "Observation/cbc-wbc": load("04-observation-wbc.json"),
                  "Observation/cbc-plt": load("05-observation-plt.json")}
    joined = list(fhir_reader.read_json(load(name), name, OPTIONS, CATALOG, references=references))
    assert [(r.code, r.value, r.unit, r.observed_at) for r in joined if isinstance(r, IncomingResult)] == [
        ("6690-2", "10", "10*3/uL", datetime(2005, 7, 5, 12, tzinfo=LONDON)),
        ("777-3", "200", "10*3/uL", datetime(2005, 7, 5, 12, tzinfo=LONDON))]


def test_a_transaction_bundle_resolves_urn_uuid_references_to_its_patients_mrn(session: Session) -> None:
    records = read("fhir", "06-transaction-urn-uuid.json")
    assert kinds(records) == {"Skipped": 2, "IncomingResult": 5}  # a vital sign and a survey
    assert {r.mrn for r in records if isinstance(r, IncomingResult)} == {"SYN-MRN-0006"}  # MR, not the SSN
    assert by_code(records)["6690-2"].value == "6.959160433042363"
    report = ingest(session, fixture("fhir", "06-transaction-urn-uuid.json"))
    assert (report.held, report.ignored) == (4, 3)  # cholesterol is not monitored
    held = {h.analyte: (h.value, h.unit) for h in rows(session, HeldResult)}
    assert held == {"WBC": (6.95916, "10*9/L"), "PLT": (283.215801, "10*9/L"), "ALT": (24.568124, "U/L"),
                    "BILI": (10.501619, "umol/L")}


def test_a_bundle_of_bundles_fixture_is_read_bundle_by_bundle() -> None:
    records = read("fhir", "07-bundle-of-bundles.json")
    assert [(r.mrn, r.code, r.value) for r in records if isinstance(r, IncomingResult)] == [
        ("NEST-1", "6690-2", "5.2"), ("NEST-1", "751-8", "2.6"), ("NEST-1", "777-3", "181"),
        ("NEST-2", "6690-2", "6.2"), ("NEST-2", "751-8", "3.1"), ("NEST-2", "777-3", "182"),
        ("NEST-1", "6690-2", "7.2"), ("NEST-1", "751-8", "3.6"), ("NEST-1", "777-3", "183")]


# CSV --------------------------------------------------------------------------------------------

def test_a_synthea_export_is_held_ignored_or_quarantined_as_the_analyte_config_says(session: Session) -> None:
    path = fixture("csv", "synthea-observations.csv")
    expected = expected_for(path)
    report = ingest(session, path)
    assert report.seen == expected.rows == 19
    assert (report.held, report.ignored, report.quarantined) == (
        expected.outcomes["held"], expected.outcomes["ignored"], expected.outcomes["quarantined"]) == (10, 8, 1)
    held = sorted((h.mrn, h.analyte, round(h.value, 4), h.raw_value, h.raw_unit) for h in rows(session, HeldResult))
    assert held == sorted((p, a, round(v, 4), raw, unit) for p, a, v, raw, unit in expected.held)
    assert {("WBC", "10*9/L"), ("BILI", "umol/L")} <= {(h.analyte, h.unit) for h in rows(session, HeldResult)}


def test_a_synthea_patient_list_is_skipped_row_by_row() -> None:
    records = read("csv", "synthea-patients.csv")
    assert kinds(records) == {"Skipped": 2} and set(reasons(records)) == {
        "a patient list (Synthea patients export), not lab results"}


def test_enrolling_a_synthea_patient_attaches_their_held_results(capsys: pytest.CaptureFixture[str],
                                                                 session: Session) -> None:
    r = run(capsys, "ingest", str(fixture("csv", "synthea-observations.csv")))
    assert r.code == 0 and counts(r.out)["held"] == 10, r.err
    enroll(capsys, "7f3c0000-0000-4000-8000-000000000002")
    attached = rows(session, LabResult)
    assert sorted(a.analyte for a in attached) == ["AST", "PLT", "WBC"]
    assert len(rows(session, HeldResult)) == 7


def test_the_monitor_csv_format_reads_every_optional_column(capsys: pytest.CaptureFixture[str],
                                                            session: Session) -> None:
    records = read("csv", "monitor-format.csv")  # a BOM, CRLF, a blank line, column names in any case
    assert kinds(records) == {"IncomingResult": 6}
    enroll(capsys, "CSV0001")
    report = ingest(session, fixture("csv", "monitor-format.csv"))
    assert (report.seen, report.stored, report.held) == (6, 4, 2)
    stored = {r.analyte: (r.value, r.status, r.ref_low, r.ref_high) for r in rows(session, LabResult)}
    assert stored == {"WBC": (5.0, "final", 4.0, 11.0), "NEUT": (3.0, "final", None, None),  # from 60 % of WBC 5.0
                      "PLT": (250.0, "preliminary", 150.0, 400.0), "ALT": (31.0, "final", None, 45.0)}
    assert {h.analyte: h.value for h in rows(session, HeldResult)} == {"BILI": 20.524749, "CREAT": 88.0}
