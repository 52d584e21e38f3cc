"""Coordinator digests: build from the stored plan, render, and send over SMTP, at 1,000 digests.

    python -m bench.digest [--coordinators 1000] [--patients-each 5] [--runs 3]

A fresh SQLite clinic (a temporary folder) of `--coordinators` × `--patients-each` enrollments
(`enroll --csv`'s path), half of them with a high MCV four times over two months and some with a
leukopenia, and the day's cycle run once (which queues the day's digests in the outbox). Then,
each run: build every coordinator's digest from the stored plan (services/digest.py), render
them (text and HTML, one Jinja environment), and send them through the outbox's SMTP transport
to a local aiosmtpd sink (the real smtplib client, one connection), each marked sent in its own
commit. Prints the median (and min–max) of each step as digests/s, in Markdown.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, delete

from monitor.db.migrate import upgrade_to_head
from monitor.db.session import make_engine
from monitor.db.tables import OutboxAttempt, OutboxMessage
from monitor.notify.mail import Mail
from monitor.notify.transport import SmtpServer, SmtpTransport
from monitor.protocols import packaged_library
from monitor.services import daily, outbox
from monitor.services.cohort import enroll_cohort
from monitor.services.digest import build_digests, letters
from monitor.services.enroll_csv import read_enrollments
from monitor.services.ingest import ingest_file
from monitor.services.prepare import Context
from tests.integration.smtp_sink import Server, Sink


def clinic(folder: Path, coordinators: int, each: int, today: date) -> str:
    url = f"sqlite:///{folder / 'monitor.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    library = packaged_library()
    cohort, labs = folder / "cohort.csv", folder / "labs.csv"
    with open(cohort, "w", newline="") as f, open(labs, "w", newline="") as g:
        c, lab = csv.writer(f), csv.writer(g)
        c.writerow(["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site", "phase"])
        lab.writerow(["mrn", "collected_at", "code", "value", "unit"])
        for i in range(coordinators * each):
            mrn = f"B{i:07d}"
            c.writerow([mrn, "aih-azathioprine", (today - timedelta(days=300)).isoformat(), 70, "normal", "normal",
                        f"nurse{i % coordinators:04d}@ward.example", "north", "maintenance"])
            for ago in (60, 40, 20, 5) if i % 2 == 0 else ():
                lab.writerow([mrn, f"{today - timedelta(days=ago)}T09:00:00", "787-2", 107, "fL"])
            if i % 7 == 0:
                lab.writerow([mrn, f"{today - timedelta(days=3)}T09:00:00", "6690-2", 3.2, "10*9/L"])
    now = datetime.now(UTC)
    with Session(engine) as s:
        enroll_cohort(s, library, read_enrollments(cohort, library, today=today), today=today, now=now, actor="bench")
        s.commit()
        ingest_file(s, "csv", labs, Context(catalog=library.catalog, clinic_zone=ZoneInfo("UTC"), hold_days=180,
                                             now=now, library=library))
        daily.run_daily(s, library, today=today, now=now)
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinators", type=int, default=1000)
    parser.add_argument("--patients-each", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    today = datetime.now(UTC).date()
    mail = Mail(sender="monitor@hospital.example")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url = clinic(Path(tmp), args.coordinators, args.patients_each, today)
        print(f"clinic of {args.coordinators * args.patients_each} enrollments, {args.coordinators} coordinators, "
              f"made in {time.perf_counter() - started:.1f} s")
        engine = make_engine(url)
        sink = Sink()
        server = Server(sink).start()
        rates: dict[str, list[float]] = {"build": [], "render": [], "send": []}
        try:
            for _ in range(args.runs):
                with Session(engine) as s:
                    s.execute(delete(OutboxAttempt))
                    s.execute(delete(OutboxMessage))
                    s.commit()
                    t0 = time.perf_counter()
                    digests = build_digests(s, today=today, mail=mail)
                    t1 = time.perf_counter()
                    made = letters(digests, mail)
                    t2 = time.perf_counter()
                    outbox.enqueue(s, made, sender=mail.sender, now=datetime.now(UTC))
                    s.commit()
                    sink.received.clear()
                    t3 = time.perf_counter()
                    done = outbox.deliver(s, SmtpTransport(SmtpServer("127.0.0.1", server.port)), sender=mail.sender,
                                          clock=lambda: datetime.now(UTC), by="bench", policy=outbox.Policy())
                    t4 = time.perf_counter()
                assert done.sent == len(made) == len(sink.received) == args.coordinators, (done, len(made))
                n = len(made)
                rates["build"].append(n / (t1 - t0))
                rates["render"].append(n / (t2 - t1))
                rates["send"].append(n / (t4 - t3))
        finally:
            server.stop()
            engine.dispose()
    print(f"\n{args.coordinators} digests, {args.runs} runs (median, min–max)\n")
    print("| step | digests/s |")
    print("| --- | ---: |")
    for step, values in rates.items():
        print(f"| {step} | {statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f}) |")


if __name__ == "__main__":
    main()
