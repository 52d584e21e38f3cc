"""The MLLP listener's throughput and ACK latency: real `monitor mllp` processes, real sockets.

    python bench/mllp.py [--messages 2000] [--runs 3] [--postgres URL] [--no-sqlite] [--before DIR]

A clinic of 200 enrolled patients (`monitor init`, `monitor enroll --csv`) is made once as a
template: a SQLite file, and with --postgres a database on that server. For each scenario and run
a fresh copy gets its own `monitor mllp --port 0` process, and 1, 4 or 16 senders on their own
sockets send `--messages` ORU^R01 messages between them (a CBC and an LFT panel, ten results, for
an enrolled patient, drawn today or yesterday as in a live feed; every result new). A sender is
either one at a time (python-hl7's MLLPClient: send, wait for the ACK, send the next) or
pipelined (up to 32 frames written ahead of their ACKs, as an interface engine with a send window
does). Measured: messages/s (first frame sent to last ACK read), ACK latency p50/p95/max (frame
written to its ACK read), and then, with the listener stopped, a count of the copy's rows: every
message ACKed AA with its own MSH-10, stored once, and its ten results stored. Each figure is the
median of the runs, with the spread (min–max) of messages/s. `--before DIR` measures the `monitor`
package found in DIR too (e.g. an export of main: `git archive main | tar -x -C DIR`), each run
beside this checkout's, so that on a busy machine before and after see the same load. Prints
Markdown.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from hl7.client import MLLPClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PATIENTS = 200
SENDERS = (1, 4, 16)
WINDOW = 32  # frames a pipelining sender writes ahead of their ACKs
START, END = b"\x0b", b"\x1c\x0d"
#: A CBC and an LFT panel: LOINC code, unit, a typical (non-critical) value.
Panel = list[tuple[str, str, float]]
CBC: Panel = [("6690-2", "10*9/L", 6.5), ("751-8", "10*9/L", 4.0), ("731-0", "10*9/L", 1.8), ("777-3", "10*9/L", 250),
       ("718-7", "g/L", 135)]
LFT: Panel = [("1742-6", "U/L", 28), ("1920-8", "U/L", 26), ("6768-6", "U/L", 80), ("1975-2", "umol/L", 10),
       ("1751-7", "g/L", 42)]
RESULTS = len(CBC) + len(LFT)


def message(n: int, tag: str, day: date) -> str:
    """The n-th ORU^R01 of a scenario: a CBC and an LFT panel drawn `day` for patient n % PATIENTS."""
    when = day.strftime("%Y%m%d")
    control = f"{tag}{n:07d}"
    segments = [f"MSH|^~\\&|LABAPP|LABFAC|MONITOR|CLINIC|{when}0930||ORU^R01^ORU_R01|{control}|P|2.5.1",
                f"PID|1||BENCH{n % PATIENTS:04d}^^^HOSP^MR||DOE^JANE", "PV1|1|O"]
    panels: list[tuple[str, str, Panel]] = [("58410-2", "CBC panel", CBC), ("24325-3", "Hepatic panel", LFT)]
    for p, (panel, name, tests) in enumerate(panels):
        segments.append(f"OBR|{p + 1}|{control}-{p}|{control}-{p}F|{panel}^{name}^LN|||{when}0800")
        segments += [f"OBX|{i + 1}|NM|{code}^^LN||{typical * (0.95 + (n % 7) / 70):.1f}|{unit}|||||F|||{when}0800"
                     for i, (code, unit, typical) in enumerate(tests)]
    return "\r".join(segments) + "\r"


def msa(reply: bytes) -> tuple[str, str]:
    """MSA-1 and MSA-2 of an ACK."""
    fields = reply.decode().split("\rMSA|", 1)[1].split("\r", 1)[0].split("|")
    return fields[0], fields[1]


def monitor(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "monitor", *args], env=env, check=True, capture_output=True)


def environment(url: str, source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {"MONITOR_DATABASE_URL": url, "MONITOR_CLINIC__TIMEZONE": "Europe/London"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def make_clinic(url: str, work: Path) -> None:
    cohort = work / "cohort.csv"
    with cohort.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site"])
        w.writerows([f"BENCH{p:04d}", "aih-azathioprine", (date.today() - timedelta(days=90)).isoformat(), "70",
                     "normal", "normal", "nurse@example.org", "north"] for p in range(PATIENTS))
    env = environment(url, None)  # both monitors share the schema: this checkout makes the clinic
    monitor("init", env=env)
    monitor("enroll", "--csv", str(cohort), env=env)


@dataclass
class Outcome:
    seconds: float
    latencies: list[float]
    acks: list[tuple[str, str]]  # (MSA-1, MSA-2) of every ACK
    sent: list[str]  # control ids, in the order of `acks`


def one_at_a_time(port: int, messages: list[str], ready: threading.Barrier) -> Outcome:
    latencies: list[float] = []
    acks: list[tuple[str, str]] = []
    with MLLPClient("127.0.0.1", port) as client:
        ready.wait()
        for m in messages:
            t0 = time.perf_counter()
            reply = client.send_message(m)
            while not reply.endswith(END):  # MLLPClient reads once: the rest of a split ACK
                reply += client.socket.recv(4096)
            latencies.append(time.perf_counter() - t0)
            acks.append(msa(reply))
    return Outcome(0, latencies, acks, [])


def pipelined(port: int, messages: list[str], ready: threading.Barrier) -> Outcome:
    frames = [START + m.encode() + END for m in messages]
    sent_at = [0.0] * len(frames)
    window = threading.Semaphore(WINDOW)
    latencies: list[float] = []
    acks: list[tuple[str, str]] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        def write() -> None:
            for i, f in enumerate(frames):
                window.acquire()
                sent_at[i] = time.perf_counter()
                sock.sendall(f)

        ready.wait()
        writer = threading.Thread(target=write)
        writer.start()
        buffer = b""
        while len(acks) < len(frames):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the listener closed the connection before every ACK came")
            buffer += chunk
            while (end := buffer.find(END)) >= 0:
                now = time.perf_counter()
                latencies.append(now - sent_at[len(acks)])
                acks.append(msa(buffer[buffer.index(START) + 1:end]))
                buffer = buffer[end + len(END):]
                window.release()
        writer.join()
    return Outcome(0, latencies, acks, [])


def start_listener(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], int]:
    with log.open("w") as errors:
        process = subprocess.Popen([sys.executable, "-m", "monitor", "mllp", "--port", "0"], env=env,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    assert process.stdout is not None
    while line := process.stdout.readline():
        if found := re.search(r"MLLP listening on [\d.]+:(\d+)", line):
            return process, int(found[1])
    process.wait()
    raise RuntimeError(f"monitor mllp did not start (exit {process.returncode}): {log.read_text()[-2000:]}")


def run_senders(port: int, senders: int, send: Callable[[int, list[str], threading.Barrier], Outcome],
                messages: list[str]) -> Outcome:
    shares = [messages[i::senders] for i in range(senders)]
    outcomes: list[Outcome | None] = [None] * senders
    ready = threading.Barrier(senders + 1)

    def sender(i: int) -> None:
        outcomes[i] = send(port, shares[i], ready)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    done = [o for o in outcomes if o is not None]
    if len(done) != senders:
        raise RuntimeError("a sender failed")
    return Outcome(seconds, [s for o in done for s in o.latencies], [a for o in done for a in o.acks],
                   [re.search(r"\|ORU\^R01\^ORU_R01\|([^|]+)\|", m)[1] for share in shares  # type: ignore[index]
                    for m in share])


def stored_once(url: str, sent: int) -> str:
    """'yes' when every message is one processed inbound row (its own MSH-10) with its ten results stored."""
    engine = create_engine(url)
    with engine.connect() as c:
        rows, ids, processed = c.execute(text(
            "SELECT count(*), count(DISTINCT control_id), sum(CASE WHEN status = 'processed' THEN 1 ELSE 0 END) "
            "FROM inbound_message")).one()
        results = c.execute(text("SELECT count(*) FROM lab_result")).scalar_one()
    engine.dispose()
    if rows == ids == processed == sent and results == sent * RESULTS:
        return "yes"
    return f"NO: {rows} rows, {ids} MSH-10s, {processed} processed, {results} results for {sent} messages"


@dataclass
class Copies:
    """Fresh copies of the template clinic: `fresh()` gives a URL, `drop()` discards the last."""

    fresh: Callable[[], str]
    drop: Callable[[], None]
    work: Path


@contextmanager
def sqlite_copies(template: Path, work: Path) -> Iterator[Copies]:
    target = work / "run.db"

    def fresh() -> str:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copy(template, target)
        return f"sqlite:///{target}"

    yield Copies(fresh, lambda: None, work)


@contextmanager
def postgres_copies(server: str, work: Path) -> Iterator[Copies]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")

    def execute(sql: str) -> None:
        with admin.connect() as c:
            c.execute(text(sql))

    def url(name: str) -> str:
        return make_url(server).set(database=name).render_as_string(hide_password=False)

    template, run = f"bench_mllp_{os.getpid()}_template", f"bench_mllp_{os.getpid()}_run"  # one bench, its own
    execute(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
    execute(f"CREATE DATABASE {template}")
    try:
        make_clinic(url(template), work)

        def fresh() -> str:
            execute(f"DROP DATABASE IF EXISTS {run} WITH (FORCE)")
            execute(f"CREATE DATABASE {run} TEMPLATE {template}")
            return url(run)

        yield Copies(fresh, lambda: execute(f"DROP DATABASE IF EXISTS {run} WITH (FORCE)"), work)
    finally:
        execute(f"DROP DATABASE IF EXISTS {run} WITH (FORCE)")
        execute(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
        admin.dispose()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


@dataclass
class Measured:
    """One monitor's runs of one scenario."""

    rates: list[float]
    p50s: list[float]
    p95s: list[float]
    maxes: list[float]
    checks: list[str]

    def add(self, n: int, outcome: Outcome, check: str) -> None:
        ordered = sorted(outcome.latencies)
        self.rates.append(n / outcome.seconds)
        self.p50s.append(statistics.median(ordered))
        self.p95s.append(ordered[max(0, round(0.95 * len(ordered)) - 1)])
        self.maxes.append(ordered[-1])
        self.checks.append(check)

    def row(self, label: str, senders: int, mode: str, n: int) -> str:
        check = next((c for c in self.checks if c != "yes"), "yes")
        return (f"| {label} | {senders} | {mode} | {n} | {statistics.median(self.rates):.0f} "
                f"| {min(self.rates):.0f}–{max(self.rates):.0f} | {ms(statistics.median(self.p50s))} "
                f"| {ms(statistics.median(self.p95s))} | {ms(statistics.median(self.maxes))} | {check} |")


