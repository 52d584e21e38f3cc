"""Enrolling a cohort at once (`enroll --csv`) writes exactly the rows that enrolling its patients one
by one writes, ids included, on either database; and the cohort file reads as the spreadsheet says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session

from monitor.db.session import make_engine
from monitor.db.tables import Enrollment
from monitor.domain.protocol import Phase
from monitor.protocols import packaged_library
from monitor.services import cohort
from monitor.services.cohort import CohortRow, enroll_cohort
from monitor.services.enroll_csv import read_enrollments
from monitor.services.ingest import ingest_file
from monitor.services.patients import EnrollmentRequest, enroll
from tests.integration import dump_tables, ingest_context

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
PROTOCOLS = ("aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine")
GENOTYPES = ("normal", "intermediate", "poor", "unknown", None)
SIZE = 300
ALREADY = range(0, 50, 10)  # enrolled in the same protocol from the same start before the file
ENDED = 7  # a patient whose earlier enrollment ended: their weight and genotypes that day are kept


def request(i: int) -> EnrollmentRequest:
    """Every phase, protocol and genotype (given, `unknown`, absent); starts in the past and ahead."""
    start = TODAY - timedelta(days=(i * 37) % 900) if i % 9 else TODAY + timedelta(days=i % 300)
    return EnrollmentRequest(
        mrn=f"K{i:04d}", protocol=PROTOCOLS[i % 3], start_on=start, weight_kg=45 + (i % 70) + 0.25,
        phase=list(Phase)[i % len(Phase)], name=f"Patient {i}" if i % 4 else None,
        dob=date(1950 + i % 50, 1 + i % 12, 1 + i % 28) if i % 6 else None, sex=("F", "M", "U", None)[i % 4],
        tpmt=GENOTYPES[i % 5], nudt15=GENOTYPES[(i // 5) % 5],
        coordinator=f"nurse{i % 4}@example.org" if i % 11 else None, site=f"site{i % 3}" if i % 13 else None)


def held_results(path: Path) -> Path:
    """Results for every fifth MRN of the cohort (and one MRN not in it), one to three each, in an
    order that interleaves the MRNs: the held rows' ids are not in the cohort's order."""
    lines = ["mrn,collected_at,code,value,unit"]
    for k in range(3):
        for i in reversed(range(0, SIZE, 5)):
            if k <= i % 3:
                lines.append(f"K{i:04d},{TODAY - timedelta(days=10 * k + 1)},6690-2,{5 + k + i % 4}.1,10*9/L")
    lines += [f"NOTHERE,{TODAY - timedelta(days=3)},6690-2,4.4,10*9/L"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def clinic(url: str, labs: Path) -> Engine:
    """The same clinic before the file, built the same way on each database: results held, a few
    patients enrolled already, one whose enrollment ended."""
    engine = make_engine(url)
    library = packaged_library()
    with Session(engine) as s:
        report = ingest_file(s, "csv", labs, ingest_context(NOW))
        assert report.held == report.seen
        enroll(s, library, request(ENDED), today=TODAY, now=NOW, actor="nurse")
        s.execute(update(Enrollment).values(status="ended"))  # (no command ends one yet)
        for i in ALREADY:
            enroll(s, library, request(i), today=TODAY, now=NOW, actor="nurse")
        s.commit()
    return engine


def cohort_rows() -> list[CohortRow]:
    ended_again = replace(request(ENDED), protocol=PROTOCOLS[(ENDED + 1) % 3])
    return [CohortRow(i + 2, ended_again if i == ENDED else request(i)) for i in range(SIZE)]


def test_a_cohort_enrolled_at_once_writes_the_rows_enrolling_it_one_by_one_writes(
        db_url: str, second_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labs = held_results(tmp_path / "labs.csv")
    one_by_one, at_once = clinic(db_url, labs), clinic(second_url, labs)
    library, rows = packaged_library(), cohort_rows()
    try:
        with Session(one_by_one) as s:
            created = [enroll(s, library, row.request, today=TODAY, now=NOW, actor="nurse")[1] for row in rows]
            s.commit()
        monkeypatch.setattr(cohort, "CHUNK", 64)  # several rounds of inserts, as a large file has
        with Session(at_once) as s:
            report = enroll_cohort(s, library, rows, today=TODAY, now=NOW, actor="nurse")
            s.commit()
        expected = dump_tables(one_by_one)
        assert dump_tables(at_once) == expected
    finally:
        one_by_one.dispose()
        at_once.dispose()

    assert (report.enrolled, report.already_enrolled) == (created.count(True), created.count(False)) == (
        SIZE - len(ALREADY), len(ALREADY))
    assert [mrn for *_, mrn, _ in expected["held_result"]] == ["NOTHERE"]
    assert report.attached_results == sum(1 + i % 3 for i in range(0, SIZE, 5) if i not in ALREADY)
    assert len(expected["lab_result"]) == sum(1 + i % 3 for i in range(0, SIZE, 5))
    assert len(expected["enrollment"]) == SIZE + 1  # and the one that ended
    statuses = {(g[2], g[3]) for g in expected["genotype"]}
    assert {("TPMT", "unknown"), ("NUDT15", "poor"), ("TPMT", "normal")} <= statuses


def test_a_cohort_file_reads_as_the_spreadsheet_says(tmp_path: Path) -> None:
    """Columns in any order and case, spaces around cells, blank lines, a short row, optional
    columns absent, a byte-order mark: each row read as its cells say, with its line number."""
    path = tmp_path / "cohort.csv"
    path.write_text("\ufeffSite , mrn,Protocol,start,weight_kg,tpmt,nudt15,coordinator,extra\n"
                    " north , C1 ,aih-azathioprine, 2025-03-03 , 64 ,normal,,a@example.org,x\n"
                    "\n"
                    ",C2,ibd-azathioprine,2025-09-01,81.5,unknown,poor\n", encoding="utf-8")
    rows = read_enrollments(path, packaged_library(), today=TODAY)
    assert rows == [
        CohortRow(2, EnrollmentRequest("C1", "aih-azathioprine", date(2025, 3, 3), 64.0, tpmt="normal",
                                       coordinator="a@example.org", site="north")),
        CohortRow(4, EnrollmentRequest("C2", "ibd-azathioprine", date(2025, 9, 1), 81.5, tpmt="unknown",
                                       nudt15="poor")),
    ]
