"""The MLLP listener as a sender sees it: every frame answered, every ACK valid HL7 (read back with
python-hl7, an independent parser), nothing lost or multiplied when processing fails, and messages a
crash left unfinished processed when the listener starts. Real loopback sockets, real databases."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from monitor.db.tables import HeldResult, InboundMessage, Quarantine
from monitor.ingest import mllp
from monitor.ingest.mllp import END, START, Listener, ack, decode, frame
from monitor.ingest.records import ReadOptions
from monitor.services.inbound import receive_messages
from tests.integration import LONDON, ingest_context

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SPECIALS = "| ^ ~ \\ &"


def oru(n: int, *, mrn: str = "MLLP0001", code: str = "6690-2", extra: str = "") -> str:
    """A synthetic ORU^R01 (v2.5.1) with one result, and `extra` segments after it."""
    return "\r".join([
        f"MSH|^~\\&|LABAPP|LABFAC|MONAPP|MONFAC|20261125083000||ORU^R01^ORU_R01|CTRL{n:05d}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
        "OBR|1|||58410-2^CBC panel^LN|||20261125080000",
        f"OBX|1|NM|{code}^Leukocytes^LN||5.4|10*9/L|4.0-11.0|N|||F|||20261125080000",
        *([extra] if extra else []),
    ]) + "\r"


def handler(engine: Engine):  # type: ignore[no-untyped-def]
    ctx = ingest_context(NOW, options=ReadOptions(lab_zone=LONDON))

    def store(texts: list[str]) -> list[str]:
        with Session(engine, expire_on_commit=False) as s:
            return receive_messages(s, texts, ctx=ctx, channel="mllp")

    return store


async def _read_acks(reader: asyncio.StreamReader, n: int) -> list[str]:
    acks = []
    for _ in range(n):
        await reader.readuntil(START)
        acks.append((await reader.readuntil(END))[:-2].decode())
    return acks


async def _send(port: int, payloads: list[bytes]) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(payloads))
        await writer.drain()
        return await asyncio.wait_for(_read_acks(reader, len(payloads)), timeout=60)
    finally:
        writer.close()
        await writer.wait_closed()


def exchange(engine: Engine, *connections: list[bytes]) -> list[list[str]]:
    """Each list of frames over its own connection, all connections at once; the ACKs of each."""
    async def run() -> list[list[str]]:
        listener = Listener(handler(engine), now=lambda: NOW)
        port = await listener.start("127.0.0.1", 0)
        try:
            return list(await asyncio.gather(*(_send(port, frames) for frames in connections)))
        finally:
            await listener.close()
    return asyncio.run(run())


def checked(reply: str, message: str) -> hl7.Message:
    """`reply` parsed by python-hl7, checked as the ACK of `message` (HL7 v2.5.1 §2.9, §2.14.9)."""
    parsed = hl7.parse(reply)
    msh, msa = parsed.segment("MSH"), parsed.segment("MSA")
    sent = message.split("\r", 1)[0].split("|") if message.startswith("MSH|") else []

    def of(n: int) -> str:  # field n of the message's MSH (its MSH-1 is the separator, so n - 1)
        return sent[n - 1] if len(sent) >= n else ""

    assert [str(msh[n]) for n in (3, 4, 5, 6)] == [of(5), of(6), of(3), of(4)]
    assert re.fullmatch(r"\d{14}[+-]\d{4}", str(msh[7]))
    # the trigger event of MSH-9, when the message's encoding characters say how to split it
    trigger = of(9).split("^")[1] if of(9).count("^") and of(2) == "^~\\&" else ""
    assert str(msh[9]) == (f"ACK^{trigger}^ACK" if trigger else "ACK")
    assert 0 < len(str(msh[10])) <= 20
    assert (str(msh[11]), str(msh[12])) == (of(11) or "P", of(12) or "2.5.1")
    assert str(msa[1]) in ("AA", "AE", "AR") and str(msa[2]) == of(10)
    if str(msa[1]) != "AA":
        err = parsed.segment("ERR")
        assert str(err[3]).endswith("^HL70357") and str(err[4]) == "E" and str(err[8])
        assert parsed.unescape(str(msa[3])) == parsed.unescape(str(err[8]))[:80]
    return parsed


def code_of(parsed: hl7.Message) -> str:
    return str(parsed.segment("MSA")[1])


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


BROKEN = ("MSH|^~&|LAB|HOSP|MONITOR|CLINIC|20261125083000||ORU^R01|CTRLBAD|P|2.5.1\r"
          "PID|1||X1^^^HOSP^MR\rOBX|1|NM|6690-2^WBC^LN||5|10*9/L|||||F\r")
ADT = "MSH|^~\\&|ADT|HOSP|MON|CLIN|20261125083000||ADT^A01|ADT1|P|2.5.1\rPID|1||P1^^^HOSP^MR\r"


def test_every_ack_parses_with_python_hl7_and_answers_its_message(engine: Engine) -> None:
    messages = [oru(1), oru(2, code="LOCAL9"), BROKEN, ADT, "MSH|^~\\&|LAB|HOSP|MON|CLIN|20261125083000||ORU^R01|"
                "HDR1|P|2.5.1\r", ""]
    [replies] = exchange(engine, [frame(m) for m in messages])
    codes = [code_of(checked(reply, message)) for reply, message in zip(replies, messages, strict=True)]
    assert codes == ["AA", "AA", "AE", "AA", "AR", "AR"]
    assert len({str(hl7.parse(r).segment("MSH")[10]) for r in replies}) == len(replies)
    assert count(engine, HeldResult) == 1 and count(engine, Quarantine) == 2  # the local code; the broken message


def test_concurrent_connections_get_acks_each_with_its_own_control_id(engine: Engine) -> None:
    connections = [[frame(oru(100 * c + n, mrn=f"CONC{c}")) for n in range(25)] for c in range(8)]
    replies = exchange(engine, *connections)
    ids = []
    for c, acks in enumerate(replies):
        for n, reply in enumerate(acks):
            parsed = checked(reply, oru(100 * c + n))
            assert code_of(parsed) == "AA"
            ids.append(str(parsed.segment("MSH")[10]))
    assert len(ids) == len(set(ids)) == 200
    assert count(engine, HeldResult) == count(engine, InboundMessage) == 200


@pytest.mark.parametrize("payload", ["", "\r\n", "MSH|^~\\&|LAB|HOSP|MON|CLIN|20261125083000||ORU^R01|C9|P|2.5.1"])
def test_an_empty_or_header_only_frame_is_answered_ar_not_aa(engine: Engine, payload: str) -> None:
    [[reply]] = exchange(engine, [frame(payload)])
    parsed = checked(reply, payload)
    assert code_of(parsed) == "AR" and str(parsed.segment("ERR")[3]).startswith("100^")
    assert count(engine, HeldResult) == 0


@settings(max_examples=200, deadline=None)
@given(reason=st.text(alphabet=st.sampled_from([*SPECIALS, "a", "Z", "0", " ", "\r", "\n", "é", "\x0b", "\x1c"]),
                      max_size=120).filter(str.strip),
       sender=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                                             blacklist_characters="\x85|^~\\&"),
                      max_size=12))
def test_any_reason_is_escaped_so_the_ack_reads_back_to_it(reason: str, sender: str) -> None:
    message = f"MSH|^~\\&|{sender}|F|MON|C|20261125083000||ORU^R01|X1|P|2.5.1\rPID|1\r"
    reply = ack(message, "AE", reason, now=NOW)
    assert "\x0b" not in reply and "\x1c" not in reply  # never an MLLP framing byte inside a frame
    parsed = checked(reply, message)
    shown = " ".join(reason.split())  # one line: line breaks and framing bytes are spaces
    assert parsed.unescape(str(parsed.segment("MSA")[3])) == shown[:80]
    assert parsed.unescape(str(parsed.segment("ERR")[8])) == shown
    assert len(parsed) == 3


def test_a_frame_too_large_is_answered_ar_and_the_next_frame_is_read(engine: Engine,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mllp, "MAX_FRAME", 100_000)
    huge = oru(1, extra="NTE|1||" + "x" * 300_000)
    [replies] = exchange(engine, [frame(huge), frame(oru(2))])
    assert [code_of(checked(r, m)) for r, m in zip(replies, [huge, oru(2)], strict=True)] == ["AR", "AA"]
    assert count(engine, HeldResult) == 1


@contextmanager
def refusing_held_results(engine: Engine) -> Iterator[None]:
    """A database that refuses every held result (a real trigger, as a full disk or a lock would)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON held_result "
                              "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; "
                              "END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON held_result "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    yield
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS refuse" + (" ON held_result" if conn.dialect.name != "sqlite"
                                                             else "")))
        if conn.dialect.name != "sqlite":
            conn.execute(text("DROP FUNCTION IF EXISTS refuse()"))