def measure(copies: Copies, source: Path | None, senders: int, mode: str, n: int, tag: str) -> tuple[Outcome, str]:
    """One run: a fresh copy, its own listener, the senders; the outcome and the row count check."""
    send = one_at_a_time if mode == "one at a time" else pipelined
    url = copies.fresh()
    process, port = start_listener(environment(url, source), copies.work / "listener.log")
    try:
        messages = [message(i, tag, date.today() - timedelta(days=i % 2)) for i in range(n)]
        outcome = run_senders(port, senders, send, messages)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    acked = [code for code, _ in outcome.acks] == ["AA"] * n and [c for _, c in outcome.acks] == outcome.sent
    check = stored_once(url, n) if acked else "NO: not every ACK was AA for its own message"
    copies.drop()
    return outcome, check


def table(copies: Copies, sources: dict[str, Path | None], n: int, runs: int) -> list[str]:
    """Every scenario, each monitor's runs interleaved (on a busy machine both see the same load)."""
    lines = ["| monitor | senders | sending | messages | messages/s (median) | spread | ACK p50 ms | ACK p95 ms "
             "| ACK max ms | each stored once, AA |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for senders in SENDERS:
        for mode in ("one at a time", "pipelined"):
            measured = {label: Measured([], [], [], [], []) for label in sources}
            for run in range(runs):
                for label, source in sources.items():
                    measured[label].add(n, *measure(copies, source, senders, mode, n, f"B{senders}{mode[0]}{run}"))
            for label, m in measured.items():
                lines.append(m.row(label, senders, mode, n))
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per scenario and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="also on a throwaway database on this PostgreSQL server, "
                        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--before", type=Path, metavar="DIR", help="also measure the monitor package in DIR (e.g. "
                        "an export of main), each run beside this checkout's")
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True, help="measure SQLite")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the throwaway databases are dropped
    sources: dict[str, Path | None] = {"this checkout": None}
    if args.before:
        sources = {"before": args.before.resolve(), "after": None}
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
             f"SQLite {sqlite3.sqlite_version}; {args.messages} messages of {RESULTS} results per scenario, "
             f"{args.runs} runs" + (f"; before: monitor from {sources['before']}" if args.before else ""), ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.sqlite:
            template = work / "template.db"
            make_clinic(f"sqlite:///{template}", work)
            with sqlite_copies(template, work) as copies:
                lines += ["SQLite:", "", *table(copies, sources, args.messages, args.runs), ""]
        if args.postgres:
            with postgres_copies(args.postgres, work) as copies:
                lines += ["PostgreSQL:", "", *table(copies, sources, args.messages, args.runs), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
