"""The hospital-scale day through the product, against bare-sqlite3 floors (issue 14).

    python -m bench.daily [--patients 10000 100000] [--cohort-dir DIR] [--repeat 3] [--postgres URL]
                          [--profile FILE]

For each size, a cohort from bench/cohort.py (made once, kept in --cohort-dir DIR/<patients>-seed<seed>/
and used again when it is there) goes through real `monitor` processes on a fresh SQLite file
(--postgres: a throwaway PostgreSQL database on that server instead), in the order a clinic
starts: `enroll --csv`; the events load (doses, weights, drugs through `patients.record`,
bench/steps.py); `ingest labs.csv`; `run --full`; `run` the same day again; an ordinary next day
(`ingest labs-next-day.csv`, 1 % of patients, then `run --date` tomorrow). Each step: seconds (the
whole process: start-up, imports and migration check included), rows or enrollments per second,
the peak RSS of the step's own process (VmHWM, bench/steps.py) and how many enrollments a run
evaluated.

The floors, in the same run, on the same rows: the lab rows inserted by `executemany` into the
product's own (migrated) `lab_result` table with the product's pragmas and commit interval; and
every row `run --full` loads (monitor/db/snapshots.py: enrollments, phases, weights, doses,
genotypes, drugs, sexes, lab results from 90 days before each start, flags, overrides, stored
plan rows) streamed by a bare SELECT per table ordered by enrollment, just before `run --full`.
Issue 14's target: `run --full` within 4 × the stream floor at 100,000 patients, 8 × at 10,000.

With --repeat N every measurement runs N times on a fresh database: median [min-max].
--profile FILE runs `run --full` of the last repeat under cProfile (its seconds then include the
profiler's overhead) and prints where the time goes by module. Prints Markdown.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import pstats
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.cohort import clinic_today, read_manifest, write_cohort
from bench.daemon import database
from monitor.db.migrate import upgrade_to_head
from monitor.db.session import SQLITE_PRAGMAS, make_engine
from monitor.domain.exposure import BASELINE_WINDOW
from monitor.protocols import packaged_library
from monitor.services.ingest import COMMIT_EVERY
from monitor.services.prepare import BATCH, COLUMNS

ROOT = Path(__file__).resolve().parents[1]
TARGET = {10_000: 8, 100_000: 4}  # issue 14: run --full within this many × the stream floor
STEPS = ("enroll --csv", "events load", "ingest labs.csv", "run --full", "run again, same day",
         "ingest labs-next-day.csv", "run --date tomorrow")


@dataclass
class Measured:
    """One step's numbers over the repeats."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system seconds of the process (and its children)
    peak_mb: list[float] = field(default_factory=list)
    count: int = 0  # rows, enrollments or events the step handled
    evaluated: list[int] = field(default_factory=list)

    def add(self, seconds: float, cpu: float, count: int) -> None:
        """A floor measured in this process."""
        self.seconds.append(seconds)
        self.cpu.append(cpu)
        self.count = count


@dataclass
class Size:
    patients: int
    manifest: dict[str, Any]
    generated_s: float | None
    steps: dict[str, Measured] = field(default_factory=lambda: defaultdict(Measured))
    floors: dict[str, Measured] = field(default_factory=lambda: defaultdict(Measured))


def cohort(patients: int, seed: int, folder: Path) -> tuple[dict[str, Any], float | None]:
    """The cohort's manifest, made now (and how long that took) unless the folder holds it."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest["patients"] == patients and manifest["seed"] == seed:
        return manifest, None
    started = time.perf_counter()
    write_cohort(folder, patients, seed=seed, today=clinic_today())
    seconds = time.perf_counter() - started
    manifest = read_manifest(folder)
    assert manifest is not None
    return manifest, seconds


def step(work: Path, url: str, args: list[str], profile: Path | None = None) -> tuple[float, float, float, str]:
    """Run one step in its own process: (seconds, CPU seconds, peak RSS in MB, its output)."""
    peak = work / "peak-kb"
    peak.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {"MONITOR_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    python = [sys.executable, *(("-m", "cProfile", "-o", str(profile)) if profile else ()), "-m", "bench.steps"]
    cpu = cpu_of_children()
    started = time.perf_counter()
    done = subprocess.run([*python, str(peak), *args], cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"step `{' '.join(args)}` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, cpu_of_children() - cpu, int(peak.read_text()) / 1024, done.stdout


def cpu_of_children() -> float:
    """User + system seconds of the finished child processes (and theirs: the ingestion worker)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def evaluated(output: str) -> int:
    found = re.search(r"daily cycle \S+: (\d+) evaluated", output)
    if found is None:
        raise SystemExit(f"no `daily cycle ...: N evaluated` line in the output of monitor run:\n{output}")
    return int(found.group(1))


