"""Lab ingestion throughput and memory on SQLite: CSV, HL7 v2 files and MLLP, against a floor.

    python bench/ingest.py [--results 250000 1000000] [--mllp-messages 3000] [--postgres URL]

For each size it writes synthetic files (1,000 enrolled patients, CBC + LFT panels), then in a
fresh subprocess per measurement ingests them through the real service into a fresh SQLite file
and reports results/s and peak RSS. Two floors, measured in the same run: a bare `sqlite3` executemany of
the same rows into the product's own (migrated) lab_result table, and into a minimal table with
only the unique source key. With --postgres, CSV and HL7 also go into a throwaway PostgreSQL
database on that server (for information: the targets are SQLite's). Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PATIENTS = 1000
PANEL = [("6690-2", "10*9/L", 6.5), ("751-8", "10*9/L", 4.0), ("777-3", "10*9/L", 250), ("718-7", "g/L", 135),
         ("1742-6", "U/L", 28), ("1920-8", "U/L", 26), ("6768-6", "U/L", 80), ("1975-2", "umol/L", 10),
         ("1751-7", "g/L", 42), ("2160-0", "umol/L", 75)]
START = date(2020, 1, 6)


def rows(n: int):  # type: ignore[no-untyped-def]
    """n results: each patient's draws every 7 days from START, ten analytes a draw."""
    i = 0
    draw = 0
    while True:
        for p in range(PATIENTS):
            when = START + timedelta(days=7 * draw)
            for code, unit, typical in PANEL:
                yield f"BENCH{p:05d}", when.isoformat(), code, f"{typical * (0.9 + (i % 7) / 30):.2f}", unit
                i += 1
                if i >= n:
                    return
        draw += 1


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "collected_at", "code", "value", "unit"])
        w.writerows(rows(n))


def hl7_messages(n: int):  # type: ignore[no-untyped-def]
    """ORU^R01 messages of ten OBX each (one draw)."""
    batch: list[tuple[str, str, str, str, str]] = []
    for k, row in enumerate(rows(n)):
        batch.append(row)
        if len(batch) == len(PANEL) or k == n - 1:
            mrn, when = batch[0][0], batch[0][1].replace("-", "")
            segs = [f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|{when}0900||ORU^R01|B{k:09d}|P|2.5.1",
                    f"PID|1||{mrn}^^^HOSP^MR", f"OBR|1|||58410-2^CBC^LN|||{when}0800"]
            segs += [f"OBX|{j + 1}|NM|{code}^^LN||{value}|{unit}|||||F" for j, (_, _, code, value, unit) in
                     enumerate(batch)]
            yield "\r".join(segs) + "\r"
            batch = []


def write_hl7(path: Path, n: int) -> None:
    with path.open("w", newline="") as f:
        for message in hl7_messages(n):
            f.write(message + "\n")


