"""E-mail through the outbox to a real SMTP server (aiosmtpd on loopback): digests and critical
alerts arrive once, a server that is down or refusing loses nothing, STARTTLS and AUTH work, and
no subject line holds an MRN or a value. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import re
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trustme
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from monitor.db.tables import FlagRow, OutboxAttempt, OutboxMessage
from monitor.domain.digest import Digest, patient_label
from monitor.domain.protocol import Phase
from monitor.notify.mail import Mail
from monitor.notify.transport import SmtpServer, SmtpTransport
from monitor.protocols import packaged_library
from monitor.services import outbox, patients
from monitor.services.alerts import queue_escalations
from monitor.services.digest import letters
from monitor.services.flags import acknowledge
from tests.functional.cli import run
from tests.integration.smtp_sink import Server, Sink
from tests.processes import all_at_once

pytestmark = pytest.mark.db

LONDON = ZoneInfo("Europe/London")
NURSES = ("ann@ward.example", "bob@ward.example", "cat@ward.example")


def today() -> date:
    return datetime.now(LONDON).date()


def enroll(engine: Engine, mrn: str, coordinator: str | None, *, name: str | None = None) -> None:
    request = patients.EnrollmentRequest(mrn=mrn, protocol="aih-azathioprine", start_on=today() - timedelta(days=200),
                                         weight_kg=70, phase=Phase.MAINTENANCE, tpmt="normal",
                                         nudt15="normal", coordinator=coordinator, name=name)
    with Session(engine) as s:
        patients.enroll(s, packaged_library(), request, today=today(), now=datetime.now(LONDON), actor="test")
        s.commit()


def labs(path: Path, rows: list[tuple[str, int, str, float, str]]) -> Path:
    """A CSV lab file: (mrn, days ago, LOINC, value, unit)."""
    lines = ["mrn,collected_at,code,value,unit"]
    lines += [f"{mrn},{(today() - timedelta(days=ago)).isoformat()}T09:00:00,{code},{value},{unit}"
              for mrn, ago, code, value, unit in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sink() -> Iterator[tuple[Sink, Server]]:
    box = Sink()
    server = Server(box).start()
    yield box, server
    server.stop()


@pytest.fixture
def smtp(sink: tuple[Sink, Server], monkeypatch: pytest.MonkeyPatch) -> Sink:
    """The CLI sends to the sink."""
    monkeypatch.setenv("MONITOR_OUTBOX__TRANSPORT", "smtp")
    monkeypatch.setenv("MONITOR_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("MONITOR_SMTP__PORT", str(sink[1].port))
    monkeypatch.setenv("MONITOR_SMTP__TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("MONITOR_SMTP__SENDER", "monitor@hospital.example")
    return sink[0]


def a_clinic(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three coordinators; one patient with a critical WBC (alerted at ingestion), one with four
    high MCVs over two months, one never drawn."""
    enroll(engine, "MRN0001", NURSES[0], name="Jane Q Public")
    enroll(engine, "MRN0002", NURSES[1])
    enroll(engine, "MRN0003", NURSES[2])
    rows = [("MRN0001", 1, "6690-2", 1.1, "10*9/L")]
    rows += [("MRN0002", ago, "787-2", 107, "fL") for ago in (60, 40, 20, 3)]
    assert run(capsys, "ingest", str(labs(tmp_path / "labs.csv", rows))).code == 0