def one_run(size: Size, folder: Path, work: Path, url: str, *, profile: Path | None) -> None:
    """Every step once on the fresh database at `url`, with the floors."""
    m = size.manifest
    counts = m["counts"]
    commands: list[tuple[str, list[str], int]] = [
        ("enroll --csv", ["monitor", "enroll", "--csv", str(folder / "cohort.csv")], counts["patients"]),
        ("events load", ["events", str(folder / "events.csv")], counts["events"]),
        ("ingest labs.csv", ["monitor", "ingest", str(folder / "labs.csv")], counts["lab_rows"]),
        ("run --full", ["monitor", "run", "--full", "--date", m["today"]], 0),
        ("run again, same day", ["monitor", "run", "--date", m["today"]], 0),
        ("ingest labs-next-day.csv", ["monitor", "ingest", str(folder / "labs-next-day.csv")],
         counts["next_day_rows"]),
        ("run --date tomorrow", ["monitor", "run", "--date", m["tomorrow"]], 0),
    ]
    for name, args, count in commands:
        if name == "run --full":
            size.floors["stream"].add(*stream_floor(url, date.fromisoformat(m["today"])))
        seconds, cpu, peak, output = step(work, url, args, profile if name == "run --full" else None)
        measured = size.steps[name]
        measured.seconds.append(seconds)
        measured.cpu.append(cpu)
        measured.peak_mb.append(peak)
        measured.count = count
        if name.startswith("run"):
            measured.evaluated.append(evaluated(output))
        print(f"{size.patients:,} patients, {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    size.floors["insert"].add(*insert_floor(folder, work / "floor.db"))


#: What `run --full` loads (monitor/db/snapshots.py, services/daily.py _Stored), one SELECT a
#: table, every row of every active enrollment, ordered by enrollment. {since}: 90 days before the start.
STREAMS = (
    "SELECT * FROM enrollment e WHERE e.status = 'active' ORDER BY e.id",
    "SELECT x.* FROM enrollment e JOIN phase_episode x ON x.enrollment_id = e.id WHERE e.status = 'active' "
    "ORDER BY e.id, x.started_on, x.id",
    *(f"SELECT x.* FROM enrollment e JOIN {table} x ON x.patient_id = e.patient_id WHERE e.status = 'active' "
      "ORDER BY e.id" for table in ("weight", "dose_event", "genotype", "medication")),
    "SELECT p.id, p.sex FROM enrollment e JOIN patient p ON p.id = e.patient_id WHERE e.status = 'active' "
    "ORDER BY e.id",
    "SELECT r.id, r.patient_id, r.analyte, r.value, r.observed_on, r.status, r.ref_low, r.ref_high, r.observed_at "
    "FROM enrollment e JOIN lab_result r ON r.patient_id = e.patient_id WHERE e.status = 'active' "
    "AND r.observed_on >= {since} AND r.observed_on <= :today AND r.status <> 'retracted' ORDER BY e.id, r.observed_on",
    "SELECT f.enrollment_id, f.key, f.kind, f.severity, f.status, f.observed_on, f.value, f.result_id, r.value, "
    "r.status, f.rule_id FROM enrollment e JOIN flag f ON f.enrollment_id = e.id "
    "LEFT JOIN lab_result r ON r.id = f.result_id WHERE e.status = 'active' "
    "AND f.status IN ('open', 'acknowledged') ORDER BY e.id",
    *(f"SELECT x.* FROM enrollment e JOIN {table} x ON x.enrollment_id = e.id WHERE e.status = 'active' "
      "ORDER BY e.id" for table in ("threshold_override", "due_draw", "dose_step", "overdue_panel", "flag")),
)


def stream_floor(url: str, today: date) -> tuple[float, float, int]:
    """Seconds and CPU seconds (of this process: not PostgreSQL's) to stream every row `run --full`
    loads with the bare driver, and how many rows."""
    days = BASELINE_WINDOW.days
    postgres = make_url(url).get_backend_name() == "postgresql"
    with connected(url) as (con, cursor):
        started, cpu = time.perf_counter(), time.process_time()
        rows = 0
        for n, sql in enumerate(STREAMS):
            if postgres:
                sql = sql.format(since=f"e.start_on - {days}").replace(":today", "%(today)s")
            else:
                sql = sql.format(since=f"date(e.start_on, '-{days} days')")
            cur = cursor(n)
            cur.execute(sql, {"today": today if postgres else today.isoformat()})
            for _ in cur:
                rows += 1
            cur.close()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        con.rollback()
    return seconds, cpu, rows


@contextmanager
def connected(url: str) -> Iterator[tuple[Any, Callable[[int], Any]]]:
    """A bare DB-API connection to the product's database, and a cursor that streams rows."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        import psycopg

        pg = psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False))

        def server_side(n: int) -> Any:
            cur = pg.cursor(name=f"stream{n}")
            cur.itersize = 10_000
            return cur

        try:
            yield pg, server_side
        finally:
            pg.close()
        return
    con = sqlite3.connect(str(u.database))
    try:
        yield con, lambda _: con.cursor()
    finally:
        con.close()


def insert_floor(folder: Path, db: Path) -> tuple[float, float, int]:
    """Seconds and CPU seconds to insert the cohort's lab rows, parsed as simply as possible, `BATCH` at a time
    into the product's own migrated lab_result table (its unique key and indexes, its pragmas),
    committed as often as the product commits; and how many rows."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    upgrade_to_head(engine)
    engine.dispose()
    con = sqlite3.connect(db)
    for pragma in SQLITE_PRAGMAS:
        con.execute(f"PRAGMA {pragma}")
    received = "2026-12-07 09:00:00.000000"
    with (folder / "cohort.csv").open(newline="") as f:
        con.executemany("INSERT INTO patient (mrn, created_at) VALUES (?, ?)",
                        ((row["mrn"], received) for row in csv.DictReader(f)))
    con.commit()
    patients = dict(con.execute("SELECT mrn, id FROM patient"))
    analytes = {a.loinc: a.key for a in packaged_library().catalog.analytes.values()}
    columns = (*COLUMNS, "patient_id")
    sql = (f"INSERT INTO lab_result ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
           "ON CONFLICT (source_key) DO NOTHING")
    status = {"": "final", "C": "corrected", "P": "preliminary", "F": "final"}
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    with (folder / "labs.csv").open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        batch: list[tuple[Any, ...]] = []
        for mrn, when, code, value, unit, low, high, st, source_id in reader:
            patient = patients.get(mrn)
            if patient is None or not value[:1].isdigit():
                continue  # held or quarantined by the product
            batch.append((f"csv:{source_id or f'{when}|{mrn}|{code}'}", "csv", analytes[code], code, value, unit,
                          float(value), unit, status[st], f"{when.replace('T', ' ')}:00.000000", when[:10], received,
                          float(low) if low else None, float(high) if high else None, None, patient))
            if len(batch) == BATCH:
                con.executemany(sql, batch)
                done += len(batch)
                batch = []
                if done % COMMIT_EVERY == 0:
                    con.commit()
        con.executemany(sql, batch)
        done += len(batch)
        con.commit()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    con.close()
    return seconds, cpu, done


def measure(size: Size, folder: Path, work: Path, *, repeat: int, server: str | None, profile: Path | None) -> None:
    for n in range(repeat):
        last = n == repeat - 1
        if server:
            with database(server, f"monitor_bench_daily_{size.patients}") as url:
                one_run(size, folder, work, url, profile=profile if last else None)
        else:
            db = work / f"monitor-{size.patients}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            one_run(size, folder, work, f"sqlite:///{db}", profile=profile if last else None)


def spread(values: list[float], fmt: str = "{:,.1f}") -> str:
    """The median [min–max] of repeated measurements; one value when they are all the same."""
    if min(values) == max(values):
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def table(size: Size, engine: str) -> list[str]:
    m, counts = size.manifest, size.manifest["counts"]
    runs = len(size.steps["run --full"].seconds)
    lines = [f"### {engine}, {size.patients:,} patients ({counts['lab_rows']:,} lab rows, {counts['draws']:,} draws, "
             f"{counts['events']:,} events; seed {m['seed']}, today {m['today']})", ""]
    if size.generated_s is not None:
        lines += [f"Cohort generated in {size.generated_s:.0f} s.", ""]
    lines += [f"{runs} run{'s' if runs > 1 else ''}" + (": median [min–max]" if runs > 1 else ""), "",
              "| step | handled | seconds | CPU seconds | per second | peak RSS | evaluated |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in STEPS:
        s = size.steps[name]
        done = statistics.median(s.evaluated) if s.evaluated else s.count
        what = "enrollments" if name.startswith(("run", "enroll")) else "events" if name == "events load" else "rows"
        rate = f"{done / statistics.median(s.seconds):,.0f} {what}/s" if done else ""
        share = (f"{spread([float(e) for e in s.evaluated], '{:,.0f}')} ({done / size.patients:.1%})"
                 if s.evaluated else "")
        lines.append(f"| `{name}` | {done:,.0f} {what} | {spread(s.seconds)} | {spread(s.cpu)} | {rate} | "
                     f"{spread(s.peak_mb, '{:,.0f}')} MB | {share} |")
    lines += ["", "| floor (bare driver, same rows) | rows | seconds | CPU seconds | rows/s | product ÷ floor: "
              "seconds | CPU seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, label, product in (("insert", "insert the lab rows: sqlite3 executemany into `lab_result`",
                                  "ingest labs.csv"),
                                 ("stream", f"stream what `run --full` loads ({engine}): a SELECT a table, "
                                  "ordered by enrollment", "run --full")):
        f, p = size.floors[name], size.steps[product]
        ratio = statistics.median(p.seconds) / statistics.median(f.seconds)
        cpu = statistics.median(p.cpu) / statistics.median(f.cpu)
        target = f" (target ≤ {TARGET[size.patients]} ×)" if name == "stream" and size.patients in TARGET else ""
        lines.append(f"| {label} | {f.count:,} | {spread(f.seconds)} | {spread(f.cpu)} | "
                     f"{f.count / statistics.median(f.seconds):,.0f} | {ratio:.1f} ×{target} | {cpu:.1f} × |")
    if engine == "PostgreSQL":
        lines.append("\nCPU seconds are the client processes' (PostgreSQL's own are not counted); the insert floor "
                     "is SQLite's.")
    return lines


def ratios(sizes: list[Size]) -> list[str]:
    small, big = sizes[0], sizes[-1]
    lines = ["", f"| step | {small.patients:,} | {big.patients:,} | {big.patients // small.patients} × patients: "
             "× seconds |", "| --- | ---: | ---: | ---: |"]
    for name in STEPS:
        a, b = statistics.median(small.steps[name].seconds), statistics.median(big.steps[name].seconds)
        lines.append(f"| `{name}` | {a:.1f} s | {b:.1f} s | {b / a:.1f} |")
    return lines


def by_module(profile: Path, top: int = 25) -> list[str]:
    """The profile of `run --full`: own time by module (a built-in by its name), and the product's
    functions by cumulative time."""
    stats = pstats.Stats(str(profile))
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    own: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, tottime, _, _) in entries.items():
        own[name if filename == "~" else module_of(filename)] += tottime
    total = sum(own.values())
    lines = ["", f"`run --full` under cProfile ({total:.1f} s in all): own time by module", "",
             "| module (or built-in) | own time | share |", "| --- | ---: | ---: |"]
    for module, seconds in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {module} | {seconds:.1f} s | {seconds / total:.0%} |")
    lines += ["", "| monitor function | calls | cumulative | share |", "| --- | ---: | ---: | ---: |"]
    product = [(module_of(f), line, name, calls, cumtime) for (f, line, name), (_, calls, _, cumtime, _)
               in entries.items() if module_of(f).startswith(PROFILED)]
    for module, line, name, calls, cumtime in sorted(product, key=lambda e: -e[4])[:top]:
        lines.append(f"| {module}:{line} {name} | {calls:,} | {cumtime:.1f} s | {cumtime / total:.0%} |")
    return lines


