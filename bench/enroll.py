"""Bulk enrollment (`monitor enroll --csv`) before and after, on SQLite and PostgreSQL.

    python bench/enroll.py [--rows 10000 100000] [--runs 3] [--before main] [--postgres URL]

Writes a synthetic cohort file per size (every protocol, phase and genotype, a fifth of the starts
ahead of today) and a lab file with results for every tenth MRN. Each run gets a fresh database
(`monitor init`, then `monitor ingest` of the lab file: results held for MRNs not yet enrolled),
then times the real command, `python -m monitor enroll --csv`, in its own process: wall seconds
of the whole command (start-up included), its CPU seconds and its peak RSS (its VmHWM: wait4's
ru_maxrss of that process). "before" is
the code of a git ref (`git archive`, default main), "after" this working tree; both run with this
interpreter. Three runs each: the median and the spread (min-max). Prints Markdown.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.ingest import throwaway_database  # noqa: E402  (run as a script: the repository on the path)

PROTOCOLS = ("aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine")
PHASES = ("baseline", "induction", "maintenance", "withdrawal", "off_treatment", "reinduction",
          "lifelong_maintenance")
GENOTYPES = ("normal", "intermediate", "poor", "unknown", "")
HELD_EVERY = 10  # every tenth MRN has results waiting when it is enrolled
HELD_EACH = 3


def write_cohort(path: Path, n: int, today: date) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site", "name", "dob",
                    "sex", "phase"])
        for i in range(n):
            start = today + timedelta(days=i % 90) if i % 5 == 0 else today - timedelta(days=i % 1500)
            w.writerow([f"BULK{i:07d}", PROTOCOLS[i % 3], start.isoformat(), f"{45 + i % 70}.5", GENOTYPES[i % 5],
                        GENOTYPES[(i // 5) % 5], f"nurse{i % 25}@example.org", f"site{i % 7}", f"Patient {i}",
                        f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}", "FMU"[i % 3], PHASES[i % 7]])


def write_labs(path: Path, n: int, today: date) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "collected_at", "code", "value", "unit"])
        for i in range(0, n, HELD_EVERY):
            for k in range(HELD_EACH):
                w.writerow([f"BULK{i:07d}", (today - timedelta(days=7 * k + 1)).isoformat(), "6690-2",
                            f"{5 + k}.{i % 10}", "10*9/L"])


class Run(NamedTuple):
    seconds: float  # wall
    cpu: float  # user + system seconds of the command's process: what the machine's other work cannot stretch
    peak_mb: float


def monitor(code: Path, url: str, work: Path, *args: str) -> tuple[Run, str]:
    """Run `python -m monitor ARGS` from `code`: its timings and peak RSS, and its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {"MONITOR_DATABASE_URL": url, "PYTHONPATH": str(code)}
    out, err = work / "stdout", work / "stderr"
    with out.open("w") as o, err.open("w") as e:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=work, env=env, stdout=o, stderr=e)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage: ru_maxrss is its VmHWM
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"monitor {' '.join(args)} exited {process.returncode}: {err.read_text()[-2000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024), out.read_text()


def one_run(code: Path, url: str, work: Path, cohort: Path, labs: Path, n: int) -> Run:
    monitor(code, url, work, "init")
    monitor(code, url, work, "ingest", str(labs))
    run, out = monitor(code, url, work, "enroll", "--csv", str(cohort))
    enrolled = re.search(r"enrolled (\d+) patients", out)
    if enrolled is None or int(enrolled.group(1)) != n:
        raise SystemExit(f"expected {n} enrolled, the command said: {out}")
    return run


@contextmanager
def database(kind: str, work: Path, server: str | None, label: str) -> Iterator[str]:
    if kind == "SQLite":
        path = work / f"{label}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert server is not None
    with throwaway_database(server, f"monitor_bench_enroll_{label}") as url:
        yield url


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The code of `ref` in a temporary folder (git archive: no worktree is touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def summary(runs: list[Run], n: int) -> tuple[float, str]:
    """The median wall seconds, and the cells: seconds median (min-max), rows/s, CPU, peak RSS."""
    seconds = [r.seconds for r in runs]
    median = statistics.median(seconds)
    return median, (f"{median:.1f} ({min(seconds):.1f}–{max(seconds):.1f}) | {n / median:,.0f} | "
                    f"{statistics.median(r.cpu for r in runs):.1f} | {max(r.peak_mb for r in runs):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", default="main", help="git ref of the code to compare with (default main)")
    parser.add_argument("--postgres", metavar="URL",
                        help="also on PostgreSQL (a throwaway database per run on this server), "
                             "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    before_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], check=True,
                                   capture_output=True, text=True).stdout.strip()
    kinds = ["SQLite", *(["PostgreSQL"] if args.postgres else [])]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"SQLite {sqlite3.sqlite_version}; load average at start {os.getloadavg()[0]:.1f}",
             "", f"| rows | database | before ({args.before} {before_commit}): s, median (min–max) | rows/s | CPU s "
             "| peak RSS | after: s, median (min–max) | rows/s | CPU s | peak RSS | × faster |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    today = date.today()
    with tempfile.TemporaryDirectory() as tmp, checkout(args.before) as before:
        work = Path(tmp)
        for n in args.rows:
            cohort, labs = work / f"cohort-{n}.csv", work / f"labs-{n}.csv"
            write_cohort(cohort, n, today)
            write_labs(labs, n, today)
            for kind in kinds:
                cells = []
                medians = []
                for code, label in ((before, "before"), (ROOT, "after")):
                    runs = []
                    for r in range(args.runs):
                        with database(kind, work, args.postgres, f"{label}_{n}_{r}") as url:
                            runs.append(one_run(code, url, work, cohort, labs, n))
                        print(f"{kind} {n:,} {label} run {r + 1}: {runs[-1]}", file=sys.stderr)
                    median, cell = summary(runs, n)
                    medians.append(median)
                    cells.append(cell)
                lines.append(f"| {n:,} | {kind} | {cells[0]} | {cells[1]} | {medians[0] / medians[1]:.1f} |")
    lines.append(f"\nLoad average at the end {os.getloadavg()[0]:.1f} (a machine shared with other work).")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
