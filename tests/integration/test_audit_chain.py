"""The audit trail's hash chain (issue 16) on either database: what the commands write verifies;
`monitor audit verify` names the first row altered, deleted or unhashed, and nothing of its
content; writers at once leave one chain; migration 0012 seals older events as the app would."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from alembic import command
from monitor.db.migrate import alembic_config, upgrade_to_head
from monitor.db.session import make_engine
from monitor.db.tables import AuditEvent
from monitor.db.types import UTCDateTime
from monitor.domain.audit import event_hash
from monitor.paths import alembic_dir
from monitor.protocols import packaged_library
from monitor.services import audit, cohort
from monitor.services.cohort import CohortRow, enroll_cohort
from monitor.services.patients import EnrollmentRequest
from tests.conftest import PG_DEFAULT, create_database, drop_database
from tests.functional.cli import Ran, run

PROTOCOL = "aih-azathioprine"
DAY = date(2026, 3, 1)
NOW = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
#: What a verification may never print: a name, an MRN, a coordinator's and a clinician's address.
PRIVATE = ("Ada Example", "A1001", "B2002", "a@example.org", "nurse@example.org", "Dr Who")


def ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM audit_event ORDER BY id")).scalars())


def verify(capsys: pytest.CaptureFixture[str], *extra: str) -> Ran:
    r = run(capsys, "audit", "verify", *extra)
    assert "Traceback" not in r.out + r.err
    for private in PRIVATE:
        assert private not in r.out + r.err
    return r


def change(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


@pytest.fixture
def trail(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: Engine) -> list[int]:
    """An audit trail written by the real commands: enroll, record, ingest, the daily cycle, a view,
    an acknowledgement, a coordinator set. Returns the events' ids."""
    for mrn, name in (("A1001", "Ada Example"), ("B2002", None)):
        r = run(capsys, "enroll", "--mrn", mrn, "--protocol", PROTOCOL, "--start", "2026-01-05", "--weight-kg",
                "72", "--tpmt", "normal", "--nudt15", "normal", "--coordinator", "a@example.org",
                *(("--name", name) if name else ()))
        assert r.code == 0, r.err
    assert run(capsys, "record", "A1001", "--date", "2026-01-19", "--dose", "azathioprine=50").code == 0
    labs = tmp_path / "labs.csv"
    labs.write_text("mrn,collected_at,code,value,unit\nA1001,2026-02-27T08:30,6690-2,3.1,10*9/L\n",
                    encoding="utf-8")
    assert run(capsys, "ingest", str(labs)).code == 0
    assert run(capsys, "run", "--date", DAY.isoformat()).code == 0
    assert run(capsys, "patient", "A1001", "--date", DAY.isoformat()).code == 0
    [flag] = [f for f in run(capsys, "flags", "--format", "json").json() if f["kind"] == "leukopenia"]
    r = run(capsys, "ack", str(flag["id"]), "--reason", "repeat FBC Friday", "--by", "nurse@example.org")
    assert r.code == 0, r.err
    assert run(capsys, "coordinators", "set", "a@example.org", "--name", "Dr Who").code == 0
    written = ids(engine)
    with Session(engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()]
    assert actions == ["enroll", "enroll", "record", "ingest", "daily_cycle", "view", "ack", "set"]
    return written


