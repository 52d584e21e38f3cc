"""A large file is read and prepared in a worker process: the same outcome as in-process,
errors raised here as one clear message, and no worker left behind."""

from __future__ import annotations

import os
from collections.abc import Generator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete
from sqlmodel import Session, select

from monitor.db.tables import FlagRow, HeldResult, LabResult, OutboxAttempt, OutboxMessage, Quarantine
from monitor.ingest.csv_reader import CELL_READ_MAX
from monitor.ingest.records import ReadOptions, UnreadableFile
from monitor.ingest.worker import in_worker
from monitor.protocols import packaged_library
from monitor.services import ingest as service
from monitor.services import prepare
from monitor.services.patients import EnrollmentRequest, enroll
from tests.integration import ingest_context

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
OPTIONS = ReadOptions(lab_zone=LONDON)
#: A row the csv module cannot read past: a cell longer than it reads at all (a quote never closed).
ENDLESS = b'WRK000,2026-01-05,6690-2,"5' + b"9" * CELL_READ_MAX + b'",10*9/L,F\n'


def workers() -> list[int]:
    """This process's worker processes that are still there (zombies included)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"monitor.ingest.worker" in cmdline:
            found.append(int(stat.parent.name))
    return found


def lab_file(path: Path, draws: int) -> Path:
    """Synthetic CSV with every kind of outcome: stored, held, duplicate, corrected, conflicting,
    unmapped, non-numeric, a bad unit and a critical value."""
    lines = ["mrn,collected_at,code,value,unit,status"]
    for d in range(draws):
        on = (date(2025, 9, 1) + timedelta(days=d // 7)).isoformat()
        mrn = f"WRK{d % 7:03d}"
        lines += [f"{mrn},{on},6690-2,{5 + d % 3},10*9/L,F", f"{mrn},{on},777-3,{200 + d % 50},10*9/L,F",
                  f"{mrn},{on},1742-6,{20 + d % 9},U/L,F"]
    lines += ["WRK000,2025-09-01,6690-2,5,10*9/L,F",  # a duplicate
              "WRK001,2025-09-01,6690-2,4.4,10*9/L,C",  # a correction
              "WRK002,2025-09-01,6690-2,9.9,10*9/L,F",  # a conflict
              "WRK003,2026-02-01,99999-9,1,U/L,F", "WRK003,2026-02-01,718-7,high,g/L,F",
              "WRK003,2026-02-01,718-7,13,g/mL,F", "WRK004,2026-02-02,751-8,0.3,10*9/L,F"]
    path.write_text("\n".join(lines) + "\n")
    return path


def outcome(session: Session) -> tuple[Any, ...]:
    session.expire_all()
    results = sorted((r.source_key, r.analyte, r.value, r.status, r.observed_on, r.patient_id)
                     for r in session.exec(select(LabResult)).all())
    held = sorted((h.source_key, h.mrn, h.value) for h in session.exec(select(HeldResult)).all())
    quarantine = sorted((q.origin, q.reason, q.raw) for q in session.exec(select(Quarantine)).all())
    return results, held, quarantine


def ingest(session: Session, path: Path) -> dict[str, Any]:
    library = packaged_library()
    return service.ingest_file(session, "csv", path, ingest_context(NOW, library=library)).as_dict()


def test_a_file_prepared_in_the_worker_ends_exactly_as_one_ingested_in_process(
        session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = packaged_library()
    for n in range(5):  # WRK005 and WRK006 are not enrolled: their results are held
        enroll(session, library, EnrollmentRequest(f"WRK{n:03d}", "aih-azathioprine", date(2026, 1, 5), 70,
                                                   tpmt="normal"), today=NOW.date(), now=NOW, actor="test")
    session.commit()
    path = lab_file(tmp_path / "labs.csv", 700)

    monkeypatch.setattr(service, "WORKER_MIN_BYTES", path.stat().st_size + 1)  # in this process
    in_process = ingest(session, path), outcome(session)
    for model in (OutboxAttempt, OutboxMessage, FlagRow, LabResult, HeldResult, Quarantine):
        session.execute(delete(model))
    session.commit()
    monkeypatch.setattr(service, "WORKER_MIN_BYTES", 0)  # in a worker process
    in_worker_ = ingest(session, path), outcome(session)

    assert in_worker_ == in_process
    report = in_process[0]
    assert report["stored"] > 0 and report["held"] > 0 and report["duplicate"] > 0
    assert report["corrected"] == 1 and report["critical_flags"] >= 1
    assert report["quarantine_reasons"] == {"conflicting re-delivery": 1, "unmapped code": 1,
                                            "non-numeric value": 1, "unit": 1}
    assert workers() == []


def test_a_file_that_turns_out_unreadable_in_the_worker_raises_the_same_clear_error_here(
        session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = lab_file(tmp_path / "labs.csv", 10)
    path.write_bytes(path.read_bytes() + ENDLESS)
    monkeypatch.setattr(service, "WORKER_MIN_BYTES", 0)
    with pytest.raises(UnreadableFile, match=f"labs.csv: line 39: a cell is longer than {CELL_READ_MAX:,} "):
        ingest(session, path)
    assert workers() == []


def test_a_file_that_fails_midway_keeps_what_was_committed_and_the_fixed_file_completes_it(
        session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that stops midway (a cell the csv module cannot read past) keeps every record before
    that line, committed, and says what it kept; the fixed file, sent again, ends exactly as if it
    had been good at first."""
    library = packaged_library()
    for n in range(5):
        enroll(session, library, EnrollmentRequest(f"WRK{n:03d}", "aih-azathioprine", date(2026, 1, 5), 70,
                                                   tpmt="normal"), today=NOW.date(), now=NOW, actor="test")
    session.commit()
    path = lab_file(tmp_path / "labs.csv", 700)
    good = path.read_bytes()
    lines = good.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1051]) + ENDLESS + b"".join(lines[1051:]))  # after 1,050 rows
    monkeypatch.setattr(service, "WORKER_MIN_BYTES", len(good) * 2)  # in this process, with small batches
    monkeypatch.setattr(prepare, "BATCH", 100)
    monkeypatch.setattr(service, "COMMIT_EVERY", 500)

    with pytest.raises(UnreadableFile, match="line 1052: .* committed before it: .*; records seen: 1,050; ") as stop:
        ingest(session, path)
    assert "\n" not in str(stop.value)
    session.rollback()
    kept = len(session.exec(select(LabResult)).all())
    assert kept == 750  # every row before the stop of the five enrolled patients (5 of every 7 draws)

    path.write_bytes(good)
    again = ingest(session, path)
    assert again["duplicate"] >= kept
    recovered = outcome(session)
    for model in (OutboxAttempt, OutboxMessage, FlagRow, LabResult, HeldResult, Quarantine):
        session.execute(delete(model))
    session.commit()
    ingest(session, path)
    assert outcome(session) == recovered  # the same rows, each once
    assert 0 < kept < len(recovered[0])  # the failed run kept its committed part, not the rest


def _two_then_fail() -> Any:
    yield 1
    yield 2
    raise KeyError("a reader bug")


def _forever() -> Any:
    n = 0
    while True:
        n += 1
        yield n


def test_the_worker_reports_its_errors_and_never_outlives_the_consumer() -> None:
    items = in_worker(_two_then_fail)
    assert [next(items), next(items)] == [1, 2]
    with pytest.raises(KeyError, match="a reader bug"):
        next(items)
    endless = in_worker(_forever)
    assert isinstance(endless, Generator)
    assert next(endless) == 1
    endless.close()  # the consumer stops early: the worker is stopped too
    assert workers() == []
