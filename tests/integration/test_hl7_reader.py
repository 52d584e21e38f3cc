"""The HL7 v2 reader: the twelve real sample files, the ingest service on a real database, and
mutated input (../shared/data/external/SOURCES.md describes every file and its quirks)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from monitor.db.tables import HeldResult
from monitor.ingest.hl7_reader import INTERNAL, from_raw, read_file, read_text
from monitor.ingest.records import IncomingResult, ReadOptions, Record, Skipped, Unreadable, UnreadableFile
from monitor.protocols import load_catalog
from monitor.services.ingest import ingest_records
from monitor.services.prepare import Context
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")
OPTIONS = ReadOptions(lab_zone=LONDON)
CATALOG = load_catalog()  # what packaged_library().catalog holds, without loading the protocols
FILES = [
    "01_LRI_2.0-NG_CBC_Typ_Message.hl7", "02_LAB-ORU-1.hl7", "03_LAB-ORU-2.hl7", "04_ORU-R01-RMGEAD.hl7",
    "05_ORU-R01-01.hl7", "06_hci.hl7", "07_mirth_large.hl7", "08_mirth_08.hl7", "09_mirth_small.hl7",
    "10_mirth_batch03.hl7", "11_ORU_R01_2.5.1_SampleTestCase3.er7", "12_realm-batch.hl7",
]
HEAD = ("MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260105093000||ORU^R01|CTRL1|P|2.5.1\r"
        "PID|1||A1001^^^NORTH^MR~9434765919^^^NHS^NH||DOE^JANE\r"
        "OBR|1||F1|57021-8^CBC^LN|||20260105083000\r")


def read(external: Path, name: str) -> list[Record]:
    return list(read_file(external / "hl7v2" / name, OPTIONS, CATALOG))


def kinds(records: list[Record]) -> dict[str, int]:
    return dict(Counter(type(r).__name__ for r in records))


def results(records: list[Record]) -> list[IncomingResult]:
    return [r for r in records if isinstance(r, IncomingResult)]


def by_code(records: list[Record]) -> dict[str, IncomingResult]:
    return {r.code: r for r in results(records)}


def one(text: str, options: ReadOptions = OPTIONS) -> Record:
    [record] = read_text(text, "test.hl7", options, CATALOG)
    return record


def result(text: str, options: ReadOptions = OPTIONS) -> IncomingResult:
    record = one(text, options)
    assert isinstance(record, IncomingResult), record
    return record


def tz(hours: int, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes))


# --- the twelve sample files -------------------------------------------------------------------


def test_file_01_gives_a_result_per_obx_and_keeps_the_lri_wbc_in_cells_per_microlitre(external: Path) -> None:
    records = read(external, FILES[0])
    assert kinds(records) == {"IncomingResult": 25, "Skipped": 3}  # 3 % whose absolute counts were sent
    wbc = by_code(records)["26464-8"]
    assert (wbc.value, wbc.unit, wbc.ref_low, wbc.ref_high) == ("105600", "{cells}/uL", 4300, 10800)
    assert wbc.mrn == "PATID1234" and wbc.status == "final" and wbc.format == "hl7"
    assert wbc.observed_at == datetime(2011, 1, 3, 14, 34, 28, tzinfo=tz(-8))
    assert wbc.source_key == "hl7:NIST Test Lab APP/NIST Lab Facility|NIST-LRI-NG-002.00|1|4"
    assert wbc.origin == f"{FILES[0]}:message 1:OBX 4"
    msh, pid, obr, obx, replay_key = wbc.raw.split("\r")
    assert msh.startswith("MSH|^~\\&|NIST Test Lab APP") and pid.startswith("PID|1||PATID1234")
    assert obr.startswith("OBR|1|") and obx.startswith("OBX|4|NM|26464-8") and replay_key.startswith("ZMK|")
    assert by_code(records)["30400-6"].value == "not detected"  # CWE text, left to the catalog
    assert not [r for r in results(records) if r.source_key.endswith("#abs")]  # absolute counts were sent
    assert {r.reason for r in records if isinstance(r, Skipped)} == {
        f"{code}: {cells} as a % of leukocytes; its absolute count ({key}) was sent"
        for code, cells, key in (("26511-6", "neutrophils", "NEUT"), ("26478-8", "lymphocytes", "LYMPH"),
                                 ("26450-7", "eosinophils", "EOS"))}


def test_file_02_skips_the_pending_obx_and_keeps_the_preliminary_results(external: Path) -> None:
    records = read(external, FILES[1])
    assert kinds(records) == {"IncomingResult": 6, "Skipped": 2, "Unreadable": 2}
    skipped = [r for r in records if isinstance(r, Skipped)]
    assert [r.origin for r in skipped] == [f"{FILES[1]}:message 1:OBX 1", f"{FILES[1]}:message 1:OBX 3"]
    assert all("pending" in r.reason for r in skipped)
    statuses = {r.code: r.status for r in results(records)}
    assert statuses["11125-2"] == "final" and statuses["11273-0"] == "preliminary"
    assert by_code(records)["11273-0"].observed_at == datetime(2014, 10, 6, 6, 27, tzinfo=tz(7))
    assert len({r.source_key for r in results(records)}) == 6  # two OBR groups with OBX 1..5 each
    # The differential's OBR group has no WBC (11156-7 is pending and not a WBC code): its
    # eosinophil and lymphocyte % give no absolute count, and say so.
    assert all("no WBC" in r.reason and "in its OBR group" in r.reason for r in records if isinstance(r, Unreadable))


def test_file_03_final_update_arrives_under_its_own_control_id(external: Path) -> None:
    final, preliminary = read(external, FILES[2]), read(external, FILES[1])
    assert kinds(final) == {"IncomingResult": 8, "Unreadable": 2}  # the % with no WBC, as in file 02
    assert {r.status for r in results(final)} == {"final"}
    assert by_code(final)["20509-6"].value == "13.4"
    assert not {r.source_key for r in results(final)} & {r.source_key for r in results(preliminary)}


def test_file_04_reads_a_structured_numeric_value_and_an_underscore_range(external: Path) -> None:
    [glucose] = read(external, FILES[3])
    assert isinstance(glucose, IncomingResult)
    assert (glucose.code, glucose.value, glucose.unit) == ("1554-5", "182", "mg/dl")
    assert (glucose.ref_low, glucose.ref_high) == (70, 105)
    assert glucose.mrn == "555-44-4444"  # the only PID-3 identifier, untyped
    assert glucose.observed_at == datetime(2002, 2, 15, 7, 30, tzinfo=tz(6))  # OBR-7: no OBX-14


def test_file_05_accounts_for_every_obx_of_the_kitchen_sink_message(external: Path) -> None:
    records = read(external, FILES[4])
    assert kinds(records) == {"Skipped": 4, "IncomingResult": 1}
    reasons = [r.reason for r in records if isinstance(r, Skipped)]
    assert "RP" in reasons[0] and "ED" in reasons[1] and "status O" in reasons[2]
    assert "pending" in reasons[3]  # the repeated NM 27~25 has status I: nothing to keep yet
    [culture] = results(records)
    assert (culture.code, culture.value, culture.status) == ("625-4", "Salmonella", "preliminary")
    assert culture.mrn == "14"  # the one PID-3 identifier, of type PI
    assert culture.observed_at == datetime(2012, 3, 1, 12, tzinfo=LONDON)  # a bare date is local noon


def test_file_06_accepts_five_encoding_characters_and_leaves_text_to_the_service(external: Path) -> None:
    records = read(external, FILES[5])
    assert kinds(records) == {"IncomingResult": 4}
    a1c = by_code(records)["55454-3"]
    assert (a1c.value, a1c.unit, a1c.ref_low, a1c.ref_high) == ("5.8", "mg/dL", 0.0, 5.6)
    assert [r.value for r in results(records)[1:]] == ["Reactive", "Reactive", "Non-Reactive"]
    assert a1c.source_key.startswith("hl7:ProPhase/ProPhase|20230816123358|1|")


def test_file_07_prefers_the_loinc_alternate_over_the_local_code(external: Path) -> None:
    records = read(external, FILES[6])
    assert kinds(records) == {"IncomingResult": 81, "Skipped": 3}  # 3 % whose absolute counts were sent
    codes = by_code(records)
    assert codes["6690-2"].value == "5.8" and codes["6690-2"].unit == "THOU/uL"
    assert "WBC" not in codes and "GAP" in codes  # GAP has no LOINC: its local code is kept
    assert codes["CRP"].value == "< 1"
    assert codes["6690-2"].observed_at == datetime(2010, 6, 4, 11, 44, tzinfo=LONDON)
    assert len({r.source_key for r in results(records)}) == 81  # the repeated CMP groups do not collide
    assert not [r for r in results(records) if r.source_key.endswith("#abs")]  # 751-8 etc. were sent


def test_file_08_derives_absolute_counts_from_the_percent_differential(external: Path) -> None:
    records = read(external, FILES[7])
    assert kinds(records) == {"IncomingResult": 14}  # each % is read as the count derived from it
    derived = {r.code: r for r in results(records) if r.source_key.endswith("#abs")}
    assert {code: (r.value, r.unit) for code, r in derived.items()} == {
        "751-8": ("4.76", "/nl"), "731-0": ("1.4", "/nl"), "711-2": ("0.21", "/nl")}
    assert derived["751-8"].source_key == "hl7:SendingApp/SendingFac|59689|1|2#abs"
    assert "derived: neutrophils = WBC 7.0 /nl x 68 % / 100" in derived["751-8"].raw
    assert by_code(records)["plt"].value == "221"  # no LOINC: local code


def test_file_09_reads_cr_only_separators(external: Path) -> None:
    records = read(external, FILES[8])
    assert kinds(records) == {"IncomingResult": 17}
    codes = by_code(records)
    assert codes["2160-0"].value == "1.3" and codes["2160-0"].unit == "MG/DL"  # the one LOINC alternate
    assert codes["84295"].value == "145"
    assert {r.mrn for r in results(records)} == {"4223161584"}


def test_file_10_skips_the_adt_message_of_a_concatenated_stream(external: Path) -> None:
    records = read(external, FILES[9])
    assert kinds(records) == {"Skipped": 1, "IncomingResult": 14}  # each % read as its derived count
    adt = records[0]
    assert isinstance(adt, Skipped) and adt.origin == f"{FILES[9]}:message 1" and "ADT^A40" in adt.reason
    alone = read(external, FILES[7])  # the same ORU on its own
    assert [(r.source_key, r.value) for r in results(records)] == [(r.source_key, r.value)
                                                                   for r in results(alone)]
    assert all(":message 2:" in r.origin for r in results(records))


def test_file_11_keeps_the_corrected_status_and_the_text_reference_range(external: Path) -> None:
    [lead] = read(external, FILES[10])
    assert isinstance(lead, IncomingResult)
    assert (lead.code, lead.value, lead.unit, lead.status) == ("10368-9", "25", "ug/dl", "corrected")
    assert (lead.ref_low, lead.ref_high) == (None, 10)
    assert lead.mrn == "9817566735"
    assert lead.observed_at == datetime(2008, 8, 15, 10, 30, tzinfo=tz(-7))


def test_file_12_quarantines_the_message_whose_encoding_characters_are_broken(external: Path) -> None:
    records = read(external, FILES[11])
    assert kinds(records) == {"IncomingResult": 2, "Unreadable": 1}
    broken = records[2]
    assert isinstance(broken, Unreadable) and broken.origin == f"{FILES[11]}:message 2"
    assert "encoding characters '^~&'" in broken.reason and broken.raw.startswith("MSH|^~&|Lab1")
    assert "BTS" not in broken.raw and "FTS" not in broken.raw
    codes = by_code(records)
    assert codes["10368-9"].value == "50" and codes["10368-9"].ref_high == 10  # version suffix ^^^^2.24
    assert codes["625-4"].value == "Campylobacter jejuni" and codes["625-4"].status == "preliminary"
    assert {r.mrn for r in results(records)} == {"36363636"}  # the MR identifier, not the SS one


# --- through the ingest service --------------------------------------------------------------


def context() -> Context:
    return ingest_context(datetime(2026, 1, 15, 9, tzinfo=UTC))


@pytest.mark.db
@pytest.mark.parametrize("name", FILES)
def test_every_file_ingests_and_a_second_ingest_is_only_duplicates(external: Path, session: Session,
                                                                   name: str) -> None:
    path = external / "hl7v2" / name
    records = list(read_file(path, OPTIONS, CATALOG))
    first = ingest_records(session, read_file(path, OPTIONS, CATALOG), context())
    assert first.total == len(records)
    again = ingest_records(session, read_file(path, OPTIONS, CATALOG), context())
    assert again.total == len(records)
    assert (again.stored, again.held, again.corrected) == (0, 0, 0)
    assert again.duplicate == first.stored + first.held + first.duplicate
    assert again.quarantined == again.already_quarantined == first.quarantined
    assert again.ignored == first.ignored


@pytest.mark.db
def test_derived_absolute_counts_reach_the_database_in_the_canonical_unit(external: Path,
                                                                          session: Session) -> None:
    ingest_records(session, read_file(external / "hl7v2" / FILES[7], OPTIONS, CATALOG), context())
    held = session.exec(select(HeldResult).where(col(HeldResult.source_key).endswith("#abs"))).all()
    assert {h.mrn for h in held} == {"12345"}
    assert sorted((h.analyte, h.value, h.unit) for h in held) == [
        ("EOS", 0.21, "10*9/L"), ("LYMPH", 1.4, "10*9/L"), ("NEUT", 4.76, "10*9/L")]


# --- one message at a time ---------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "value"), [("^182", "182"), ("<^10", "<10"), (">=^5", ">=5"), ("=^7", "7"),
                                             ("^1^:^128", "1:128")])
def test_a_structured_numeric_value_keeps_its_comparator(sent: str, value: str) -> None:
    assert result(HEAD + f"OBX|1|SN|1742-6^ALT^LN||{sent}|U/L|||||F").value == value


def test_a_repeated_numeric_value_cannot_be_stored_exactly() -> None:
    record = one(HEAD + "OBX|1|NM|1742-6^ALT^LN||27~25|U/L|||||F")
    assert isinstance(record, Unreadable) and "27~25" in record.reason
    assert record.raw.startswith("MSH|") and "OBX|1|NM|1742-6" in record.raw


@pytest.mark.parametrize(("status", "expected"), [("F", "final"), ("C", "corrected"), ("P", "preliminary"),
                                                  ("D", "retracted"), ("W", "retracted")])
def test_the_result_status_is_read_from_obx_11(status: str, expected: str) -> None:
    assert result(HEAD + f"OBX|1|NM|1742-6^ALT^LN||27|U/L|||||{status}").status == expected


@pytest.mark.parametrize("obx", ["OBX|1|NM|1742-6^ALT^LN||27|U/L|||||I",
                                 "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||X",
                                 "OBX|1|NM|1742-6^ALT^LN|||U/L|||||F",
                                 'OBX|1|NM|1742-6^ALT^LN||""|U/L|||||F'])
def test_pending_unobtainable_and_empty_results_are_skipped(obx: str) -> None:
    assert isinstance(one(HEAD + obx), Skipped)


def test_a_result_without_a_status_is_unreadable() -> None:
    record = one(HEAD + "OBX|1|NM|1742-6^ALT^LN||27|U/L")
    assert isinstance(record, Unreadable) and "OBX-11" in record.reason


@pytest.mark.parametrize(("field", "code"), [
    ("1742-6^ALT^LN", "1742-6"), ("ALT^ALT^L^1742-6^ALT^LN", "1742-6"),
    ("10368-9^Lead^LN^^^^2.24", "10368-9"), ("plt^Platelets", "plt"), ("X1^x^L^Y1^y^SCT", "X1"),
    ("^^^1742-6^ALT^LN", "1742-6")])
def test_the_code_is_the_loinc_of_obx_3_or_else_the_local_code(field: str, code: str) -> None:
    assert result(HEAD + f"OBX|1|NM|{field}||27|U/L|||||F").code == code


@pytest.mark.parametrize(("options", "mrn"), [
    (OPTIONS, "A1001"), (ReadOptions(LONDON, mrn_type="NH"), "9434765919"),
    (ReadOptions(LONDON, mrn_authority="NORTH"), "A1001"), (ReadOptions(LONDON, mrn_authority="SOUTH"), None),
    (ReadOptions(LONDON, mrn_type="PI"), None)])
def test_the_mrn_is_the_pid_3_identifier_of_the_configured_type_and_authority(options: ReadOptions,
                                                                              mrn: str | None) -> None:
    record = one(HEAD + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F", options)
    if mrn is None:
        assert isinstance(record, Unreadable) and "no MRN" in record.reason
    else:
        assert isinstance(record, IncomingResult) and record.mrn == mrn


@pytest.mark.parametrize(("pid", "mrn"), [("PID|||555", "555"), ("PID|||14^^^LAB^PI", "14"),
                                          ("PID|||1^^^A^PI~2^^^B^PI", None), ("PID|||^^^A^MR", None)])
def test_a_single_identifier_of_another_type_is_the_fallback_mrn(pid: str, mrn: str | None) -> None:
    text = HEAD.replace("PID|1||A1001^^^NORTH^MR~9434765919^^^NHS^NH||DOE^JANE", pid)
    record = one(text + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F")
    assert record.mrn == mrn if isinstance(record, IncomingResult) else mrn is None


def test_a_single_identifier_from_another_authority_is_not_the_mrn() -> None:
    text = HEAD.replace("A1001^^^NORTH^MR~9434765919^^^NHS^NH", "555^^^SOUTH")
    record = one(text + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F", ReadOptions(LONDON, mrn_authority="NORTH"))
    assert isinstance(record, Unreadable) and "from NORTH" in record.reason


@pytest.mark.parametrize(("obx_14", "when"), [
    ("20260104101500", datetime(2026, 1, 4, 10, 15, tzinfo=LONDON)),
    ("20260704101500", datetime(2026, 7, 4, 10, 15, tzinfo=LONDON)),
    ("201203141259-0215", datetime(2012, 3, 14, 12, 59, tzinfo=tz(-2, -15))),
    ("201203141259+0215", datetime(2012, 3, 14, 12, 59, tzinfo=tz(2, 15))),
    ("20100604234724.085-0400", datetime(2010, 6, 4, 23, 47, 24, 85000, tzinfo=tz(-4))),
    ("20080818183002.1-0700^S", datetime(2008, 8, 18, 18, 30, 2, 100000, tzinfo=tz(-7))),
    ("20260104", datetime(2026, 1, 4, 12, tzinfo=LONDON)),
    ("", datetime(2026, 1, 5, 8, 30, tzinfo=LONDON)),  # OBR-7
])
def test_the_collection_time_keeps_an_offset_and_reads_naive_times_in_the_lab_zone(obx_14: str,
                                                                                    when: datetime) -> None:
    observed = result(HEAD + f"OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F|||{obx_14}").observed_at
    assert observed == when and observed.utcoffset() == when.utcoffset()


def test_the_collection_time_falls_back_to_msh_7() -> None:
    text = HEAD.replace("|||20260105083000", "|||") + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F"
    assert result(text).observed_at == datetime(2026, 1, 5, 9, 30, tzinfo=LONDON)


@pytest.mark.parametrize("obx_14", ["2026-01-04", "202601", "20261304", "2026010425", "20260104101500+0260"])
def test_an_unparseable_collection_time_is_unreadable(obx_14: str) -> None:
    record = one(HEAD + f"OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F|||{obx_14}")
    assert isinstance(record, Unreadable) and "collection time" in record.reason


@pytest.mark.parametrize(("sent", "low", "high"), [
    ("4.3 to 6.2", 4.3, 6.2), ("70_105", 70, 105), ("0.0 - 5.6", 0.0, 5.6), ("3.5-5.0", 3.5, 5.0),
    ("<10 ug/dl", None, 10), ("<=40", None, 40), (">60", 60, None), ("NEGATIVE", None, None),
    ("10-5", None, None), ("0-1+", None, None), ("", None, None)])
def test_the_reference_range_is_read_where_it_is_numeric(sent: str, low: float | None,
                                                          high: float | None) -> None:
    record = result(HEAD + f"OBX|1|NM|1742-6^ALT^LN||27|U/L|{sent}||||F")
    assert (record.ref_low, record.ref_high) == (low, high)


def test_escape_sequences_are_decoded_in_text_values() -> None:
    value = "A\\T\\B \\F\\ C\\S\\D\\X0d0a\\E \\E\\ \\H\\bold\\N\\"
    record = result(HEAD + f"OBX|1|ST|X^Comment^L||{value}||||||F")
    assert record.value == "A&B | C^D\r\nE \\ bold"


@pytest.mark.parametrize("newline", ["\r", "\n", "\r\n"])
def test_cr_lf_and_crlf_separators_and_a_bom_read_alike(newline: str) -> None:
    text = HEAD + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F\r"
    expected = list(read_text(text, "test.hl7", OPTIONS, CATALOG))
    assert list(read_text("\ufeff" + text.replace("\r", newline), "test.hl7", OPTIONS, CATALOG)) == expected


def test_a_batch_envelope_is_dropped_and_each_message_read() -> None:
    obx = "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F\r"
    text = "FHS|^~\\&\rBHS|^~\\&\r" + HEAD + obx + HEAD.replace("CTRL1", "CTRL2") + obx + "BTS|2\rFTS|1\r"
    records = results(list(read_text(text, "batch.hl7", OPTIONS, CATALOG)))
    assert [r.origin for r in records] == ["batch.hl7:message 1:OBX 1", "batch.hl7:message 2:OBX 1"]
    assert [r.source_key.split("|")[1] for r in records] == ["CTRL1", "CTRL2"]
    assert not [line for r in records for line in r.raw.split("\r") if line[:3] in ("FHS", "BHS")]


def test_segments_before_the_first_msh_are_unreadable() -> None:
    records = list(read_text("PID|1||X\r" + HEAD + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F", "t.hl7", OPTIONS, CATALOG))
    assert kinds(records) == {"Unreadable": 1, "IncomingResult": 1}
    assert isinstance(records[0], Unreadable) and records[0].raw == "PID|1||X"


def test_a_message_without_obx_is_counted_as_skipped() -> None:
    assert isinstance(one(HEAD), Skipped)


def test_source_keys_identify_a_redelivery_and_separate_repeated_obr_groups_and_set_ids() -> None:
    obx = "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F\r"
    text = HEAD + obx + obx + "OBR|2||F2|24323-8^CMP^LN\r" + obx
    keys = [r.source_key for r in results(list(read_text(text, "t.hl7", OPTIONS, CATALOG)))]
    assert keys == ["hl7:LAB/NORTH|CTRL1|1|1", "hl7:LAB/NORTH|CTRL1|1|#2", "hl7:LAB/NORTH|CTRL1|2|1"]
    assert keys == [r.source_key for r in results(list(read_text(text, "again.hl7", OPTIONS, CATALOG)))]
    no_id = [result(HEAD.replace("CTRL1", "") + f"OBX|1|NM|1742-6^ALT^LN||{v}|U/L|||||F").source_key
             for v in ("27", "28")]
    assert no_id[0] != no_id[1] and all("|sha256:" in k for k in no_id)  # no MSH-10: keyed by content


def derived(text: str) -> list[IncomingResult]:
    return [r for r in results(list(read_text(text, "t.hl7", OPTIONS, CATALOG))) if r.source_key.endswith("#abs")]


def test_no_absolute_count_is_derived_without_a_wbc_in_the_same_group_or_when_one_was_sent() -> None:
    pct = "OBX|2|NM|770-8^Neut %^LN||60|%|||||F\r"
    wbc = "OBX|1|NM|6690-2^WBC^LN||5.0|10*3/uL|||||F\r"
    absolute = "OBX|3|NM|751-8^Neut^LN||3.1|10*3/uL|||||F\r"
    other_group = HEAD + wbc + "OBR|2||F2|X^DIFF^L\r" + pct
    for text in (other_group, HEAD + wbc + pct + absolute):
        assert not derived(text)
    [neutrophils] = derived(HEAD + wbc + pct.replace("||F", "||P"))
    assert (neutrophils.code, neutrophils.value, neutrophils.unit) == ("751-8", "3", "10*3/uL")
    assert neutrophils.status == "preliminary"


def test_from_raw_reads_a_quarantined_record_again_under_its_original_key(external: Path) -> None:
    records = read(external, FILES[7]) + read(external, FILES[6]) + read(external, FILES[2])
    for record in results(records):
        assert from_raw(record.raw, record.origin, OPTIONS, CATALOG) == record
    no_mrn = one(HEAD + "OBX|7|NM|1742-6^ALT^LN||27|U/L|||||F", ReadOptions(LONDON, mrn_type="PI"))
    assert isinstance(no_mrn, Unreadable)
    fixed = from_raw(no_mrn.raw, no_mrn.origin, OPTIONS, CATALOG)  # after the site's MRN type is corrected
    assert isinstance(fixed, IncomingResult) and fixed.source_key == "hl7:LAB/NORTH|CTRL1|1|7"
    assert fixed.raw == no_mrn.raw
    broken = read(external, FILES[11])[2]
    assert isinstance(broken, Unreadable)
    assert from_raw(broken.raw, "q", OPTIONS, CATALOG) == Unreadable("hl7", "q", broken.raw, broken.reason)


# --- files --------------------------------------------------------------------------------------


def test_a_missing_file_or_a_file_that_is_not_hl7_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="cannot open"):
        read_file(tmp_path / "missing.hl7", OPTIONS, CATALOG)
    (tmp_path / "labs.csv").write_text("mrn,code\nA1,6690-2\n")
    with pytest.raises(UnreadableFile, match="not an HL7"):
        read_file(tmp_path / "labs.csv", OPTIONS, CATALOG)


def test_a_file_is_read_message_by_message(tmp_path: Path) -> None:
    """The first message's records arrive before the second message is read (a byte that is not
    UTF-8 there no longer stops the file: tests/integration/test_hostile_readers.py)."""
    second = HEAD.replace("CTRL1", "CTRL2") + "NTE|1||padding\r" * 20_000
    path = tmp_path / "stream.hl7"
    path.write_bytes((HEAD + "OBX|1|NM|1742-6^ALT^LN||27|U/L|||||F\r" + second).encode() + b"NTE|1||\xff\r")
    records = read_file(path, OPTIONS, CATALOG)
    first = next(records)
    assert isinstance(first, IncomingResult) and first.origin == "stream.hl7:message 1:OBX 1"
    assert [r.origin for r in records] == ["stream.hl7:message 2"]  # no OBX: one record, the message


# --- mutated input ------------------------------------------------------------------------------

SPECIAL = "|^~\\&#\r\n \t<>=.-+0123456789MSHOBXPIDRFTS\x0b\x1c\ufeff\u00e9"


@cache
def samples(folder: Path) -> tuple[str, ...]:
    return tuple((folder / name).read_text(encoding="utf-8-sig") for name in FILES)


def mutate(data: st.DataObject, text: str) -> str:
    segments = re.split(r"\r\n|\r|\n", text)
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 60)))
    s = data.draw(st.integers(0, max(len(segments) - 1, 0)))
    op = data.draw(st.sampled_from(["truncate", "delete", "duplicate", "insert", "drop segment",
                                    "repeat segment", "swap separators", "line endings"]))
    if op == "truncate":
        return text[:i]
    if op == "delete":
        return text[:i] + text[j:]
    if op == "duplicate":
        return text[:j] + text[i:j] + text[j:]
    if op == "insert":
        return text[:i] + data.draw(st.text(alphabet=SPECIAL, min_size=1, max_size=8)) + text[i:]
    if op == "drop segment":
        return "\r".join(segments[:s] + segments[s + 1:])
    if op == "repeat segment":
        return "\r".join(segments[:s + 1] + segments[s:])
    if op == "swap separators":
        a, b = data.draw(st.sampled_from("|^~\\&")), data.draw(st.sampled_from("|^~\\&\r"))
        return text.translate({ord(a): b, ord(b): a})
    return data.draw(st.sampled_from(["\r", "\n", "\r\n"])).join(segments)


def assert_only_records(records: list[Record]) -> None:
    assert all(isinstance(r, IncomingResult | Skipped | Unreadable) for r in records)
    assert not [r for r in records if isinstance(r, Unreadable) and r.reason.startswith(INTERNAL)]
    assert all(r.observed_at.utcoffset() is not None for r in records if isinstance(r, IncomingResult))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_sample_messages_never_raise_and_yield_only_records(external: Path,
                                                                    data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(samples(external / "hl7v2")))
    for _ in range(data.draw(st.integers(1, 4))):
        text = mutate(data, text)
    assert_only_records(list(read_text(text, "mutated.hl7", OPTIONS, CATALOG)))


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.sampled_from([*SPECIAL, "MSH|^~\\&|", "\rOBX|1|NM|", "\rOBR|", "\rPID|||"]))
       .map("".join))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert_only_records(list(read_text(text, "random.hl7", OPTIONS, CATALOG)))