PROFILED = ("monitor.services", "monitor.domain", "monitor.db")  # below the entry point


def module_of(filename: str) -> str:
    """`monitor.services.daily`, `sqlalchemy.orm.session`, or the file's name."""
    path = Path(filename)
    parts = path.with_suffix("").parts
    for anchor in ("monitor", "sqlalchemy", "sqlmodel", "pydantic", "bench"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return ".".join(parts[i:])
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return filename if filename.startswith("<") else path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--cohort-dir", type=Path, help="keep cohorts here (DIR/<patients>-seed<seed>/) and "
                        "use them again; default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=1, help="measure each size this many times")
    parser.add_argument("--postgres", metavar="URL", help="run the steps on a throwaway PostgreSQL database on "
                        "this server instead of SQLite, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile `run --full` (last repeat) into "
                        "FILE and print where its time goes")
    args = parser.parse_args()
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared; load average "
          f"{os.getloadavg()[0]:.1f} at start), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for patients in args.patients:
            folder = (args.cohort_dir or work) / f"{patients}-seed{args.seed}"
            manifest, generated = cohort(patients, args.seed, folder)
            if manifest["today"] != clinic_today().isoformat():
                print(f"note: the cohort in {folder} was made for {manifest['today']}; steps run with --date then")
            size = Size(patients, manifest, generated)
            measure(size, folder, work, repeat=args.repeat, server=args.postgres, profile=args.profile)
            print("\n" + "\n".join(table(size, engine)), flush=True)
            sizes.append(size)
    if len(sizes) > 1:
        print("\n".join(ratios(sizes)))
    if args.profile:
        print("\n".join(by_module(args.profile)))


if __name__ == "__main__":
    main()
