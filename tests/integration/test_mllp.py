"""The MLLP listener on a real loopback socket, storing into a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from monitor.db.tables import HeldResult, InboundMessage, LabResult, Quarantine
from monitor.ingest.mllp import END, START, Listener, ack, control_id, frame
from monitor.ingest.records import ReadOptions
from monitor.services.inbound import receive_messages
from tests.integration import ingest_context

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


def oru(n: int, mrn: str = "MLLP0001", wbc: str = "5.4") -> str:
    """A small synthetic ORU^R01 (v2.5.1) with one WBC result."""
    return "\r".join([
        f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|20261125083000||ORU^R01^ORU_R01|CTRL{n:05d}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
        "OBR|1|||58410-2^CBC panel^LN|||20261125080000",
        f"OBX|1|NM|6690-2^Leukocytes^LN||{wbc}|10*9/L|4.0-11.0|N|||F|||20261125080000",
    ]) + "\r"


def handler(engine: Engine):  # type: ignore[no-untyped-def]
    ctx = ingest_context(NOW, options=ReadOptions(lab_zone=LONDON))

    def store(texts: list[str]) -> list[str]:
        with Session(engine, expire_on_commit=False) as s:
            return receive_messages(s, texts, ctx=ctx, channel="mllp")

    return store


async def exchange(engine: Engine, payload: bytes, expect_acks: int) -> list[str]:
    listener = Listener(handler(engine), now=lambda: NOW)
    port = await listener.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        acks = []
        for _ in range(expect_acks):
            await reader.readuntil(START)
            acks.append((await reader.readuntil(END))[:-2].decode())
        writer.close()
        await writer.wait_closed()
        return acks
    finally:
        await listener.close()


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_it_acks_and_stores_a_thousand_messages_over_one_connection(engine: Engine) -> None:
    payload = b"".join(frame(oru(n)) for n in range(1000))
    acks = asyncio.run(exchange(engine, payload, 1000))
    assert [a.split("\r")[1].split("|")[1] for a in acks] == ["AA"] * 1000
    assert [a.split("\r")[1].split("|")[2] for a in acks] == [f"CTRL{n:05d}" for n in range(1000)]
    assert count(engine, InboundMessage) == 1000
    assert count(engine, HeldResult) == 1000  # MRN not enrolled: held, not lost
    assert count(engine, LabResult) == 0


def test_a_redelivered_message_is_a_duplicate_not_a_second_result(engine: Engine) -> None:
    asyncio.run(exchange(engine, frame(oru(1)) + frame(oru(1)), 2))
    assert count(engine, InboundMessage) == 2
    assert count(engine, HeldResult) == 1


def test_a_connection_cut_mid_message_leaves_nothing_partial(engine: Engine) -> None:
    whole = frame(oru(7))
    asyncio.run(exchange(engine, whole[: len(whole) // 2], 0))
    assert count(engine, InboundMessage) == 0
    assert count(engine, HeldResult) == 0


def test_a_malformed_message_gets_ae_and_is_kept(engine: Engine) -> None:
    # Broken encoding characters (as in the US Realm batch sample): the message cannot be split safely.
    broken = ("MSH|^~&|LAB|HOSP|MONITOR|CLINIC|20261125083000||ORU^R01|CTRLBAD|P|2.5.1\r"
              "PID|1||X1^^^HOSP^MR\rOBX|1|NM|6690-2^WBC^LN||5|10*9/L|||||F\r")
    [reply] = asyncio.run(exchange(engine, frame(broken), 1))
    msa = reply.split("\r")[1].split("|")
    assert msa[1] in ("AE", "AR") and msa[2] == "CTRLBAD" and msa[3]
    with Session(engine) as s:
        [kept] = s.exec(select(InboundMessage)).all()
        assert kept.raw == broken and kept.ack_code == msa[1]
    assert count(engine, Quarantine) >= 1


@pytest.mark.parametrize("text", ["", "not hl7 at all", "MSH|", "MSH|^~\\&"])
def test_an_ack_is_built_even_for_a_message_without_a_usable_header(text: str) -> None:
    reply = ack(text, "AE", "cannot read", now=NOW)
    assert reply.startswith("MSH|") and "\rMSA|AE|" in reply
    assert control_id(text) is None
