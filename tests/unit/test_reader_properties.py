"""Properties of the readers and the prepare stage (no database) over hostile input: bytes that are
not UTF-8, Latin-1, a BOM, NUL and control characters, dates far from today, long keys and deep
nesting. Whatever a file holds, reading it never raises (a whole file may be refused with one
UnreadableFile line), every record a reader counts as seen comes out as exactly one record, each
record ends as exactly one outcome of `prepare` (or of the store, which
tests/integration/test_hostile_readers.py checks on a real database), and no text that a
database cannot keep (NUL, a lone surrogate) reaches a column."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as Stage
from hypothesis import strategies as st

from monitor.ingest.files import read_file
from monitor.ingest.hl7_reader import codec_for
from monitor.ingest.records import ReadOptions, Record, Tally, UnreadableFile, storable_text, unstorable
from monitor.services.prepare import COLUMNS, Context, prepare
from tests.unit.builders import CATALOG

LONDON = ZoneInfo("Europe/London")
CTX = Context(catalog=CATALOG, clinic_zone=LONDON, hold_days=180, now=datetime(2026, 3, 2, 9, tzinfo=UTC))
OPTIONS = ReadOptions(lab_zone=LONDON)
#: As tests/unit/test_properties.py: no example database, the same examples every run, no shrinking.
SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    phases=[Stage.explicit, Stage.reuse, Stage.generate],
                    suppress_health_check=[HealthCheck.too_slow])

#: Bytes that are not UTF-8: a lone continuation byte, a cut sequence, an encoded surrogate, an
#: overlong slash, Latin-1 letters, a byte that is never UTF-8; and a BOM.
INVALID = [b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe9", b"\xfc", b"\xff", b"\xef\xbb\xbf"]
CONTROL = "\x00\x01\x08\x0b\x0c\x1b\x1c\x7f\x85\u2028"
DATES = ["2026-01-05", "2026-01-05T08:30:00Z", "0001-01-01", "0001-01-01T00:00+14:00", "9999-12-31T23:59:59-14:00",
         "1900-02-29", "2026-13-01", "", "2026-1-5", "１９９９-01-01"]
HL7_TIMES = ["20260105083000", "00000101", "99991231235959+1400", "2026010", "20261301", "20260105083000.123456-0000"]
CELLS = ["A1001", "6690-2", "777-3", "1742-6", "770-8", "5.1", "250", "60", "-0", "1e3", "10*9/L", "U/L", "%", "F", "C",
         "P", "X" * 70, "K" * 300]


def text(alphabet: str = "AZaz09.-/:|^~\\&,\"' ") -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet + CONTROL + "éü\u00b5\ufeff"), max_size=10)


def cell(good: str = "") -> st.SearchStrategy[str]:
    """A cell: mostly `good` (so that some records are stored and their columns checked), else
    hostile."""
    hostile = st.one_of(st.sampled_from(CELLS + DATES), text())
    return st.one_of(st.just(good), st.just(good), hostile) if good else hostile


@st.composite
def garbled(draw: st.DrawFn, good: str) -> bytes:
    """`good` encoded as a lab might (UTF-8, Latin-1, with a BOM), then with bytes that are not
    UTF-8 put in at random places."""
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
    data = bytearray(good.encode(encoding, "replace"))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(INVALID))
    return bytes(data)


@st.composite
def csv_file(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(["mrn,collected_at,code,value,unit", "mrn,collected_at,code,value,unit,source_id",
                                   "mrn,collected_at,code,value,unit,status", "DATE,PATIENT,CODE,VALUE,UNITS,CATEGORY",
                                   "Id,BIRTHDATE,GENDER"]))
    good = {"m": ["A1001", "2026-01-05", "6690-2", "5.1", "10*9/L", "s1", "F"],
            "D": ["2026-01-05", "A1001", "6690-2", "5.1", "10*9/L", "laboratory"], "I": ["P1", "1970-01-01", "F"]}
    width = header.count(",") + 1
    rows = [",".join(draw(cell(c)) for c in good[header[0]][:width] + draw(st.sampled_from([[], [], [], [""]])))
            for _ in range(draw(st.integers(0, 8)))]
    return draw(garbled("\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n", '"']))))


@st.composite
def hl7_file(draw: st.DrawFn) -> bytes:
    messages = []
    for m in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["ORU^R01", "ORU^R01", "ORU^R01", "ORU^R30", "ADT^A01", "", "OR U^R01", "ORU"]))
        charset = draw(st.sampled_from(["", "", "8859/1", "ASCII", "UNICODE UTF-8", "UNICODE UTF-16", "BIG-5"]))
        when = st.one_of(cell(HL7_TIMES[0]), st.sampled_from(HL7_TIMES))
        segments = [f"MSH|^~\\&|LAB|NORTH|MON|CLINIC|{draw(when)}||{kind}|{draw(cell(f'C{m}'))}|P|2.5.1||||||{charset}",
                    f"PID|1||{draw(cell('A1001'))}^^^NORTH^MR||M\u00fcller^J", f"OBR|1||{draw(cell('F1'))}|1"]
        for n in range(draw(st.integers(0, 6))):
            segments.append(f"OBX|{n}|{draw(st.sampled_from(['NM', 'SN', 'ST', 'CWE', 'ED']))}|{draw(cell('777-3'))}"
                            f"^^LN||{draw(cell('250'))}|{draw(cell('10*9/L'))}|{draw(cell('150-400'))}||||"
                            f"{draw(st.sampled_from('FFFCPDWIX'))}|||{draw(when)}")
        messages.append(draw(st.sampled_from(["\r", "\n", "\r\n"])).join(segments))
    text = "\r".join(messages)
    if draw(st.booleans()):
        text = text[:draw(st.integers(0, len(text)))]
    return draw(garbled(text))


def fhir_observation(draw: st.DrawFn, n: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": draw(st.sampled_from([f"o{n}", f"o{n}", "", "x" * 80, "o 1"])),
            "status": draw(st.sampled_from(["final", "final", "amended", "cancelled", "registered", "", None])),
            "code": {"coding": [{"system": "http://loinc.org", "code": draw(cell("777-3"))}]},
            "subject": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": draw(cell("A1001"))}},
            "effectiveDateTime": draw(st.sampled_from(DATES)),
            "valueQuantity": {"value": draw(st.sampled_from([250, 250, 0, -0.0, 1e308, "5", None, 1e-400])),
                              "unit": draw(cell("10*9/L"))},
            "note": [{"text": draw(text())}]}


@st.composite
def fhir_file(draw: st.DrawFn) -> bytes:
    observations = [fhir_observation(draw, n) for n in range(draw(st.integers(0, 5)))]
    doc: Any = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in observations]}
    chained = draw(st.booleans())
    if observations and chained:  # a panel chain, and a stray in a contained list
        observations[0]["hasMember"] = [{"reference": f"Observation/{o['id']}"} for o in observations[1:]]
        observations[-1]["contained"] = [fhir_observation(draw, 99)]
    for _ in range(draw(st.integers(0, 45))):  # nesting: bundles of bundles, some of a type not read
        doc = {"resourceType": "Bundle", "type": draw(st.sampled_from(["collection", "searchset", "document", 7])),
               "entry": [{"resource": doc}, {"resource": {"resourceType": draw(cell())}}, {}]}
    return draw(garbled(json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)))


def read(kind: str, data: bytes) -> tuple[list[Record], Tally] | None:
    """The records of a file holding `data`, and the reader's tally; None when refused whole."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"labs.{kind}"
        path.write_bytes(data)
        tally = Tally()
        try:
            return list(read_file(kind, path, OPTIONS, CATALOG, tally)), tally
        except UnreadableFile as refused:
            assert "\n" not in str(refused) and "Traceback" not in str(refused)
            return None


