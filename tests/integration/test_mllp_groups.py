"""Group commit and pipelining in the MLLP listener: messages from every connection stored a group
at a time, each ACK after the commit that made its message durable, each connection's ACKs in
order. Real loopback sockets, real databases, and a real `monitor mllp` process killed right after
an ACK came."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, FlagRow, HeldResult, InboundMessage, LabResult
from monitor.ingest.mllp import END, START, Listener, frame
from monitor.ingest.records import ReadOptions
from monitor.protocols import packaged_library
from monitor.services.inbound import receive_messages
from monitor.services.patients import EnrollmentRequest, enroll
from monitor.services.prepare import Context
from tests.conftest import empty_database
from tests.integration import LONDON, dump_tables, ingest_context
from tests.integration.test_mllp_conformance import start_listener

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)


def oru(control: str, *, mrn: str = "GRP0001", value: str = "5.4", status: str = "F", code: str = "6690-2",
        order: str = "", extra: str = "") -> str:
    """A synthetic ORU^R01 (v2.5.1) with one result (OBX-11 `status`) of order `order` (OBR-3),
    and `extra` segments after it."""
    return "\r".join([
        f"MSH|^~\\&|LABAPP|LABFAC|MONAPP|MONFAC|20261125083000||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
        f"OBR|1||{order or control}|58410-2^CBC panel^LN|||20261125080000",
        f"OBX|1|NM|{code}^Leukocytes^LN||{value}|10*9/L|4.0-11.0|N|||{status}|||20261125080000",
        *([extra] if extra else []),
    ]) + "\r"


BROKEN = ("MSH|^~&|LAB|HOSP|MONITOR|CLINIC|20261125083000||ORU^R01|BROKEN1|P|2.5.1\r"
          "PID|1||X1^^^HOSP^MR\rOBX|1|NM|6690-2^WBC^LN||5|10*9/L|||||F\r")


def context(library: bool = False) -> Context:
    return ingest_context(NOW, library=packaged_library() if library else None, options=ReadOptions(lab_zone=LONDON))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (a liveness deadline of 30 s, not a measurement)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


class Store:
    """The listener's store: `receive_messages` on a real database. It notes each group's size
    and whether every message its ACKs answer was committed — seen from another connection —
    before the ACKs were handed back to the listener. With `hold_first`, the first group is not
    stored until, with the messages waiting behind it (the listener read them meanwhile), there
    are that many."""

    def __init__(self, engine: Engine, *, hold_first: int = 0, ctx: Context | None = None) -> None:
        self.engine, self.hold_first, self.ctx = engine, hold_first, ctx or context()
        self.groups: list[int] = []
        self.committed_first: list[bool] = []
        self.listener: Listener | None = None

    def __call__(self, texts: list[str]) -> list[str]:
        if self.hold_first and not self.groups:
            wait_until(lambda: self.listener is not None and len(texts) + len(self.listener.waiting) >= self.hold_first,
                       f"{self.hold_first} frames read while the first group waits")
        with Session(self.engine, expire_on_commit=False) as s:
            replies = receive_messages(s, texts, ctx=self.ctx, channel="mllp")
        answered = {msa(r)[1] for r in replies if msa(r)[0] in ("AA", "AE")}
        with self.engine.connect() as other:
            seen = set(other.execute(select(InboundMessage.control_id).where(
                col(InboundMessage.control_id).in_(answered))).scalars())
        self.committed_first.append(seen == answered)
        self.groups.append(len(texts))
        return replies


def msa(reply: str) -> tuple[str, str]:
    """MSA-1 (the ACK code) and MSA-2 (the control id it answers)."""
    fields = reply.split("\rMSA|", 1)[1].split("\r", 1)[0].split("|")
    return fields[0], fields[1]


async def _acks(reader: asyncio.StreamReader, n: int) -> list[str]:
    replies = []
    for _ in range(n):
        await reader.readuntil(START)
        replies.append((await reader.readuntil(END))[:-2].decode())
    return replies


async def one_at_a_time(port: int, messages: list[str]) -> list[str]:
    """A sender that waits for each ACK before it sends the next message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for m in messages:
        writer.write(frame(m))
        await writer.drain()
        replies += await asyncio.wait_for(_acks(reader, 1), 60)
    writer.close()
    await writer.wait_closed()
    return replies