def test_a_days_digests_and_alerts_arrive_once_each_as_text_and_html_to_the_right_coordinators(
        smtp: Sink, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_clinic(engine, tmp_path, capsys)
    first = run(capsys, "run")
    assert first.code == 0, first.err
    assert "outbox: 3 sent" in first.out  # three digests (the critical alert left at ingestion)
    assert [len(smtp.to(n)) for n in NURSES] == [2, 1, 1]
    for msg in smtp.received:
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["Message-ID"] and msg["From"] == "monitor@hospital.example"
        subject = str(msg["Subject"])
        assert subject == subject.strip() and len(subject) < 90
        assert "MRN" not in subject and "1.1" not in subject and "107" not in subject
    digest = next(m for m in smtp.to(NURSES[1]) if "digest" in str(m["Subject"]))
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Four high MCVs over two months are one line: the latest value and the count.
    assert text.count("macrocytosis") == 1 and "107 fL" in text and "(4 results since" in text
    assert "MRN0002" not in text and "…0002" in text  # minimal PHI: the MRN's last four characters
    alert = next(m for m in smtp.to(NURSES[0]) if "CRITICAL" in str(m["Subject"]))
    assert "J.Q.P. …0001" in alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    again = run(capsys, "run")
    assert again.code == 0 and "outbox: 0 sent" in again.out
    assert "0 digests queued (3 already in the outbox" in run(capsys, "digest").out
    assert len(smtp.received) == 4


def test_with_the_server_down_the_run_succeeds_and_the_messages_arrive_once_when_it_returns(
        smtp: Sink, sink: tuple[Sink, Server], engine: Engine, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    sink[1].stop()
    a_clinic(engine, tmp_path, capsys)  # the alert is queued at ingestion, and cannot leave
    down = run(capsys, "run")
    assert down.code == 0, down.err
    assert "e-mail not delivered now: cannot connect to the SMTP server" in down.err
    assert "4 waiting" in down.out
    status = run(capsys, "status", "--format", "json").json()
    assert status["outbox"]["pending"] == 4 and status["outbox"]["dead"] == 0
    sink[1].start()
    back = run(capsys, "outbox", "send")
    assert back.code == 0, back.err
    assert "outbox: 4 sent" in back.out and len(smtp.received) == 4
    assert run(capsys, "outbox", "send").out.startswith("outbox: 0 sent")
    assert len(smtp.received) == 4


def test_a_4xx_is_retried_with_backoff_and_a_5xx_is_dead_lettered_with_the_reason(
        smtp: Sink, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_clinic(engine, tmp_path, capsys)
    smtp.refuse = {NURSES[1]: "451 4.3.0 mailbox busy", NURSES[2]: "550 5.1.1 no such user"}
    assert run(capsys, "run").code == 0
    listed = {m["recipient"]: m for m in run(capsys, "outbox", "list", "--format", "json").json()["messages"]}
    busy, gone = listed[NURSES[1]], listed[NURSES[2]]
    assert busy["status"] == "pending" and "451" in busy["last_error"] and busy["next_attempt_at"]
    assert gone["status"] == "dead" and "550 5.1.1 no such user" in gone["last_error"]
    status = run(capsys, "status")
    assert status.code == 1 and "1 e-mails could not be delivered" in status.out

    smtp.refuse = {}
    assert run(capsys, "outbox", "send").code == 0  # the 4xx one, whatever its retry time
    assert len(smtp.to(NURSES[1])) == 1 and not smtp.to(NURSES[2])
    retried = run(capsys, "outbox", "retry", str(gone["id"]))
    assert retried.code == 0, retried.err
    assert len(smtp.to(NURSES[2])) == 1
    assert run(capsys, "outbox", "retry", str(gone["id"])).code == 2  # sent: never twice
    with Session(engine) as s:
        outcomes = Counter(a.outcome for a in s.exec(select(OutboxAttempt)).all())
    assert outcomes == {"sent": 4, "retry": 1, "dead": 1}


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_auth_are_used_and_a_wrong_password_waits_with_a_clear_reason(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        security: str) -> None:
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    box = Sink()
    server = Server(box, tls=server_context, implicit_tls=security == "ssl", password="s3cret").start()
    try:
        for key, value in {"TRANSPORT": "smtp"}.items():
            monkeypatch.setenv(f"MONITOR_OUTBOX__{key}", value)
        for key, value in {"HOST": "127.0.0.1", "PORT": str(server.port), "SECURITY": security,
                           "USERNAME": "monitor", "PASSWORD": "wrong", "CA_FILE": str(tmp_path / "ca.pem"),
                           "TIMEOUT_SECONDS": "5"}.items():
            monkeypatch.setenv(f"MONITOR_SMTP__{key}", value)
        enroll(engine, "MRN0001", NURSES[0])
        refused = run(capsys, "run")
        assert refused.code == 0
        assert "refused the login" in refused.err and "check smtp.username and smtp.password" in refused.err
        assert "wrong" not in refused.err + refused.out
        monkeypatch.setenv("MONITOR_SMTP__PASSWORD", "s3cret")
        sent = run(capsys, "outbox", "send")
        assert sent.code == 0, sent.err
        assert len(box.received) == 1 and box.logins == ["monitor"]
    finally:
        server.stop()


def test_a_coordinator_with_500_patients_gets_one_well_formed_digest(
        smtp: Sink, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(500):
        enroll(engine, f"M{i:05d}", NURSES[0])
    assert run(capsys, "run").code == 0
    [digest] = smtp.to(NURSES[0])
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = digest.get_body(("html",)).get_content()  # type: ignore[union-attr]
    tails = re.findall(r"…(\d{4})", text)
    assert len(set(tails)) == 500 and sorted(tails) == sorted(re.findall(r"…(\d{4})", html))  # each, as often
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


def test_an_unacknowledged_critical_alert_escalates_once_and_an_acknowledged_one_does_not(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enroll(engine, "MRN0001", NURSES[0])
    enroll(engine, "MRN0002", NURSES[1])
    lead = "lead@ward.example"
    assert run(capsys, "coordinators", "set", NURSES[0], "--name", "Ann", "--escalate-to", lead).code == 0
    assert run(capsys, "coordinators", "set", NURSES[1], "--escalate-to", "lead@ward.example").code == 0
    rows = [("MRN0001", 1, "6690-2", 1.1, "10*9/L"), ("MRN0002", 1, "6690-2", 1.2, "10*9/L")]
    assert run(capsys, "ingest", str(labs(tmp_path / "labs.csv", rows))).code == 0
    mail = Mail(escalate_after=timedelta(hours=4))
    with Session(engine) as s:
        alerts = s.exec(select(OutboxMessage).where(col(OutboxMessage.kind) == "alert")).all()
        assert sorted(a.recipient for a in alerts) == list(NURSES[:2])
        alerted = alerts[0].created_at
        second = next(a for a in alerts if a.recipient == NURSES[1])
        assert second.flag_id is not None
        acknowledge(s, second.flag_id, reason="repeat FBC booked", by="nurse", today=today(), now=alerted)
        s.commit()
        assert queue_escalations(s, mail=mail, now=alerted + timedelta(hours=3)) == 0
        assert queue_escalations(s, mail=mail, now=alerted + timedelta(hours=5)) == 1
        assert queue_escalations(s, mail=mail, now=alerted + timedelta(hours=9)) == 0  # once
        [escalation] = s.exec(select(OutboxMessage).where(col(OutboxMessage.kind) == "escalation")).all()
        assert escalation.recipient == "lead@ward.example" and "MRN" not in escalation.subject
        flag = s.get(FlagRow, escalation.flag_id)
        assert flag is not None and flag.enrollment_id != s.get(FlagRow, second.flag_id).enrollment_id  # type: ignore[union-attr]


def test_an_alert_whose_flag_was_acknowledged_before_it_could_be_sent_is_cancelled_with_why(
        smtp: Sink, sink: tuple[Sink, Server], engine: Engine, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    sink[1].stop()
    enroll(engine, "MRN0001", NURSES[0])
    assert run(capsys, "ingest", str(labs(tmp_path / "labs.csv", [("MRN0001", 1, "6690-2", 1.1, "10*9/L")]))).code == 0
    [flag] = run(capsys, "flags", "--format", "json").json()
    assert run(capsys, "ack", str(flag["id"]), "--reason", "phoned the patient; AZA held").code == 0
    sink[1].start()
    run(capsys, "outbox", "send")
    [alert] = [m for m in run(capsys, "outbox", "list", "--format", "json").json()["messages"] if m["kind"] == "alert"]
    assert alert["status"] == "cancelled" and "acknowledged before the alert could be sent" in alert["last_error"]
    assert not smtp.received


def test_a_sender_killed_during_delivery_loses_nothing_and_repeats_at_most_the_message_in_flight(
        smtp: Sink, sink: tuple[Sink, Server], engine: Engine, db_url: str, tmp_path: Path) -> None:
    now = datetime.now(LONDON)
    with Session(engine) as s:
        queued = [outbox.Letter(f"test|{i}", "digest", f"n{i}@ward.example", f"message {i}", f"body {i}\n")
                  for i in range(200)]
        assert outbox.enqueue(s, queued, sender="monitor@hospital.example", now=now) == 200
        s.commit()
    smtp.delay = 0.01
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_OUTBOX__CLAIM_SECONDS": "1"}

    def sender() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "monitor", "outbox", "send"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    first = sender()
    deadline = time.monotonic() + 60
    while len(smtp.received) < 60 and time.monotonic() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert first.stderr is not None
    first.stderr.close()
    assert 60 <= len(smtp.received) < 200
    time.sleep(1.2)  # the dead sender's claims lapse
    second = sender()
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors.decode()
    ids = Counter(str(m["Message-ID"]) for m in smtp.received)
    assert len(ids) == 200  # every message delivered
    assert sum(n - 1 for n in ids.values()) <= 1  # none twice but the one in flight, under its Message-ID
    with Session(engine) as s:
        assert outbox.counts(s)["sent"] == 200


def test_one_line_per_problem_and_an_acknowledgement_covers_later_results_no_worse_but_not_a_worse_one(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nurse = NURSES[1]
    enroll(engine, "MRN0002", nurse)

    def ingest(name: str, rows: list[tuple[str, int, str, float, str]]) -> None:
        assert run(capsys, "ingest", str(labs(tmp_path / name, rows))).code == 0

    def digest() -> str:
        r = run(capsys, "digest", "--preview", "--coordinator", nurse)
        assert r.code == 0, r.err
        return r.out

    ingest("mcv.csv", [("MRN0002", ago, "787-2", 107, "fL") for ago in (60, 40, 20, 10)])
    assert run(capsys, "run").code == 0
    text = digest()
    assert text.count("macrocytosis") == 1 and "(4 results since" in text
    latest = max(f["id"] for f in run(capsys, "flags", "--format", "json").json() if f["kind"] == "macrocytosis")
    assert run(capsys, "ack", str(latest), "--reason", "B12 and folate normal; discussed, continue").code == 0
    assert not [f for f in run(capsys, "flags", "--format", "json").json() if f["kind"] == "macrocytosis"]

    ingest("mcv5.csv", [("MRN0002", 1, "787-2", 108, "fL")])  # a fifth, the same grade
    assert run(capsys, "run").code == 0
    text = digest()
    assert "macrocytosis" not in text and "1 later result of problems acknowledged lately" in text

    ingest("wbc.csv", [("MRN0002", 2, "6690-2", 3.3, "10*9/L")])  # leukopenia, action
    assert run(capsys, "run").code == 0
    [action] = [f for f in run(capsys, "flags", "--format", "json").json() if f["kind"] == "leukopenia"]
    assert run(capsys, "ack", str(action["id"]), "--reason", "repeat booked").code == 0
    ingest("wbc2.csv", [("MRN0002", 1, "6690-2", 1.1, "10*9/L")])  # worse: critical
    assert run(capsys, "run").code == 0
    text = digest()
    assert "[CRITICAL]" in text and "leukopenia WBC 1.1" in text
    with Session(engine) as s:
        assert len(s.exec(select(OutboxMessage).where(col(OutboxMessage.kind) == "alert")).all()) == 1


def test_three_senders_at_once_deliver_each_message_exactly_once(
        smtp: Sink, engine: Engine, db_url: str, tmp_path: Path) -> None:
    with Session(engine) as s:
        queued = [outbox.Letter(f"test|{i}", "digest", f"n{i}@ward.example", f"message {i}", f"body {i}\n")
                  for i in range(150)]
        outbox.enqueue(s, queued, sender="monitor@hospital.example", now=datetime.now(LONDON))
        s.commit()
    smtp.delay = 0.002
    done = all_at_once(db_url, tmp_path, [["outbox", "send"]] * 3)
    assert [p.returncode for p in done] == [0, 0, 0], [p.stderr for p in done]
    sent = [int(line.split()[1]) for p in done for line in p.stdout.splitlines() if line.startswith("outbox:")]
    assert sum(sent) == 150
    assert sorted(Counter(str(m["Message-ID"]) for m in smtp.received).values()) == [1] * 150


def test_an_empty_day_sends_a_nothing_due_note_unless_told_not_to() -> None:
    empty = Digest("ann@ward.example", "Ann", date(2026, 3, 2))
    [note] = letters([empty], Mail())
    assert note.subject == "monitor digest 2026-03-02: nothing due" and "Nothing is due" in note.text
    assert letters([empty], Mail(send_empty=False)) == []


@pytest.mark.parametrize(("mrn", "name", "minimal", "shown"), [
    ("MRN0001", "Jane Q Public", True, "J.Q.P. …0001"),
    ("MRN0001", "PUBLIC^JANE^Q", True, "J.Q.P. …0001"),  # HL7 order: family^given^middle
    ("MRN0001", None, True, "…0001"),
    ("MRN0001", "Jane Q Public", False, "MRN0001 Jane Q Public"),
])
def test_minimal_phi_shows_initials_and_the_mrns_last_four_characters(
        mrn: str, name: str | None, minimal: bool, shown: str) -> None:
    assert patient_label(mrn, name, minimal=minimal) == shown


def test_a_digest_says_what_changed_since_the_coordinators_last_one(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enroll(engine, "MRN0002", NURSES[1])
    yesterday = today() - timedelta(days=1)
    assert run(capsys, "run", "--date", yesterday.isoformat()).code == 0
    first = run(capsys, "digest", "--preview", "--date", yesterday.isoformat()).out
    assert "Since your last digest" not in first  # the first says nothing
    assert run(capsys, "ingest", str(labs(tmp_path / "mcv.csv", [("MRN0002", 0, "787-2", 107, "fL")]))).code == 0
    assert run(capsys, "run").code == 0
    text = run(capsys, "digest", "--preview").out
    assert f"Since your last digest ({yesterday}): 1 new flags, 0 resolved" in text


def queue(engine: Engine, n: int, *, to: str = "n{}@ward.example") -> None:
    with Session(engine) as s:
        queued = [outbox.Letter(f"test|{i}", "digest", to.format(i), f"message {i}", f"body {i}\n") for i in range(n)]
        outbox.enqueue(s, queued, sender="monitor@hospital.example", now=datetime.now(LONDON))
        s.commit()


def test_a_sender_whose_claim_lapsed_and_was_taken_over_does_not_send_the_message_again(
        sink: tuple[Sink, Server], engine: Engine) -> None:
    queue(engine, 5)
    t0, policy = datetime.now(LONDON), outbox.Policy(claim_seconds=1)
    with Session(engine) as s:
        slow = outbox.claim(s, now=t0, by="slow", policy=policy)  # then stalls past its claim
        done = outbox.deliver(s, SmtpTransport(SmtpServer("127.0.0.1", sink[1].port)), sender="m@hospital.example",
                              clock=lambda: t0 + timedelta(seconds=5), by="fast", policy=policy)
        assert done.sent == 5
        late = outbox.deliver(s, SmtpTransport(SmtpServer("127.0.0.1", sink[1].port)), sender="m@hospital.example",
                              clock=lambda: t0 + timedelta(seconds=6), by="slow", policy=policy, ids=slow)
    assert late.sent == 0 and len(sink[0].received) == 5


def test_every_waiting_message_is_tried_once_a_pass_however_many_fail(smtp: Sink, engine: Engine,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    queue(engine, 70)
    smtp.refuse = {f"n{i}@ward.example": "451 4.3.0 try later" for i in range(70)}
    assert run(capsys, "outbox", "send").code == 1
    with Session(engine) as s:
        assert {m.attempts for m in s.exec(select(OutboxMessage)).all()} == {1}


def test_a_421_closing_the_connection_stops_the_pass_and_the_messages_go_on_the_next(
        smtp: Sink, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    queue(engine, 3)
    smtp.refuse = {"n1@ward.example": "421 4.3.2 service shutting down"}
    first = run(capsys, "outbox", "send")
    assert first.code == 1 and "closing the connection" in first.err
    smtp.refuse = {}
    assert run(capsys, "outbox", "send").code == 0
    assert sorted(str(m["To"]) for m in smtp.received) == [f"n{i}@ward.example" for i in range(3)]


def test_retry_waits_are_exponential_capped_and_jittered() -> None:
    policy, rng = outbox.Policy(retry_seconds=60), random.Random(1)
    waits = [policy.wait(n, rng) for n in (1, 2, 3, 50, 100)]
    assert timedelta(seconds=30) <= waits[0] <= timedelta(seconds=60)
    assert timedelta(seconds=60) <= waits[1] <= timedelta(seconds=120)
    assert all(timedelta(hours=3) <= w <= timedelta(hours=6) for w in waits[3:])  # no overflow, capped


def test_a_digest_is_not_queued_by_hand_before_its_days_cycle_completed(
        engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    enroll(engine, "MRN0001", NURSES[0])
    early = run(capsys, "digest")
    assert early.code == 2 and "has not completed" in early.err
    assert run(capsys, "digest", "--preview").code == 0


def test_acknowledging_a_critical_flag_never_covers_a_later_critical_one(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enroll(engine, "MRN0001", NURSES[0])
    rows = [("MRN0001", 3, "6690-2", 1.1, "10*9/L"), ("MRN0001", 1, "6690-2", 1.0, "10*9/L")]
    assert run(capsys, "ingest", str(labs(tmp_path / "wbc.csv", rows))).code == 0
    critical = sorted(f["id"] for f in run(capsys, "flags", "--format", "json").json() if f["severity"] == "critical")
    assert len(critical) == 2
    assert run(capsys, "ack", str(critical[0]), "--reason", "held; repeat booked").code == 0
    assert [f["id"] for f in run(capsys, "flags", "--format", "json").json()
            if f["severity"] == "critical"] == [critical[1]]