def test_a_trail_written_by_the_commands_verifies_as_intact(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    r = verify(capsys)
    assert (r.code, r.out) == (0, f"audit: {len(trail)} events, chain intact\n")
    assert run(capsys, "audit").out == r.out  # `monitor audit` alone is verify
    with Session(engine) as s:
        events = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert verify(capsys, "--format", "json").json() == {
        "events": len(trail), "intact": True, "newest": {"id": trail[-1], "hash": events[-1].hash},
        "first_break": None}
    assert events[0].prev_hash is None
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    for e in events:  # the hash of the content as it reads back from the database
        assert e.hash == event_hash(e.prev_hash, e.at, e.actor, e.action, e.entity, e.entity_id, e.detail)


def test_a_row_whose_detail_was_edited_is_named_as_altered_with_exit_1(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    edited = trail[2]  # the `record` event
    change(engine, "UPDATE audit_event SET detail = '{\"events\": 9, \"unlisted\": 0}' WHERE id = :id", id=edited)
    r = verify(capsys)
    assert r.code == 1
    assert r.out.startswith(f"audit: row {edited} (record at ")
    assert "was altered: its content no longer matches its hash; 2 events before it are intact" in r.out
    report = verify(capsys, "--format", "json").json()
    assert (report["intact"], report["events"]) == (False, 3)
    assert {k: report["first_break"][k] for k in ("id", "action", "kind", "previous_id")} == {
        "id": edited, "action": "record", "kind": "altered", "previous_id": trail[1]}


def test_a_row_whose_actor_or_time_was_edited_is_named_as_altered(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    change(engine, "UPDATE audit_event SET actor = 'someone else' WHERE id = :id", id=trail[6])
    change(engine, "UPDATE audit_event SET at = at + interval '1 second' WHERE id = :id"
           if engine.dialect.name == "postgresql" else
           "UPDATE audit_event SET at = datetime(at, '+1 second') WHERE id = :id", id=trail[4])
    r = verify(capsys)
    assert (r.code, r.out.split(" (")[0]) == (1, f"audit: row {trail[4]}")
    assert "(daily_cycle at " in r.out and "was altered" in r.out


def test_deleting_a_middle_row_names_the_row_after_it(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    change(engine, "DELETE FROM audit_event WHERE id = :id", id=trail[3])
    r = verify(capsys)
    assert r.code == 1
    assert r.out.startswith(f"audit: row {trail[4]} (daily_cycle at ")
    assert "does not follow the row before it: the row before it was deleted or altered" in r.out
    first_break = verify(capsys, "--format", "json").json()["first_break"]
    assert (first_break["id"], first_break["kind"], first_break["previous_id"]) == (trail[4], "after_gap", trail[2])


def test_deleting_the_oldest_row_names_the_row_after_it(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    change(engine, "DELETE FROM audit_event WHERE id = :id", id=trail[0])
    r = verify(capsys)
    assert r.code == 1 and r.out.startswith(f"audit: row {trail[1]} (enroll at ")
    assert "the row before it was deleted or altered; 0 events before it are intact" in r.out


def test_deleting_the_newest_rows_shows_only_against_the_newest_id_and_hash_kept_before(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    """The limit architecture.md states: what is left of the chain is intact."""
    kept = verify(capsys, "--format", "json").json()["newest"]
    change(engine, "DELETE FROM audit_event WHERE id >= :id", id=trail[-2])
    r = verify(capsys, "--format", "json")
    assert (r.code, r.json()["intact"], r.json()["events"]) == (0, True, len(trail) - 2)
    assert r.json()["newest"]["id"] == trail[-3] != kept["id"]


def test_a_row_whose_hash_was_blanked_is_named_with_exit_1(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    change(engine, "UPDATE audit_event SET hash = NULL WHERE id = :id", id=trail[5])
    r = verify(capsys)
    assert r.code == 1
    assert r.out.startswith(f"audit: row {trail[5]} (view at ")
    assert "has no hash: it was written outside the chain, or its hash was removed" in r.out


def test_a_row_rehashed_after_an_edit_is_caught_at_the_row_after_it(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    """Someone who edits a row and recomputes its hash (but not the rest of the chain)."""
    with Session(engine) as s:
        e = s.get(AuditEvent, trail[6])
        assert e is not None
        e.detail, e.actor = {"note": "nothing happened"}, "someone else"
        e.hash = event_hash(e.prev_hash, e.at, e.actor, e.action, e.entity, e.entity_id, e.detail)
        s.commit()
    r = verify(capsys)
    assert r.code == 1 and r.out.startswith(f"audit: row {trail[7]} (set at ")
    assert "the row before it was deleted or altered" in r.out


def test_a_detail_or_time_edited_into_nonsense_is_altered_not_a_crash(
        capsys: pytest.CaptureFixture[str], trail: list[int], engine: Engine) -> None:
    if engine.dialect.name == "sqlite":  # SQLite keeps whatever text it is given
        change(engine, "UPDATE audit_event SET at = 'yesterday' WHERE id = :id", id=trail[1])
        r = verify(capsys)
        assert (r.code, r.out.startswith(f"audit: row {trail[1]} (enroll at an unreadable time) was altered")) == (
            1, True), r.out
    change(engine, "UPDATE audit_event SET detail = '[1, 2' WHERE id = :id"
           if engine.dialect.name == "sqlite" else
           "UPDATE audit_event SET detail = '\"just text\"' WHERE id = :id", id=trail[0])
    r = verify(capsys)
    assert r.code == 1 and r.out.startswith(f"audit: row {trail[0]} (enroll at ") and "was altered" in r.out


def test_the_walk_reads_a_batch_at_a_time_and_finds_a_break_on_a_batch_boundary(
        trail: list[int], engine: Engine) -> None:
    with Session(engine) as s:
        for batch in (1, 2, 3, len(trail), len(trail) + 1):
            check = audit.verify_chain(s, batch=batch)
            assert (check.events, check.first_break) == (len(trail), None)
    change(engine, "DELETE FROM audit_event WHERE id = :id", id=trail[3])
    with Session(engine) as s:
        for batch in (1, 2, 4, 100):
            check = audit.verify_chain(s, batch=batch)
            assert check.first_break is not None
            assert (check.events, check.first_break.id, check.first_break.kind) == (4, trail[4], audit.AFTER_GAP)


@pytest.mark.parametrize("now", [
    datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=ZoneInfo("Europe/London")),  # BST
    datetime(2026, 3, 29, 0, 30, 0, 1, tzinfo=ZoneInfo("America/New_York")),
    datetime(2026, 1, 15, 8, 0, tzinfo=UTC),
])
def test_an_event_written_at_any_time_zone_and_microsecond_hashes_the_instant_that_reads_back(
        engine: Engine, now: datetime) -> None:
    with Session(engine) as s:
        audit.audit(s, actor="nurse", action="view", entity="patient", entity_id=1, now=now)
        audit.audit(s, actor="nurse", action="view", entity="patient", entity_id=2, now=now, seen=[1, 2.5])
        s.commit()
    with Session(engine) as s:
        events = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        assert [e.at for e in events] == [now, now] and all(e.at.tzinfo == UTC for e in events)
        check = audit.verify_chain(s)
    assert (check.events, check.first_break) == (2, None)


def test_an_empty_trail_is_intact(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init").code == 0
    r = verify(capsys)
    assert (r.code, r.out) == (0, "audit: 0 events, chain intact\n")


def test_a_bad_format_is_one_line_with_exit_2(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init").code == 0
    r = verify(capsys, "--format", "xml")
    assert (r.code, r.err) == (2, "monitor: error: --format 'xml' must be one of text, json\n")


# --- bulk enrollment ---------------------------------------------------------------------------

def cohort_file(path: Path, size: int) -> Path:
    lines = ["mrn,protocol,start,weight_kg,tpmt,nudt15,coordinator,site"]
    lines += [f"C{i:03d},{PROTOCOL},2026-01-05,{50 + i},normal,normal,a@example.org,north" for i in range(size)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_cohort_enrolled_from_a_csv_is_chained_between_the_events_around_it(
        db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "enroll", "--mrn", "A1001", "--protocol", PROTOCOL, "--start", "2026-01-05",
               "--weight-kg", "70").code == 0
    monkeypatch.setattr(cohort, "CHUNK", 7)  # several rounds of inserts, each chained to the one before
    r = run(capsys, "enroll", "--csv", str(cohort_file(tmp_path / "cohort.csv", 30)))
    assert r.code == 0, r.err
    assert run(capsys, "patient", "C007").code == 0
    r = verify(capsys)
    assert (r.code, r.out) == (0, "audit: 32 events, chain intact\n")
    with Session(engine) as s:
        events = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [e.action for e in events] == ["enroll"] * 31 + ["view"]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def test_the_bulk_writer_holds_the_chain_before_it_reads_the_newest_hash(engine: Engine) -> None:
    """PostgreSQL: `chain_head` takes the advisory lock, so another transaction cannot take it.
    SQLite: it refuses a transaction that has not written (and so holds no write lock)."""
    with Session(engine) as s:
        if engine.dialect.name == "sqlite":
            with pytest.raises(RuntimeError, match="has written already"):
                audit.chain_head(s)
            return
        assert audit.chain_head(s) is None
        with engine.connect() as other:
            taken = other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": audit.CHAIN_LOCK_KEY})
            assert taken.scalar_one() is False
        s.rollback()
        with engine.connect() as other:
            taken = other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": audit.CHAIN_LOCK_KEY})
            assert taken.scalar_one() is True


# --- writers at once -----------------------------------------------------------------------------

WRITERS, TRANSACTIONS, EVENTS_EACH = 4, 12, 2


def test_writers_at_once_each_in_their_own_transactions_leave_one_intact_chain(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three threads writing audit events through `audit()` (two per transaction) and one enrolling
    a cohort in chunks, all started together: ids and chain order agree."""
    start = threading.Barrier(WRITERS)
    monkeypatch.setattr(cohort, "CHUNK", 5)
    library = packaged_library()

    def write_events(writer: int) -> None:
        engine = make_engine(db_url)
        try:
            start.wait(timeout=30)
            for t in range(TRANSACTIONS):
                with Session(engine) as s:
                    for n in range(EVENTS_EACH):
                        audit.audit(s, actor=f"writer{writer}", action="view", entity="patient", entity_id=t,
                                    now=NOW + timedelta(microseconds=n), n=n)
                    s.commit()
        finally:
            engine.dispose()

    def enroll_a_cohort() -> None:
        engine = make_engine(db_url)
        rows = [CohortRow(i + 2, EnrollmentRequest(f"K{i:03d}", PROTOCOL, date(2026, 1, 5), 60.0))
                for i in range(20)]
        try:
            start.wait(timeout=30)
            with Session(engine) as s:
                enroll_cohort(s, library, rows, today=DAY, now=NOW, actor="bulk")
                s.commit()
        finally:
            engine.dispose()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = [pool.submit(write_events, w) for w in range(WRITERS - 1)] + [pool.submit(enroll_a_cohort)]
        for f in futures:
            f.result(timeout=300)
    engine = make_engine(db_url)
    try:
        with Session(engine) as s:
            check = audit.verify_chain(s, batch=16)
            assert (check.events, check.first_break) == ((WRITERS - 1) * TRANSACTIONS * EVENTS_EACH + 20, None)
            enrolled = s.exec(select(AuditEvent.id).where(AuditEvent.actor == "bulk")
                              .order_by(col(AuditEvent.id))).all()
        assert len(enrolled) == 20
    finally:
        engine.dispose()


# --- migration 0012 ----------------------------------------------------------------------------

def migration() -> ModuleType:
    [path] = (alembic_dir() / "versions").glob("*_0012_*.py")
    spec = importlib.util.spec_from_file_location("migration_0012", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVENTS: list[tuple[str | None, datetime, str, str, str, int | None, Any]] = [
    (None, NOW, "nurse@example.org", "enroll", "enrollment", 1, {"protocol": PROTOCOL, "attached_results": 0}),
    ("ab" * 32, datetime(2026, 7, 1, 14, 30, tzinfo=ZoneInfo("Europe/London")), "monitor", "daily_cycle", "job_run",
     None, {"evaluated": 5, "seconds": 0.25, "by": {"host-1": 5}, "z": [1, "two", None], "a": True}),
    ("cd" * 32, datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))), "Zoë Ünïcode", "set", "coordinator",
     None, {"address": "ä@example.org", "nested": {"b": 1, "a": 2}}),
    ("ef" * 32, NOW, "t", "a", "e", None, {}),
    ("ef" * 32, NOW, "t", "a", "e", None, None),
]


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_the_migrations_hash_is_the_apps_hash(event: tuple[Any, ...]) -> None:
    assert migration().event_hash(*event) == event_hash(*event)


@pytest.fixture
def fresh_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A new database, never migrated, of the same kind as `db_url`."""
    if make_url(db_url).get_backend_name() != "postgresql":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url, admin = create_database(os.environ.get("MONITOR_TEST_DATABASE_URL") or PG_DEFAULT)
    try:
        yield url
    finally:
        drop_database(admin, url)


OLD_AUDIT = sa.table("audit_event", sa.column("at", UTCDateTime()), sa.column("actor"), sa.column("action"),
                     sa.column("entity"), sa.column("entity_id"), sa.column("detail", sa.JSON()))


def test_migration_0012_seals_the_events_written_before_it_as_the_app_chains_them(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    try:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0011")
        written = [{"at": NOW + timedelta(minutes=i), "actor": f"user{i % 3}", "action": "view", "entity": "patient",
                    "entity_id": i, "detail": {"i": i, "ü": [i, 0.5]} if i % 4 else None} for i in range(8)]
        with engine.begin() as conn:
            conn.execute(sa.insert(OLD_AUDIT), written)
        upgrade_to_head(engine)
        with Session(engine) as s:
            check = audit.verify_chain(s)
            assert (check.events, check.first_break) == (8, None)
            events = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        prev = None
        for e in events:
            assert (e.prev_hash, e.hash) == (prev, event_hash(prev, e.at, e.actor, e.action, e.entity,
                                                              e.entity_id, e.detail))
            prev = e.hash

        with engine.begin() as conn:  # sealed again a few at a time: the same chain
            conn.execute(text("UPDATE audit_event SET prev_hash = NULL, hash = NULL"))
            migration().seal_audit_events(conn, batch=3)
        with Session(engine) as s:
            assert [(e.prev_hash, e.hash) for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()] == [
                (e.prev_hash, e.hash) for e in events]
            audit.audit(s, actor="after", action="view", entity="patient", entity_id=9, now=NOW, k=1)
            s.commit()
            check = audit.verify_chain(s)
            assert (check.events, check.first_break) == (9, None)
    finally:
        engine.dispose()
