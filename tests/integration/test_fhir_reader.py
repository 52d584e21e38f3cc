"""FHIR R4 JSON lab files: every public sample file, then through the ingest service, then fuzzed."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, Quarantine
from monitor.ingest.fhir_reader import from_raw, read_file, read_json
from monitor.ingest.records import IncomingResult, ReadOptions, Record, Skipped, Unreadable, UnreadableFile
from monitor.protocols import load_catalog
from monitor.services.ingest import ingest_records
from tests.conftest import EXTERNAL
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")
OPTIONS = ReadOptions(lab_zone=LONDON)
CATALOG = load_catalog()  # what packaged_library().catalog holds, without loading the protocols
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NO_MRN = "no MRN identifier for the subject"
NOT_HERE = "referenced Observation not in this file"
GHP = "01_diagnosticreport-example-ghp.json"
F005 = "02_observation-example-f005-hemoglobin.json"
US_CORE_REPORT = "03_us-core_diagnosticreport-cbc.json"
THANH = "12_synthea_Thanh_Considine_b7a86b8b-bbf8-4107-96e6-76a948fba0e8.json"
TOM = "13_synthea_Tom_Goodwin_e20de9eb-6f2d-4871-a43f-bbede53293ed.json"
US_CORE = {  # file -> (LOINC, value, UCUM unit)
    "04_us-core_observation-cbc-leukocytes.json": ("6690-2", "10", "10*3/uL"),
    "05_us-core_observation-cbc-erythrocytes.json": ("789-8", "4.58", "10*6/uL"),
    "06_us-core_observation-cbc-hemoglobin.json": ("718-7", "17", "g/dL"),
    "07_us-core_observation-cbc-hematocrit.json": ("4544-3", "43", "%"),
    "08_us-core_observation-cbc-mcv.json": ("787-2", "85", "fL"),
    "09_us-core_observation-cbc-mch.json": ("785-6", "30", "pg"),
    "10_us-core_observation-cbc-mchc.json": ("786-4", "34.7", "g/dL"),
    "11_us-core_observation-cbc-platelets.json": ("777-3", "200", "10*3/uL"),
}


def patient(pid: str, mrn: str = "H100", *, kind: str = "MR", system: str = "urn:site") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid,
            "identifier": [{"type": {"coding": [{"code": kind}]}, "system": system, "value": mrn}]}


def load(fhir: Path, name: str) -> Any:
    return json.loads((fhir / name).read_text(encoding="utf-8"))


def kinds(records: Iterable[Record]) -> Counter[str]:
    return Counter(type(r).__name__ for r in records)


def results(records: Iterable[Record]) -> dict[str, IncomingResult]:
    """IncomingResults by Observation id (the part of the origin after the file name)."""
    return {r.origin.rsplit(":", 1)[1]: r for r in records if isinstance(r, IncomingResult)}


@pytest.fixture
def fhir(external: Path) -> Path:
    return external / "fhir"


# --- one test per file in ../shared/data/external/fhir ---

def test_the_ghp_report_reads_each_panel_member_once_and_needs_the_patient_for_an_mrn(fhir: Path) -> None:
    alone = list(read_file(fhir / GHP, OPTIONS, CATALOG))
    # 17 CBC + 22 chemistry + 9 urine; panels are not records; the dipstick "Negative" x4 are not
    # quantities of a monitored code
    assert kinds(alone) == {"Unreadable": 44, "Skipped": 4}
    assert {r.reason for r in alone if isinstance(r, Unreadable)} == {NO_MRN}
    assert len({r.origin for r in alone}) == 48  # the bundle lists the members again: still read once

    records = list(read_json(load(fhir, GHP), GHP, OPTIONS, CATALOG,
                             references={"Patient/pat2": patient("pat2", "GHP-2")}))
    # dipstick Negative x4: not quantities; the neutrophil, lymphocyte and eosinophil % (770-8, 736-9,
    # 713-8): their absolute counts were sent, so they are counted, not kept (monocyte and basophil %
    # are not %-differentials the config knows)
    assert kinds(records) == {"IncomingResult": 41, "Skipped": 7}
    got = results(records)
    when = datetime(2015, 8, 16, 6, 40, 17, tzinfo=UTC)  # inherited from the CBC and chemistry panels
    assert {r.observed_at for r in got.values()} == {when}
    assert {r.mrn for r in got.values()} == {"GHP-2"}
    cbc = {got[i].code: (got[i].value, got[i].unit) for i in ("r1", "r6", "r7", "r9")}
    assert cbc == {"718-7": ("176", "g/L"), "777-3": ("444", "10*9/L"), "6690-2": ("4.6", "10*9/L"),
                   "751-8": ("0.9", "10*9/L")}  # UCUM code, not display x10*9/L
    [neutrophil_percent] = [r for r in records if isinstance(r, Skipped) and r.origin.endswith(":r8")]
    assert neutrophil_percent.reason.endswith("its absolute count (NEUT) was sent")
    assert (got["r7"].ref_low, got["r7"].ref_high) == (4.0, 11.0)
    bilirubin, alt = got["o10"], got["o14"]
    assert (bilirubin.code, bilirubin.value, bilirubin.unit) == ("14631-6", "7", "umol/L")  # no system
    assert (alt.code, alt.value, alt.unit, alt.ref_high) == ("1742-6", "54", "U/L", 45.0)
    assert got["u8"].value == "<1"  # comparator kept: the service quarantines it as not a number
    assert got["r1"].source_key == "fhir:r1" and got["r1"].status == "final"
    assert not any(r.source_key.endswith("#abs") for r in got.values())  # absolute counts were sent


def test_the_f005_hemoglobin_is_timed_by_its_effective_period_and_keeps_the_ucum_unit(fhir: Path) -> None:
    [alone] = read_file(fhir / F005, OPTIONS, CATALOG)
    assert isinstance(alone, Unreadable) and alone.reason == NO_MRN  # subject is only Patient/f001
    [hb] = read_json(load(fhir, F005), F005, OPTIONS, CATALOG, references={"Patient/f001": patient("f001", "NL-1")})
    assert isinstance(hb, IncomingResult)
    assert (hb.code, hb.value, hb.unit, hb.mrn) == ("718-7", "7.2", "g/dL", "NL-1")  # not display g/dl
    assert hb.observed_at == datetime(2013, 4, 5, 10, 30, 10, tzinfo=timezone(timedelta(hours=1)))
    assert (hb.ref_low, hb.ref_high) == (7.5, 10.0)
    assert json.loads(hb.raw)["mrn"] == "NL-1" and json.loads(hb.raw)["observation"]["id"] == "f005"


def test_the_us_core_report_skips_each_observation_kept_in_another_file(fhir: Path) -> None:
    records = list(read_file(fhir / US_CORE_REPORT, OPTIONS, CATALOG))
    assert kinds(records) == {"Skipped": 8}
    assert {r.reason for r in records if isinstance(r, Skipped)} == {NOT_HERE}
    assert records[0].origin == f"{US_CORE_REPORT}:cbc->Observation/cbc-leukocytes"

    references: dict[str, dict[str, Any]] = {"Patient/example": patient("example", "AMY-1")}
    for name in US_CORE:
        references[f"Observation/{load(fhir, name)['id']}"] = load(fhir, name)
    joined = list(read_json(load(fhir, US_CORE_REPORT), US_CORE_REPORT, OPTIONS, CATALOG, references=references))
    assert [(r.code, r.value) for r in joined if isinstance(r, IncomingResult)] == [
        (code, value) for code, value, _ in US_CORE.values()]


@pytest.mark.parametrize(("name", "expected"), US_CORE.items(), ids=[n[3:-5] for n in US_CORE])
def test_a_us_core_observation_names_its_patient_only_by_reference_so_it_is_unreadable(
        fhir: Path, name: str, expected: tuple[str, str, str]) -> None:
    [record] = read_file(fhir / name, OPTIONS, CATALOG)
    assert isinstance(record, Unreadable) and record.reason == NO_MRN and record.format == "fhir"
    assert json.loads(record.raw)["observation"] == load(fhir, name)  # quarantined whole
    [result] = read_json(load(fhir, name), name, OPTIONS, CATALOG, references={"Patient/example": patient("example")})
    assert isinstance(result, IncomingResult)
    assert (result.code, result.value, result.unit) == expected
    assert result.observed_at == datetime(2005, 7, 5, 12, 0, tzinfo=LONDON)  # a bare date: local noon


@pytest.mark.parametrize(("name", "mrn", "lab", "other", "counts", "first_wbc"), [
    (THANH, "b7a86b8b-bbf8-4107-96e6-76a948fba0e8", 128, 31, {"6690-2": 1, "777-3": 1, "1742-6": 5},
     ("9.85175217493996", "10*3/uL", datetime(2016, 11, 15, 9, 53, 19, tzinfo=UTC))),
    (TOM, "e20de9eb-6f2d-4871-a43f-bbede53293ed", 89, 36, {"6690-2": 3, "777-3": 3, "1742-6": 1},
     ("6.9591604330423635", "10*3/uL", datetime(2014, 5, 20, 23, 55, 41, tzinfo=UTC))),
], ids=["thanh", "tom"])
def test_a_synthea_bundle_resolves_urn_uuid_references_to_its_patients_mrn(
        fhir: Path, name: str, mrn: str, lab: int, other: int, counts: dict[str, int],
        first_wbc: tuple[str, str, datetime]) -> None:
    records = list(read_file(fhir / name, OPTIONS, CATALOG))
    assert kinds(records) == {"IncomingResult": lab, "Skipped": other}  # vital signs and surveys skipped
    got = [r for r in records if isinstance(r, IncomingResult)]
    assert {r.mrn for r in got} == {mrn}  # the MR identifier, not the Synthea id or the SSN
    assert {c: n for c, n in Counter(r.code for r in got).items() if c in counts} == counts
    wbc = next(r for r in got if r.code == "6690-2")
    assert (wbc.value, wbc.unit, wbc.observed_at) == first_wbc
    assert len({r.source_key for r in got}) == lab


# --- rules, on small hand-made resources ---

def observation(**fields: Any) -> dict[str, Any]:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
           "subject": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": "A1"}},
           "effectiveDateTime": "2026-03-01T09:15:00Z",
           "valueQuantity": {"value": 3.1, "system": "http://unitsofmeasure.org", "code": "10*9/L"}}
    obs.update(fields)
    return {k: v for k, v in obs.items() if v is not None}


def read_one(resource: Any, options: ReadOptions = OPTIONS) -> Record:
    [record] = read_json(resource, "test.json", options, CATALOG)
    return record


@pytest.mark.parametrize(("status", "expected"), [
    ("final", "final"), ("amended", "corrected"), ("corrected", "corrected"),
    ("preliminary", "preliminary"), ("cancelled", "retracted"), ("entered-in-error", "retracted")])
def test_observation_statuses_map_to_result_statuses(status: str, expected: str) -> None:
    record = read_one(observation(status=status))
    assert isinstance(record, IncomingResult) and record.status == expected


def test_a_registered_observation_is_pending_and_an_unknown_status_is_unreadable() -> None:
    assert read_one(observation(status="registered")) == Skipped("test.json:o1", "pending")
    unknown = read_one(observation(status="unknown"))
    assert isinstance(unknown, Unreadable) and "'unknown'" in unknown.reason


@pytest.mark.parametrize(("when", "expected"), [
    ({"effectiveDateTime": "2026-03-01"}, datetime(2026, 3, 1, 12, 0, tzinfo=LONDON)),
    ({"effectiveDateTime": "2026-07-01T08:30:00"}, datetime(2026, 7, 1, 8, 30, tzinfo=LONDON)),
    ({"effectiveDateTime": None, "effectivePeriod": {"start": "2026-03-01T10:00:00+01:00"}},
     datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
    ({"effectiveDateTime": None, "issued": "2026-03-02T07:00:00Z"}, datetime(2026, 3, 2, 7, 0, tzinfo=UTC)),
])
def test_collection_time_falls_back_from_effective_to_issued_in_the_labs_zone(
        when: dict[str, Any], expected: datetime) -> None:
    record = read_one(observation(**when))
    assert isinstance(record, IncomingResult) and record.observed_at == expected


def test_a_partial_date_is_unreadable_rather_than_guessed() -> None:
    record = read_one(observation(effectiveDateTime="2026-11", issued="2026-11-30T10:00:00Z"))
    assert isinstance(record, Unreadable) and "'2026-11'" in record.reason


def test_the_mrn_is_the_identifier_of_the_configured_type_and_authority() -> None:
    subject = {"reference": "Patient/p"}
    two = {"resourceType": "Patient", "id": "p", "identifier": [
        {"type": {"coding": [{"code": "SS"}]}, "value": "999-12-1078"},
        {"type": {"coding": [{"code": "MR"}]}, "system": "urn:north", "value": "N1"},
        {"type": {"coding": [{"code": "MR"}]}, "system": "urn:south", "value": "S1"}]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": two}, {"resource": observation(subject=subject)}]}
    south = ReadOptions(lab_zone=LONDON, mrn_authority="urn:south")
    [record] = read_json(bundle, "b.json", south, CATALOG)
    assert isinstance(record, IncomingResult) and record.mrn == "S1"
    [ambiguous] = read_json(bundle, "b.json", OPTIONS, CATALOG)  # two MRs and no authority configured
    assert isinstance(ambiguous, Unreadable) and ambiguous.reason == NO_MRN
    lone = {"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:x", "value": "L1"}]}
    [single] = read_json(observation(subject=subject), "o.json", OPTIONS, CATALOG, references={"Patient/p": lone})
    assert isinstance(single, IncomingResult) and single.mrn == "L1"
    ssn = {"resourceType": "Patient", "id": "p", "identifier": [two["identifier"][0]]}
    [not_mrn] = read_json(observation(subject=subject), "o.json", OPTIONS, CATALOG, references={"Patient/p": ssn})
    assert isinstance(not_mrn, Unreadable) and not_mrn.reason == NO_MRN


def test_a_report_with_contained_members_derives_absolute_counts_from_a_percent_differential() -> None:
    wbc = observation(id="w", effectiveDateTime=None, subject=None,
                      valueQuantity={"value": 4.5, "system": "http://unitsofmeasure.org", "code": "10*3/uL"})
    neut = observation(id="n", effectiveDateTime=None, subject=None, code={"coding": [
        {"system": "http://loinc.org", "code": "770-8"}]}, valueQuantity={"value": 62, "unit": "%"})
    lymph = observation(id="l", effectiveDateTime=None, subject=None, code={"coding": [
        {"system": "http://loinc.org", "code": "736-9"}]}, valueQuantity={"value": 30, "unit": "%"})
    absolute_lymph = observation(id="a", effectiveDateTime=None, subject=None, code={"coding": [
        {"system": "http://loinc.org", "code": "731-0"}]}, valueQuantity={"value": 1.35, "unit": "10*9/L"})
    report = {"resourceType": "DiagnosticReport", "id": "rep", "meta": {"versionId": "3"},
              "subject": {"reference": "#pt"}, "effectiveDateTime": "2026-03-01T09:00:00Z",
              "contained": [patient("pt", "C7"), wbc, neut, lymph, absolute_lymph],
              "result": [{"reference": "#w"}, {"reference": "#n"}, {"reference": "#l"}]}
    records = list(read_json(report, "rep.json", OPTIONS, CATALOG))
    # 4 contained (one not in `result`): the neutrophil % read as the count derived from it, the
    # lymphocyte % counted ignored (its count was sent)
    assert kinds(records) == {"IncomingResult": 3, "Skipped": 1}
    [derived] = [r for r in records if isinstance(r, IncomingResult) and r.source_key.endswith("#abs")]
    assert (derived.code, derived.value, derived.unit, derived.mrn) == ("751-8", "2.79", "10*3/uL", "C7")
    assert derived.source_key == "fhir:rep#n#abs" and derived.origin == "rep.json:rep#n#abs"
    assert from_raw(derived.raw, derived.origin, OPTIONS, CATALOG) == derived  # replayable from quarantine


def test_a_new_version_keeps_the_source_key_so_it_corrects_the_first_and_redelivery_is_the_same_record() -> None:
    first = read_one(observation(meta={"versionId": "1"}))
    again = read_one(observation(meta={"versionId": "1"}))
    second = read_one(observation(meta={"versionId": "2"}, status="amended"))
    assert isinstance(first, IncomingResult) and isinstance(second, IncomingResult)
    assert first == again and first.source_key == second.source_key == "fhir:o1"
    assert second.status == "corrected"


def test_a_text_value_is_kept_for_quarantine_only_when_the_catalog_monitors_the_code() -> None:
    text_wbc = observation(valueQuantity=None, valueString="clotted")
    [kept] = read_json(text_wbc, "t.json", OPTIONS, CATALOG)
    assert isinstance(kept, IncomingResult) and kept.value == "clotted"
    urine = observation(valueQuantity=None, valueCodeableConcept={"text": "Negative"},
                        code={"coding": [{"system": "http://loinc.org", "code": "2887-8"}]})
    skipped = list(read_json(urine, "t.json", OPTIONS, CATALOG))
    assert skipped == [Skipped("t.json:o1", "not a quantity")]


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot open"), (b"\xff\xfe{", "not JSON"), (b'{"resourceType": ', "not JSON"),
    (b"[1, 2]", "not a FHIR resource")])
def test_a_file_that_is_not_fhir_json_is_refused_in_one_line(
        tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "labs.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=message) as refused:
        list(read_file(path, OPTIONS, CATALOG))
    assert "\n" not in str(refused.value)


# --- through the real ingest service and database ---

def ingest(session: Session, records: list[Record]) -> Any:
    return ingest_records(session, records, ingest_context(NOW))


@pytest.mark.parametrize("name", [GHP, F005, US_CORE_REPORT, *US_CORE, THANH, TOM],
                         ids=lambda n: n.split("_")[0])
def test_every_sample_file_ingests_and_a_second_ingest_changes_nothing(
        fhir: Path, session: Session, name: str) -> None:
    records = list(read_file(fhir / name, OPTIONS, CATALOG))
    first = ingest(session, records)
    assert first.total == len(records) and first.stored == 0  # nobody is enrolled: results are held
    again = ingest(session, list(read_file(fhir / name, OPTIONS, CATALOG)))
    assert again.total == len(records)
    assert (again.stored, again.held, again.corrected) == (0, 0, 0)
    assert again.duplicate == first.held
    assert again.already_quarantined == again.quarantined == first.quarantined


def test_a_synthea_bundle_holds_wbc_platelets_and_alt_in_canonical_units(
        fhir: Path, session: Session) -> None:
    report = ingest(session, list(read_file(fhir / TOM, OPTIONS, CATALOG)))
    held = session.exec(select(HeldResult)).all()
    by_analyte = Counter(h.analyte for h in held)
    assert (by_analyte["WBC"], by_analyte["PLT"], by_analyte["ALT"]) == (3, 3, 1)
    assert {h.unit for h in held if h.analyte in ("WBC", "PLT")} == {"10*9/L"}
    wbc = min((h for h in held if h.analyte == "WBC"), key=lambda h: h.observed_on)
    assert (wbc.value, wbc.raw_value, wbc.raw_unit) == (6.95916, "6.9591604330423635", "10*3/uL")
    assert wbc.source == "fhir" and wbc.source_key == "fhir:eb3d76ef-83bb-4745-8db2-eed69e14e6d9"
    [alt] = [h for h in held if h.analyte == "ALT"]
    assert (alt.unit, alt.value, alt.mrn) == ("U/L", 23.278224, "e20de9eb-6f2d-4871-a43f-bbede53293ed")
    assert report.quarantined == 0 and report.ignored > 0  # 20570-8 haematocrit is not monitored (analytes.toml)


def test_the_ghp_report_with_its_patient_holds_monitored_results_and_quarantines_unmapped_codes(
        fhir: Path, session: Session) -> None:
    records = list(read_json(load(fhir, GHP), GHP, OPTIONS, CATALOG,
                             references={"Patient/pat2": patient("pat2", "GHP-2")}))
    report = ingest(session, records)
    assert report.total == len(records) == 48
    held = {h.analyte: (h.value, h.unit) for h in session.exec(select(HeldResult)).all()}
    assert held["HGB"] == (176, "g/L") and held["BILI"] == (7, "umol/L") and held["CREAT"] == (90, "umol/L")
    assert held["NEUT"] == (0.9, "10*9/L") and held["ALT"] == (54, "U/L")
    # other chemistry and urine codes: not in the config (the other % are ignored: their absolute counts
    # were sent)
    assert report.reasons == {"unmapped code": 14}
    assert report.ignored == 20  # the 7 skipped above, and 13 not_monitored codes (electrolytes, monocytes...)


def test_a_monitored_result_with_a_comparator_is_quarantined_not_stored(session: Session) -> None:
    below = observation(valueQuantity={"value": 0.5, "comparator": "<", "unit": "10*9/L"})
    report = ingest(session, list(read_json(below, "lt.json", OPTIONS, CATALOG)))
    assert (report.held, report.quarantined, dict(report.reasons)) == (0, 1, {"non-numeric value": 1})
    [q] = session.exec(select(Quarantine)).all()
    assert "'<0.5' is not a number" in q.reason


#: valueQuantity.value as sent (JSON number literals), by Observation id: WBC (never 0) and EOS (0 is real).
LITERALS = {"w-minus-zero": ("6690-2", "-0"), "w-underflow": ("6690-2", "1e-400"),
            "w-minus-zero-point": ("6690-2", "-0.0"), "w-denormal": ("6690-2", "1e-320"),
            "w-smallest": ("6690-2", "5e-324"), "e-minus-zero": ("711-2", "-0"),
            "e-underflow": ("711-2", "1e-400"), "e-denormal": ("711-2", "1e-320"), "e-zero": ("711-2", "0"),
            "w-exponent": ("6690-2", "4.5e0")}


def test_a_json_number_python_would_read_as_0_is_quarantined_and_only_a_sent_0_is_stored_as_0(
        tmp_path: Path, session: Session) -> None:
    entries = [{"resource": observation(id=oid, code={"coding": [{"system": "http://loinc.org", "code": code}]},
                                        valueQuantity={"value": f"@{oid}@", "system": "http://unitsofmeasure.org",
                                                       "code": "10*9/L"})} for oid, (code, _) in LITERALS.items()]
    text = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    for oid, (_, literal) in LITERALS.items():
        text = text.replace(f'"@{oid}@"', literal)
    (tmp_path / "literals.json").write_text(text, encoding="utf-8")
    report = ingest(session, list(read_file(tmp_path / "literals.json", OPTIONS, CATALOG)))
    held = {h.source_key: h.value for h in session.exec(select(HeldResult)).all()}
    assert held == {"fhir:e-zero": 0.0, "fhir:w-exponent": 4.5}
    reasons = {q.origin.rsplit(":", 1)[1]: q.reason for q in session.exec(select(Quarantine)).all()}
    assert set(reasons) == set(LITERALS) - {"e-zero", "w-exponent"}
    assert "WBC -0 10*9/L is negative" in reasons["w-minus-zero"] and "EOS -0" in reasons["e-minus-zero"]
    assert "'1e-400' is not a number" in reasons["e-underflow"] and "too small" in reasons["e-underflow"]
    assert "plausible range" in reasons["e-denormal"] and "plausible range" in reasons["w-smallest"]
    assert report.reasons == {"impossible value": 3, "non-numeric value": 2, "unit": 3}


# --- fuzzing: mutated sample resources never raise and yield only records ---

SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
           | st.text(max_size=12)
           | st.sampled_from(["Observation", "Patient", "DiagnosticReport", "Bundle", "collection",
                              "#pt", "Patient/pat2", "Observation/r1", "2026-11", "2026-02-30",
                              "2026-03-01T25:00:00", "registered", "<", "http://loinc.org",
                              "http://unitsofmeasure.org", "770-8", "6690-2", "MR", "%", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=6)


def samples() -> list[Any]:
    fhir = EXTERNAL / "fhir"
    if not fhir.is_dir():
        return [observation()]
    thanh = load(fhir, THANH)
    report = next(e for e in thanh["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
                  and e["resource"]["code"]["coding"][0]["code"] == "58410-2")
    wanted = {r["reference"] for r in report["resource"]["result"]}
    small = {**thanh, "entry": [e for e in thanh["entry"] if e["resource"]["resourceType"] == "Patient"
                                or e is report or e["fullUrl"] in wanted]}
    return [load(fhir, GHP), load(fhir, F005), load(fhir, US_CORE_REPORT), small,
            *(load(fhir, name) for name in US_CORE), observation()]


SAMPLES = samples()
REFERENCES = {"Patient/pat2": patient("pat2"), "Patient/example": patient("example"),
              "Patient/f001": patient("f001")}


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        parent: Any = None
        key: Any = None
        node = doc
        for _ in range(8 - draw(st.integers(0, 8))):  # deep by default: hypothesis favours small draws
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node)))
            elif isinstance(node, list) and node:
                key = draw(st.integers(0, len(node) - 1))
            else:
                break
            parent, node = node, node[key]
        if parent is None:
            doc = draw(VALUES) if draw(st.integers(0, 9)) == 9 else doc
        elif draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(VALUES)
    return doc


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=mutated())
def test_mutated_fhir_never_raises_and_every_result_reads_again_from_its_raw(doc: Any) -> None:
    for record in read_json(doc, "fuzz.json", OPTIONS, CATALOG, references=REFERENCES):
        assert isinstance(record, IncomingResult | Skipped | Unreadable)
        if isinstance(record, IncomingResult):
            assert record.observed_at.tzinfo is not None and record.mrn and record.code
            assert from_raw(record.raw, record.origin, OPTIONS, CATALOG) == record
        if isinstance(record, Unreadable):
            json.loads(record.raw)