def assert_accounted(kind: str, data: bytes) -> None:
    read_back = read(kind, data)
    if read_back is None:
        return
    records, tally = read_back
    assert tally.seen == len(records)  # each record the reader saw comes out once
    out = prepare(records, CTX, (str, str))
    assert out.report.ignored + out.report.quarantined + len(out.pending) + len(out.retractions) == len(records)
    kept = [str(v) for q in out.quarantine for v in q.values()]
    kept += [str(v) for p in out.pending for v in p[:len(COLUMNS)]] + [p.mrn for p in out.pending]
    assert not [t for t in kept if unstorable(t)]  # nothing a database cannot store as text


@SETTINGS
@given(data=csv_file())
def test_any_csv_file_is_read_row_by_row_and_every_row_accounted_for(data: bytes) -> None:
    assert_accounted("csv", data)


@SETTINGS
@given(data=hl7_file())
def test_any_hl7_file_is_read_message_by_message_and_every_obx_accounted_for(data: bytes) -> None:
    assert_accounted("hl7", data)


@SETTINGS
@given(data=fhir_file())
def test_any_fhir_file_has_every_observation_accounted_for_at_any_nesting(data: bytes) -> None:
    assert_accounted("fhir", data)


@SETTINGS
@given(data=st.binary(max_size=300), kind=st.sampled_from(["csv", "hl7", "fhir"]))
def test_random_bytes_never_raise_and_are_accounted_for(data: bytes, kind: str) -> None:
    assert_accounted(kind, (b"MSH|^~\\&|" if kind == "hl7" else b"") + data)


@SETTINGS
@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_storable_text_keeps_clean_text_as_it_is_and_escapes_nul_and_lone_surrogates(text: str) -> None:
    kept = storable_text(text)
    assert unstorable(kept) == ""
    kept.encode("utf-8")  # a database takes it: no lone surrogate
    assert (kept is text) == (unstorable(text) == "")
    assert kept.replace("\\x00", "").count("\\x") >= sum(0xDC80 <= ord(c) <= 0xDCFF for c in text)


def test_storable_text_shows_each_byte_that_was_not_text() -> None:
    received = b"M\xfcller\x00 \xb5mol/L".decode("utf-8", "surrogateescape")
    assert storable_text(received) == "M\\xfcller\\x00 \\xb5mol/L"
    assert unstorable(received) == "byte 0xFC, which is not text in its character set"
    assert unstorable("a\x00b") == "a NUL character" and unstorable("\ud800").startswith("a lone surrogate U+D800")


@SETTINGS
@given(name=st.text(max_size=20))
def test_a_character_set_is_read_only_if_it_writes_the_hl7_separators_as_ascii_does(name: str) -> None:
    codec = codec_for(name)
    if codec is not None:
        assert "MSH|^~\\&\r".encode(codec) == b"MSH|^~\\&\r"