async def pipelined(port: int, messages: list[str], *, first_alone: Store | None = None) -> list[str]:
    """A sender that writes every frame without waiting for ACKs (with `first_alone`: the first
    frame, and the rest once the listener is storing it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rest = messages
    if first_alone is not None:
        writer.write(frame(messages[0]))
        await writer.drain()
        await asyncio.to_thread(wait_until, lambda: first_alone.listener is not None and
                                not first_alone.listener.waiting and first_alone.listener.in_flight is not None,
                                "the first frame taken for storing")
        rest = messages[1:]
    writer.write(b"".join(frame(m) for m in rest))
    await writer.drain()
    replies = await asyncio.wait_for(_acks(reader, len(messages)), 60)
    writer.close()
    await writer.wait_closed()
    return replies


def serve(store: Store, *senders: Callable[[int], Any]) -> list[list[str]]:
    """A listener storing through `store` on a loopback port; each sender's ACKs."""
    async def run() -> list[list[str]]:
        listener = Listener(store, now=lambda: NOW)
        store.listener = listener
        port = await listener.start("127.0.0.1", 0)
        try:
            return list(await asyncio.gather(*(send(port) for send in senders)))
        finally:
            await listener.close()
    return asyncio.run(run())


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def statuses(engine: Engine) -> dict[str | None, list[tuple[str, str | None]]]:
    found: dict[str | None, list[tuple[str, str | None]]] = {}
    with Session(engine) as s:
        for m in s.exec(select(InboundMessage).order_by(col(InboundMessage.id))):
            found.setdefault(m.control_id, []).append((m.status, m.ack_code))
    return found


def test_sixteen_concurrent_senders_are_all_acked_aa_after_their_group_commit_and_stored_once(
        engine: Engine) -> None:
    messages = [[oru(f"S{c:02d}N{n:02d}", mrn=f"SEND{c:02d}") for n in range(10)] for c in range(16)]
    store = Store(engine, hold_first=16)  # the first group waits for a frame from every sender
    replies = serve(store, *(lambda port, m=m: one_at_a_time(port, m) for m in messages))
    for sent, acks in zip(messages, replies, strict=True):
        assert [msa(r) for r in acks] == [("AA", m.split("|")[9]) for m in sent]
    assert 16 in (store.groups[0], sum(store.groups[:2])) and sum(store.groups) == 160  # the first 16: 1 or 2 groups
    assert all(store.committed_first)  # every ACK was handed back after its message was committed
    found = statuses(engine)
    assert len(found) == 160 and all(v == [("processed", "AA")] for v in found.values())
    assert count(engine, HeldResult) == 160