def statuses(engine: Engine) -> list[tuple[str, str | None]]:
    with Session(engine) as s:
        return [(m.status, m.ack_code) for m in s.exec(select(InboundMessage).order_by(col(InboundMessage.id)))]


def test_a_message_that_fails_is_answered_ar_and_sent_again_stays_one_row(engine: Engine) -> None:
    with refusing_held_results(engine):
        [replies] = exchange(engine, [frame(oru(5))] * 3)  # the sender retries after each AR
    assert [code_of(checked(r, oru(5))) for r in replies] == ["AR"] * 3
    assert "internal error" in hl7.parse(replies[0]).unescape(str(hl7.parse(replies[0]).segment("MSA")[3]))
    assert statuses(engine) == [("failed", "AR")]
    [[reply]] = exchange(engine, [frame(oru(5))])  # the fault is gone: the same row is processed
    assert code_of(checked(reply, oru(5))) == "AA"
    assert statuses(engine) == [("processed", "AA")] and count(engine, HeldResult) == 1


def test_one_bad_result_is_quarantined_and_the_rest_of_its_message_stored(engine: Engine) -> None:
    message = oru(6, extra="OBX|2|NM|777-3^Platelets^LN||abc|10*9/L|||||F|||20261125080000")
    [[reply]] = exchange(engine, [frame(message)])
    assert code_of(checked(reply, message)) == "AA"
    assert count(engine, HeldResult) == 1 and count(engine, Quarantine) == 1


