"""Foundation benchmarks: `monitor demo` wall time, CSV ingestion and daily-cycle throughput.

Usage: python bench/foundation.py [--patients 240 2000]
Runs on a throwaway directory with SQLite (the embedded default). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from sqlmodel import func, select

from monitor.app import App
from monitor.config import Database
from monitor.db.tables import LabResult
from monitor.demo import run_demo
from monitor.ingest import csv_reader
from monitor.services import daily
from monitor.services.ingest import ingest_records

TODAY = date(2026, 11, 26)


def measure(size: int, workdir: Path) -> dict[str, float]:
    quiet = Console(quiet=True)
    a = App()
    t0 = time.perf_counter()
    run_demo(a, workdir / f"demo-{size}", size=size, today=TODAY, console=quiet)
    demo_s = time.perf_counter() - t0

    # Re-ingest the demo's labs into a fresh database: CSV results per second.
    b = App()
    b.settings = b.settings.model_copy(update={"database": Database(url=f"sqlite:///{workdir}/ingest-{size}.db")})
    labs = workdir / f"demo-{size}" / "labs.csv"
    with b.session() as s:
        t0 = time.perf_counter()
        report = ingest_records(s, csv_reader.read_file(labs, b.settings.clinic.zone, b.library.catalog),
                                b.ingest_context())
        ingest_s = time.perf_counter() - t0
    # Full daily cycle on the demo database (every enrollment evaluated and written).
    with a.session() as s:
        results = s.exec(select(func.count()).select_from(LabResult)).one()
        t0 = time.perf_counter()
        run = daily.run_daily(s, a.library, today=TODAY, now=a.now(), full=True)
        full_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = daily.run_daily(s, a.library, today=TODAY, now=a.now())
        incremental_s = time.perf_counter() - t0
    a.close()
    b.close()
    return {"patients": size, "results": results, "demo_s": demo_s, "records": report.total,
            "ingest_per_s": report.total / ingest_s, "evaluated": run.evaluated,
            "daily_full_per_s": run.evaluated / full_s, "incremental_evaluated": again.evaluated,
            "incremental_s": incremental_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, nargs="+", default=[240, 2000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.patients:
            rows.append(measure(size, Path(tmp)))
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, SQLite file")
    print()
    print("| patients | lab results | `monitor demo` | CSV ingest | full daily cycle | "
          "second run same day |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['patients']:,} | {r['results']:,} | {r['demo_s']:.1f} s | {r['ingest_per_s']:,.0f} records/s | "
              f"{r['daily_full_per_s']:,.0f} enrollments/s | {r['incremental_evaluated']} evaluated, "
              f"{r['incremental_s'] * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