@contextmanager
def refusing(engine: Engine, table: str, event: str, condition: str) -> Iterator[None]:
    """A database that refuses `event` (INSERT, UPDATE) on `table` where `condition` holds (a real
    trigger, as a full disk or a broken index would refuse a write)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER refuse BEFORE {event} ON {table} WHEN {condition} "
                              "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF {condition} THEN "
                              "RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(text(f"CREATE TRIGGER refuse BEFORE {event} ON {table} "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    yield
    with engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        conn.execute(text("DROP TRIGGER IF EXISTS refuse" + ("" if sqlite else f" ON {table}")))
        if not sqlite:
            conn.execute(text("DROP FUNCTION IF EXISTS refuse()"))


def refusing_held_platelets_for(engine: Engine, mrn: str) -> contextlib.AbstractContextManager[None]:
    """Refused: one MRN's held platelet counts. Its message's leukocytes, written first, must go too."""
    return refusing(engine, "held_result", "INSERT", f"NEW.mrn = '{mrn}' AND NEW.code = '777-3'")


def test_a_bad_message_in_a_group_gets_its_own_ar_and_the_others_of_its_group_aa(engine: Engine) -> None:
    bad = oru("BAD1", mrn="REFUSED", extra="OBX|2|NM|777-3^Platelets^LN||250|10*9/L|||||F|||20261125080000")
    group = [oru("GOOD1"), bad, oru("GOOD2", mrn="GRP0002"), BROKEN, oru("GOOD3", mrn="GRP3")]
    store = Store(engine, hold_first=1 + len(group))
    with refusing_held_platelets_for(engine, "REFUSED"):
        [replies] = serve(store, lambda port: pipelined(port, [oru("LEAD"), *group], first_alone=store))
    assert store.groups == [1, 5]  # the bad message shared its group with four others
    assert [msa(r) for r in replies] == [("AA", "LEAD"), ("AA", "GOOD1"), ("AR", "BAD1"), ("AA", "GOOD2"),
                                         ("AE", "BROKEN1"), ("AA", "GOOD3")]
    assert "internal error" in replies[2] and "processed again when it is sent again" in replies[2]
    found = statuses(engine)
    assert found["BAD1"] == [("failed", "AR")] and found["BROKEN1"] == [("rejected", "AE")]
    assert all(found[c] == [("processed", "AA")] for c in ("LEAD", "GOOD1", "GOOD2", "GOOD3"))
    assert count(engine, HeldResult) == 4  # nothing of the bad message: its leukocytes were rolled back with it
    [[again]] = serve(Store(engine), lambda port: one_at_a_time(port, [bad]))
    assert msa(again) == ("AA", "BAD1")  # the fault gone, the same row is processed
    assert statuses(engine)["BAD1"] == [("processed", "AA")] and count(engine, HeldResult) == 6


def refusing_review_marks(engine: Engine, mrn: str) -> contextlib.AbstractContextManager[None]:
    """Refused: marking one patient's enrollments for review. A group with a result for that patient
    cannot be committed."""
    return refusing(engine, "enrollment", "UPDATE", f"OLD.patient_id = (SELECT id FROM patient WHERE mrn = '{mrn}')")


def enrolled(engine: Engine, *mrns: str) -> None:
    with Session(engine, expire_on_commit=False) as s:
        for mrn in mrns:
            enroll(s, packaged_library(), EnrollmentRequest(mrn, "aih-azathioprine", date(2026, 9, 1), 70,
                                                            tpmt="normal", nudt15="normal"),
                   today=TODAY, now=NOW, actor="test")
        s.commit()


def test_a_group_that_cannot_be_committed_is_stored_one_message_at_a_time(engine: Engine) -> None:
    """The critical result is committed (and its patient evaluated) before the rest of its group
    fails: it is not stored a second time; the rest are stored alone, and only the one that
    cannot be is answered AR."""
    enrolled(engine, "ENR000", "ENR001")
    texts = [oru("CRIT0", mrn="ENR000", value="0.9"), oru("HELD1", mrn="NOTENR1"), oru("ENR1", mrn="ENR001"),
             oru("HELD2", mrn="NOTENR2")]
    with refusing_review_marks(engine, "ENR001"), Session(engine, expire_on_commit=False) as s:
        replies = receive_messages(s, texts, ctx=context(library=True), channel="mllp")
    assert [msa(r) for r in replies] == [("AA", "CRIT0"), ("AA", "HELD1"), ("AR", "ENR1"), ("AA", "HELD2")]
    assert "send it again later" in replies[2]
    assert statuses(engine) == {c: [("processed", "AA")] for c in ("CRIT0", "HELD1", "HELD2")}
    assert count(engine, HeldResult) == 2 and count(engine, LabResult) == 1 and count(engine, FlagRow) >= 1


def test_pipelined_frames_are_read_while_a_group_is_stored_and_acked_in_order(engine: Engine) -> None:
    store = Store(engine, hold_first=5)  # the first group is stored only once the next frames were read
    sent = [oru(f"PIPE{n}") for n in range(5)]
    other = [oru(f"OTHER{n}", mrn="GRP0009") for n in range(3)]
    [replies, others] = serve(store, lambda port: pipelined(port, sent, first_alone=store),
                              lambda port: one_at_a_time(port, other))
    assert all(store.committed_first)
    assert [msa(r) for r in replies] == [("AA", f"PIPE{n}") for n in range(5)]
    assert [msa(r) for r in others] == [("AA", f"OTHER{n}") for n in range(3)]
    assert count(engine, HeldResult) == 8


def test_a_message_sent_twice_in_one_group_is_two_deliveries_and_its_result_stored_once(engine: Engine) -> None:
    texts = [oru("DUP1"), oru("DUP1"), oru("FIX1", value="6.1", status="C", order="DUP1")]
    with Session(engine, expire_on_commit=False) as s:
        replies = receive_messages(s, texts, ctx=context(), channel="mllp")
    assert [msa(r) for r in replies] == [("AA", "DUP1"), ("AA", "DUP1"), ("AA", "FIX1")]
    assert statuses(engine)["DUP1"] == [("processed", "AA")] * 2
    with Session(engine) as s:
        [held] = s.exec(select(HeldResult)).all()
        details = [m.detail for m in s.exec(select(InboundMessage).order_by(col(InboundMessage.id)))]
    assert (held.value, held.status) == (6.1, "corrected")
    assert [(d["held"], d["duplicate"], d["corrected"]) for d in details] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def mixed_feed() -> list[str]:
    """A day's feed with every outcome: results for enrolled and unknown patients, a critical
    leukopenia, a correction and a retraction of results sent earlier in the feed, a message sent
    twice, a local code, an unreadable message and an empty frame."""
    return [
        oru("M01", mrn="CMP001", value="6.2"), oru("M02", mrn="CMP002", value="0.9"),  # critical
        oru("M03", mrn="UNKNOWN1"), oru("M04", mrn="CMP001", value="5.0", code="LOCAL9"),
        oru("M01", mrn="CMP001", value="6.2"), oru("M05", mrn="CMP001", value="4.1", status="C", order="M01"),
        oru("M06", mrn="CMP003", value="7.0"), oru("M07", mrn="CMP003", value="7.0", status="D", order="M06"),
        BROKEN, "", oru("M08", mrn="CMP002", value="1.1", status="C", order="M02"),
        oru("M09", mrn="CMP003", value="3.9"),
    ]


def test_a_feed_stored_in_one_group_gives_exactly_the_rows_of_one_message_at_a_time(
        engine: Engine, db_url: str) -> None:
    """Every table, row for row, as when each message is its own transaction (the listener before
    group commit): only the enrollments' revision counter differs, bumped once per group instead
    of once per message (the daily cycle only compares it for a change)."""
    ctx = context(library=True)

    def stored(groups: list[list[str]]) -> tuple[list[list[tuple[str, str]]], dict[str, list[tuple[Any, ...]]],
                                                 list[int]]:
        empty_database(db_url)
        enrolled(engine, "CMP001", "CMP002", "CMP003")
        replies = []
        for texts in groups:
            with Session(engine, expire_on_commit=False) as s:
                replies.append([msa(r) for r in receive_messages(s, texts, ctx=ctx, channel="mllp")])
        with Session(engine) as s:
            revisions = [e.revision for e in s.exec(select(Enrollment).order_by(col(Enrollment.id)))]
        return replies, dump_tables(engine), revisions

    feed = mixed_feed()
    one_by_one, alone, alone_revisions = stored([[m] for m in feed])
    [together], grouped, grouped_revisions = stored([feed])
    assert [reply for replies in one_by_one for reply in replies] == together
    revision = [c.name for c in Enrollment.__table__.columns].index("revision")  # type: ignore[attr-defined]
    for dump in (alone, grouped):
        dump["enrollment"] = [row[:revision] + row[revision + 1:] for row in dump["enrollment"]]
    assert grouped == alone
    assert all(a > 0 for a in alone_revisions) and all(g > 0 for g in grouped_revisions)
    assert [o for o, _ in together].count("AA") == 10 and grouped["flag"]  # the critical result raised its flag


def test_a_group_waits_for_the_write_lock_another_process_holds(engine: Engine) -> None:
    """The daily cycle holds the database's write lock (SQLite) or the enrollment rows (PostgreSQL)
    while it commits a batch: the group waits for it, then is stored."""
    enrolled(engine, "LCK001")
    replies: list[str] = []
    with engine.connect() as cycle:
        if cycle.dialect.name == "sqlite":
            cycle.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            cycle.execute(text("SELECT id FROM enrollment FOR UPDATE"))

        def store() -> None:
            with Session(engine, expire_on_commit=False) as s:
                replies.extend(receive_messages(s, [oru("LCK1", mrn="LCK001"), oru("LCK2")], ctx=context(),
                                                channel="mllp"))

        waiting = threading.Thread(target=store)
        waiting.start()
        waiting.join(1)
        assert waiting.is_alive()  # it cannot have stored anything while the lock is held
        cycle.rollback()
    waiting.join(60)
    assert [msa(r) for r in replies] == [("AA", "LCK1"), ("AA", "LCK2")]
    assert count(engine, LabResult) == 1 and count(engine, HeldResult) == 1


def test_every_ack_a_killed_listener_sent_is_for_a_message_in_the_database(engine: Engine, db_url: str) -> None:
    """`monitor mllp` killed (SIGKILL) right after an ACK came: every message ACKed before it died
    is in the database, processed, with its result."""
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url}
    process, port, _ = start_listener(env)
    acked: list[str] = []
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"".join(frame(oru(f"KILL{n:03d}", mrn=f"K{n:03d}")) for n in range(300)))
            buffer = b""
            while chunk := sock.recv(65536):
                buffer += chunk
                while (end := buffer.find(END)) >= 0:
                    acked.append(msa(buffer[buffer.index(START) + 1:end].decode())[1])
                    buffer = buffer[end + len(END):]
                if acked and process.poll() is None:
                    process.send_signal(signal.SIGKILL)  # the moment the first ACKs came
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert acked
    found = statuses(engine)
    assert all(found.get(c) == [("processed", "AA")] for c in acked)
    with Session(engine) as s:
        held = set(s.exec(select(HeldResult.mrn)))
    assert {f"K{c[4:]}" for c in acked} <= held