def floor(csv_path: Path, db: Path, table_shape: str) -> float:
    """Bare sqlite3: the same rows, already parsed as simply as possible, inserted `BATCH` at a time
    and committed as often as the product commits.

    table_shape "product": monitor's own lab_result table (migrated: unique time-first source key,
    the (patient, day) index the engine reads by, the order-key index), with the product's
    pragmas. "minimal": one table with a unique source key and nothing else (the floor of the
    first benchmarks, kept for comparison).
    """
    from monitor.db.migrate import upgrade_to_head
    from monitor.db.session import SQLITE_PRAGMAS, make_engine
    from monitor.services.ingest import COMMIT_EVERY
    from monitor.services.prepare import BATCH, COLUMNS

    if table_shape == "product":
        engine = make_engine(f"sqlite:///{db}")
        upgrade_to_head(engine)
        engine.dispose()
    con = sqlite3.connect(db)
    for pragma in SQLITE_PRAGMAS:
        con.execute(f"PRAGMA {pragma}")
    columns = (*COLUMNS, "patient_id")
    if table_shape == "product":
        con.executemany("INSERT INTO patient (mrn, created_at) VALUES (?, '2026-11-26 09:00:00.000000')",
                        [(f"BENCH{p:05d}",) for p in range(PATIENTS)])
        table = "lab_result"
    else:
        con.execute(f"CREATE TABLE r (id INTEGER PRIMARY KEY, {', '.join(columns)}, UNIQUE (source_key))")
        table = "r"
    con.commit()
    patients = dict(con.execute("SELECT mrn, id FROM patient")) if table_shape == "product" else {}
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
           "ON CONFLICT (source_key) DO NOTHING")
    received = "2026-11-26 09:00:00.000000"
    started = time.perf_counter()
    with csv_path.open() as f:
        reader = csv.reader(f)
        next(reader)
        batch, done = [], 0
        for mrn, when, code, value, unit in reader:
            batch.append((f"csv:{when}|{mrn}|{code}", "csv", code, code, value, unit, float(value), unit, "final",
                          f"{when} 12:00:00.000000", when, received, None, None, None, patients.get(mrn, 0)))
            if len(batch) == BATCH:
                con.executemany(sql, batch)
                batch = []
                done += BATCH
                if done % COMMIT_EVERY == 0:
                    con.commit()
        con.executemany(sql, batch)
        con.commit()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def child(kind: str, path: str, url: str, messages: int) -> None:
    """One measurement in a fresh process: enroll the patients, then ingest; print JSON."""
    from zoneinfo import ZoneInfo

    from sqlmodel import Session

    from monitor.db.migrate import upgrade_to_head
    from monitor.db.session import make_engine
    from monitor.protocols import packaged_library
    from monitor.services.ingest import ingest_file
    from monitor.services.patients import EnrollmentRequest, enroll
    from monitor.services.prepare import Context

    engine = make_engine(url)
    upgrade_to_head(engine)
    library = packaged_library()
    zone = ZoneInfo("Europe/London")
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    with Session(engine) as s:
        for p in range(PATIENTS):
            enroll(s, library, EnrollmentRequest(f"BENCH{p:05d}", "aih-azathioprine", START, 70, tpmt="normal"),
                   today=now.date(), now=now, actor="bench")
        s.commit()
    ctx = Context(catalog=library.catalog, clinic_zone=zone, hold_days=180, now=now, library=library)
    started = time.perf_counter()
    if kind == "mllp":
        total = asyncio.run(mllp(engine, ctx, messages))
    else:
        with Session(engine) as s:
            total = ingest_file(s, kind, Path(path), ctx).stored
    elapsed = time.perf_counter() - started
    print(json.dumps({"results": total, "seconds": elapsed,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


async def mllp(engine, ctx, messages: int) -> int:  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from monitor.ingest.mllp import END, START, Listener, frame
    from monitor.services.inbound import receive_messages

    def store(texts: list[str]) -> list[str]:
        with Session(engine) as s:
            return receive_messages(s, texts, ctx=ctx, channel="mllp")

    listener = Listener(store, now=lambda: ctx.now)
    port = await listener.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    for message in hl7_messages(messages * len(PANEL)):
        writer.write(frame(message))
        sent += 1
    await writer.drain()
    for _ in range(sent):
        await reader.readuntil(START)
        await reader.readuntil(END)
    writer.close()
    await listener.close()
    return sent * len(PANEL)


def measure(kind: str, path: Path, url: str, messages: int = 0) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(path), url, str(messages)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextmanager
def throwaway_database(server: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database on `server` (a URL to any database there), dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--mllp-messages", type=int, default=3000)
    parser.add_argument("--postgres", metavar="URL",
                        help="also ingest the files into PostgreSQL (a throwaway database on this server), "
                             "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        kind, path, url, messages = args.child
        child(kind, path, url, int(messages))
        return
    lines = [f"Machine: {platform.machine()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
             "", "| feed | results | seconds | results/s | floor: product table | × floor | floor: minimal table "
             "| peak RSS |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in args.results:
            csv_path, hl7_path = work / f"labs-{n}.csv", work / f"labs-{n}.hl7"
            write_csv(csv_path, n)
            write_hl7(hl7_path, n)
            base = n / floor(csv_path, work / f"floor-{n}.db", "product")
            minimal = n / floor(csv_path, work / f"minimal-{n}.db", "minimal")
            for kind, path in (("CSV", csv_path), ("HL7 file", hl7_path)):
                r = measure(kind.split()[0].lower(), path, f"sqlite:///{work / f'{kind[:3]}-{n}.db'}")
                rate = r["results"] / r["seconds"]
                lines.append(f"| {kind} | {r['results']:,.0f} | {r['seconds']:.1f} | {rate:,.0f} | {base:,.0f} | "
                             f"{base / rate:.1f} | {minimal:,.0f} | {r['peak_mb']:.0f} MB |")
                if args.postgres:
                    with throwaway_database(args.postgres, f"monitor_bench_{kind[:3].lower()}_{n}") as url:
                        r = measure(kind.split()[0].lower(), path, url)
                    lines.append(f"| {kind}, PostgreSQL | {r['results']:,.0f} | {r['seconds']:.1f} | "
                                 f"{r['results'] / r['seconds']:,.0f} | | | | {r['peak_mb']:.0f} MB |")
        r = measure("mllp", Path("-"), f"sqlite:///{work / 'mllp.db'}", args.mllp_messages)
        lines.append(f"| MLLP (one connection, {args.mllp_messages:,} messages) | {r['results']:,.0f} | "
                     f"{r['seconds']:.1f} | {r['results'] / r['seconds']:,.0f} | | | | {r['peak_mb']:.0f} MB |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
