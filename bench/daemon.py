"""The daemon: MLLP ACK latency while a daily cycle runs, and one daemon against three on PostgreSQL.

    python bench/daemon.py [--patients 2000] [--postgres URL]

1. A demo clinic (`monitor demo --patients N`: a lab history for every patient) on SQLite, every
   enrollment made due again; one `monitor daemon` with its MLLP listener. python-hl7's MLLPClient
   sends results for the clinic's patients one after another while the cycle runs, then as many
   while it is idle: ACK latency (p50, p95, max) in each state.
2. With --postgres: the same clinic loaded into PostgreSQL (`enroll --csv`, `ingest`) as a template;
   the day's cycle by 1 and by 3 daemons, each on a fresh copy: seconds from the day's first claim
   to done (`job_run`), enrollments/s, and the wall time from starting the processes.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hl7.client import MLLPClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ZONE = "Europe/London"


def monitor(*args: str, url: str, cwd: Path) -> None:
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd, env=env, check=True, capture_output=True)


def start_daemon(url: str, log: Path, cwd: Path, **settings: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {"MONITOR_DATABASE_URL": url, "MONITOR_DAEMON__RUN_AT": "00:00", "MONITOR_CLINIC__TIMEZONE": ZONE,
            "MONITOR_DAEMON__WORKERS": "1"}  # daemons against daemons: no helper processes
    env |= {f"MONITOR_{k.upper()}": v for k, v in settings.items()}
    with log.open("w") as f:
        return subprocess.Popen([sys.executable, "-m", "monitor", "daemon", "--log-format", "json"], cwd=cwd, env=env,
                                stderr=f, stdout=subprocess.DEVNULL)


def events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def wait_for(log: Path, event: str) -> dict[str, object]:
    while True:
        for e in events(log):
            if e.get("event") == event:
                return e
        time.sleep(0.01)


def all_due_again(url: str) -> None:
    """Every enrollment due today and no daily run recorded: the day's cycle is a whole day's work."""
    engine = create_engine(url)
    today = datetime.now(ZoneInfo(ZONE)).date()
    with engine.begin() as c:
        c.execute(text("UPDATE enrollment SET next_review_on = :d"), {"d": today})
        c.execute(text("DELETE FROM job_run"))
    engine.dispose()


def message(mrn: str, n: int) -> str:
    now = datetime.now(ZoneInfo(ZONE))
    return (f"MSH|^~\\&|LAB|HOSP|MONITOR|CLINIC|{now:%Y%m%d%H%M%S}||ORU^R01|BENCH{n}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP^MR\rOBR|1||BORD{n}|57021-8^CBC^LN|||{now:%Y%m%d}0700\r"
            f"OBX|1|NM|6690-2^Leukocytes^LN||6.{n % 10}|10*9/L|||||F\r")


def percentiles(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    return f"{len(ms)} | {statistics.median(ms):.1f} ms | {p95:.1f} ms | {ms[-1]:.1f} ms"


def ack_latency(demo: Path, work: Path) -> list[str]:
    url = f"sqlite:///{work / 'latency.db'}"
    shutil.copy(demo / "monitor.db", work / "latency.db")
    all_due_again(url)
    log = work / "latency.log"
    daemon = start_daemon(url, log, work, mllp__enabled="true", mllp__port="0")
    try:
        port = int(str(wait_for(log, "started")["mllp_port"]))
        wait_for(log, "cycle_started")
        during: list[float] = []
        with MLLPClient("127.0.0.1", port) as client:
            while not any(e.get("event") == "cycle_finished" for e in events(log)):
                t0 = time.perf_counter()
                client.send_message(message(f"DEMO{len(during) % 200 + 1:04d}", len(during)))
                during.append(time.perf_counter() - t0)
            idle: list[float] = []
            for n in range(len(during)):
                t0 = time.perf_counter()
                client.send_message(message(f"DEMO{n % 200 + 1:04d}", 100_000 + n))
                idle.append(time.perf_counter() - t0)
        finished = wait_for(log, "cycle_finished")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    cycle = f"{finished['evaluated']} enrollments, {finished['seconds']} s"
    return [f"| during the cycle ({cycle}) | {percentiles(during)} |",
            f"| idle | {percentiles(idle)} |"]


@contextmanager
def database(server: str, name: str, template: str | None = None) -> Iterator[str]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        c.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def shared_cycle(url: str, work: Path, n: int) -> dict[str, Any]:
    """The day's cycle by `n` daemons started together: seconds (first claim to done) and wall time."""
    started = time.perf_counter()
    logs = [work / f"pg-{n}-{i}.log" for i in range(n)]
    daemons = [start_daemon(url, log, work) for log in logs]
    engine = create_engine(url)
    try:
        while True:
            with engine.connect() as c:
                row = c.execute(text("SELECT status, started_at, finished_at, stats FROM job_run")).first()
            if row is not None and row.status == "done":
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            d.wait(30)
        engine.dispose()
    stats = row.stats if isinstance(row.stats, dict) else json.loads(row.stats)
    seconds = (_instant(row.finished_at) - _instant(row.started_at)).total_seconds()
    return {"daemons": n, "evaluated": stats["evaluated"], "seconds": seconds, "wall": wall,
            "shares": sorted(stats["by"].values(), reverse=True)}


def _instant(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def scale_out(demo: Path, work: Path, server: str) -> list[str]:
    lines = []
    with database(server, "bench_daemon_base") as base:
        monitor("enroll", "--csv", str(demo / "cohort.csv"), url=base, cwd=work)
        monitor("ingest", str(demo / "labs.csv"), url=base, cwd=work)
        all_due_again(base)
        create_engine(base).dispose()
        for n in (1, 3):
            with database(server, f"bench_daemon_{n}", template="bench_daemon_base") as url:
                r = shared_cycle(url, work, n)
            lines.append(f"| {n} | {r['evaluated']:,} | {r['seconds']:.1f} s | {r['evaluated'] / r['seconds']:,.0f} "
                         f"| {r['wall']:.1f} s | {' / '.join(map(str, r['shares']))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--postgres", metavar="URL", help="also run 1 and 3 daemons on PostgreSQL (a throwaway "
                        "database on this server), e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = work / "demo"
        monitor("demo", "--dir", str(demo), "--patients", str(args.patients), url=f"sqlite:///{work / 'x.db'}",
                cwd=work)
        print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"demo clinic of {args.patients:,} patients")
        print("\n| MLLP ACK latency (SQLite, one daemon) | messages | p50 | p95 | max |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print("\n".join(ack_latency(demo, work)))
        if args.postgres:
            print("\n| daemons (PostgreSQL) | evaluated | cycle | enrollments/s | wall from start | "
                  "evaluated by each |")
            print("| ---: | ---: | ---: | ---: | ---: | --- |")
            print("\n".join(scale_out(demo, work, args.postgres)))


if __name__ == "__main__":
    main()