def start_listener(env: dict[str, str]) -> tuple[subprocess.Popen[str], int, list[str]]:
    """`monitor mllp --port 0` in a real process: its port, and what it printed before listening."""
    process = subprocess.Popen([sys.executable, "-m", "monitor", "mllp", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    while (line := process.stdout.readline()) and "listening" not in line:
        lines.append(line)
    found = re.search(r"MLLP listening on 127\.0\.0\.1:(\d+)", line)
    assert found, (lines, line, process.stderr.read() if process.stderr else "")
    return process, int(found[1]), lines


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return out


def test_messages_a_crash_left_received_are_processed_once_when_the_listener_starts(
        engine: Engine, db_url: str) -> None:
    """Rows left `received` (stored, never processed: the process died in between) are processed
    when `monitor mllp` starts; started again, it finds nothing left to do."""
    with Session(engine) as s:
        for n in range(3):
            s.add(InboundMessage(channel="mllp", received_at=NOW, control_id=f"CTRL{n:05d}", raw=oru(n),
                                 status="received"))
        s.commit()
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url}
    process, port, before = start_listener(env)
    try:
        assert any("processed 3 messages" in line for line in before), before
        [[reply]] = asyncio.run(_sends(port, [frame(oru(9))]))
        assert code_of(checked(reply, oru(9))) == "AA"
    finally:
        stop(process)
    assert [s for s, _ in statuses(engine)] == ["processed"] * 4
    assert count(engine, HeldResult) == 4
    process, _, before = start_listener(env)
    stop(process)
    assert not any("processed" in line for line in before)
    assert count(engine, HeldResult) == 4 and count(engine, InboundMessage) == 4


async def _sends(port: int, payloads: list[bytes]) -> list[list[str]]:
    return [await _send(port, payloads)]


@pytest.mark.parametrize(("msh18", "encoded"), [
    pytest.param("8859/1", "MÜLLER".encode("latin-1"), id="Latin-1 named in MSH-18"),
    pytest.param("UNICODE UTF-8", "MÜLLER".encode(), id="UTF-8 named in MSH-18"),
    pytest.param("", "MÜLLER".encode(), id="no MSH-18: the ingest.hl7_encoding setting (UTF-8)"),
])
def test_a_message_over_mllp_is_read_in_the_character_set_its_msh18_names(msh18: str, encoded: bytes) -> None:
    # As the HL7 file reader does (MSH-18, else ingest.hl7_encoding): the same bytes read the same way by either.
    header = f"MSH|^~\\&|LAB|HOSP|MON|CLINIC|20260227090000||ORU^R01|C1|P|2.5.1||||||{msh18}".encode()  # MSH-18
    payload = header + b"\rPID|1||A1^^^HOSP^MR||" + encoded + b"\r"
    assert "MÜLLER" in decode(payload)


def test_a_byte_that_is_not_text_in_its_character_set_is_kept_for_the_reader_to_quarantine() -> None:
    payload = b"MSH|^~\\&|LAB|HOSP|MON|CLINIC|20260227090000||ORU^R01|C1|P|2.5.1\rPID|1||A1^^^HOSP^MR||M\xffLLER\r"
    assert "M\udcffLLER" in decode(payload)  # surrogateescape: the reader's mark for a byte that is not text
