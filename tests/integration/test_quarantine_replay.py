"""`monitor quarantine replay`: after a mapping fix or an enrollment, quarantined records come back;
the rest stay quarantined with today's reason. Nothing is lost either way."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from monitor.db.tables import LabResult, Quarantine
from monitor.paths import config_dir
from monitor.services import quarantine
from tests.functional.cli import run

pytestmark = pytest.mark.usefixtures("db_url")
HEADER = "mrn,collected_at,code,value,unit"


def enroll(capsys: pytest.CaptureFixture[str], mrn: str) -> None:
    r = run(capsys, "enroll", "--mrn", mrn, "--protocol", "aih-azathioprine", "--start", "2026-01-05",
            "--weight-kg", "72")
    assert r.code == 0, r.err


def ingest(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    r = run(capsys, "ingest", str(path))
    assert r.code == 0, r.err
    return r.out


def replay(capsys: pytest.CaptureFixture[str]) -> str:
    r = run(capsys, "quarantine", "replay")
    assert r.code == 0, r.err
    return r.out


def statuses(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        rows = s.exec(select(Quarantine.status, func.count()).group_by(col(Quarantine.status))).all()
    return dict(rows)


def site_config_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str, analyte: str) -> None:
    """A site's config folder (protocols.directory): the packaged one plus a local code."""
    site = tmp_path / "site-config"
    shutil.copytree(config_dir(), site)
    analytes = site / "analytes.toml"
    text = analytes.read_text()
    analytes.write_text(text.replace("[local_codes]\n", f'[local_codes]\n"{code}" = "{analyte}"\n', 1))
    monkeypatch.setenv("MONITOR_PROTOCOLS__DIRECTORY", str(site))


def test_a_platelet_count_with_only_a_local_code_is_replayed_once_the_mapping_is_added(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    enroll(capsys, "A1001")
    labs = tmp_path / "labs.csv"
    labs.write_text(f"{HEADER}\nA1001,2026-01-30,6690-2,5.1,10*9/L\nA1001,2026-01-30,PLTLOCAL,250,10*9/L\n")
    out = ingest(capsys, labs)
    assert "1 stored" in out and "1 quarantined" in out and "unmapped code" in out

    assert "replayed 0; 1 still quarantined" in replay(capsys)  # no mapping yet: the same row, tried twice
    assert statuses(engine) == {"open": 1}
    [q] = run(capsys, "quarantine", "list", "--format", "json").json()
    assert "'PLTLOCAL' is not mapped" in q["reason"] and q["origin"] == "labs.csv:3"

    site_config_mapping(tmp_path, monkeypatch, "PLTLOCAL", "PLT")
    assert "replayed 1; 0 still quarantined" in replay(capsys)
    assert statuses(engine) == {"replayed": 1}
    assert run(capsys, "quarantine", "list", "--format", "json").json() == []
    view = run(capsys, "patient", "A1001", "--format", "json", "--date", "2026-02-01").json()
    assert sorted((r["analyte"], r["value"]) for r in view["results"]) == [("PLT", 250.0), ("WBC", 5.1)]


def test_an_expired_held_result_is_replayed_once_its_patient_is_enrolled(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path) -> None:
    labs = tmp_path / "labs.csv"
    labs.write_text(f"{HEADER}\nB2002,2026-01-29,6690-2,5.2,10*9/L\n")
    assert "1 held" in ingest(capsys, labs)
    after_hold = (date.today() + timedelta(days=190)).isoformat()  # past the 180 days from its arrival (today)
    ran = run(capsys, "run", "--date", after_hold)
    assert ran.code == 0 and "1 held results expired to quarantine" in ran.out, ran.out

    assert "replayed 0; 1 still quarantined" in replay(capsys)  # B2002 is still not enrolled
    assert statuses(engine) == {"open": 1}  # the same row waits: nothing new to say about it
    enroll(capsys, "B2002")
    assert "replayed 1; 0 still quarantined" in replay(capsys)
    with Session(engine) as s:
        [result] = s.exec(select(LabResult)).all()
    assert (result.analyte, result.value, result.observed_on) == ("WBC", 5.2, date(2026, 1, 29))
    assert result.observed_at == datetime(2026, 1, 29, 12, tzinfo=UTC)  # a bare date is read as local noon


def test_many_records_are_replayed_a_page_at_a_time_and_each_is_accounted_for(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More records than a page; a mapping fix brings back one local code, the other stays."""
    monkeypatch.setattr(quarantine, "PAGE", 7)
    enroll(capsys, "A1001")
    labs = tmp_path / "labs.csv"
    rows = [f"A1001,2026-01-{day:02d},{code},{value},10*9/L"
            for day in range(1, 16) for code, value in (("PLTLOCAL", 200 + day), ("XLOCAL", day))]
    labs.write_text("\n".join([HEADER, *rows]) + "\n")
    assert "30 quarantined" in ingest(capsys, labs)
    site_config_mapping(tmp_path, monkeypatch, "PLTLOCAL", "PLT")

    seen: list[tuple[int, int]] = []
    monkeypatch.setattr("monitor.cli.progress_bar", _Recording(seen))
    assert "replayed 15; 15 still quarantined" in replay(capsys)
    assert seen[-1] == (30, 30) and len(seen) == 5  # pages of 7: 7, 14, 21, 28, 30
    assert statuses(engine) == {"replayed": 15, "open": 15}
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(LabResult)).one() == 15
    assert "replayed 0; 15 still quarantined" in replay(capsys)  # the same rows, once each


class _Recording:
    """A stand-in for the CLI's progress bar that records (completed, total)."""

    def __init__(self, seen: list[tuple[int, int]]) -> None:
        self.seen = seen

    def __call__(self, label: str) -> _Recording:
        return self

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, label: str, total: int | None = None) -> int:
        return 0

    def update(self, task: int, completed: int, total: int) -> None:
        self.seen.append((completed, total))


def test_an_hl7_result_with_a_local_code_is_replayed_under_its_original_source_key(
        capsys: pytest.CaptureFixture[str], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quarantined HL7 record keeps its source key (the ZMK line), so the replayed result is
    the same record: the file sent again afterwards is a duplicate, not a second result."""
    enroll(capsys, "A1001")
    message = tmp_path / "labs.hl7"
    message.write_text("MSH|^~\\&|LAB|NORTH|MON|CLINIC|20260130093000||ORU^R01|CTRL7|P|2.5.1\r"
                       "PID|1||A1001^^^NORTH^MR\rOBR|1||F7|57021-8^CBC^LN|||20260130083000\r"
                       "OBX|1|NM|6690-2^WBC^LN||5.1|10*9/L|4.0-11.0||||F\r"
                       "OBX|2|NM|PLTX^Platelets^L||221|10*9/L|140-400||||F\r")
    out = ingest(capsys, message)
    assert "1 stored" in out and "1 quarantined" in out and "unmapped code" in out
    site_config_mapping(tmp_path, monkeypatch, "PLTX", "PLT")
    assert "replayed 1; 0 still quarantined" in replay(capsys)
    again = ingest(capsys, message)
    assert "0 stored" in again and "2 duplicate" in again, again
    with Session(engine) as s:
        assert sorted(s.exec(select(LabResult.analyte)).all()) == ["PLT", "WBC"]
