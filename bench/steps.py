"""One benchmark step in its own process, and the peak memory of that process alone.

    python -m bench.steps PEAK_FILE monitor ARGS...    the CLI (`monitor.cli.main`), as `monitor ARGS...`
    python -m bench.steps PEAK_FILE events EVENTS_CSV  a cohort's events.csv through the service layer

At exit the process writes its own high-water resident set (`VmHWM` in /proc/self/status, in kB)
to PEAK_FILE. Not `getrusage().ru_maxrss`: on Linux a child inherits its parent's high-water mark
across fork and exec, so a small program started by a big one reports the big one's peak. The
ingestion worker (a separate process, ingest/worker.py) is not included.

The events load: `events.csv` (mrn, date, kind, value; bench/cohort.py) has no bulk command, so it
goes through `monitor.services.patients.record` as `monitor record` would, one call per patient and
date, committed every `COMMIT_EVERY` calls, in one process. Settings (the database) come from the
environment, as for the CLI.
"""

from __future__ import annotations

import atexit
import csv
import sys
from collections.abc import Iterator
from datetime import date
from itertools import groupby
from pathlib import Path

from monitor.app import App
from monitor.cli import main as monitor
from monitor.services.patients import Events, record

COMMIT_EVERY = 1000
KINDS = ("dose", "weight", "med_start", "med_stop")


def peak_kb() -> int:
    """This process's peak resident set so far, in kB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def grouped(path: Path) -> Iterator[tuple[str, date, Events]]:
    """The file's events as one `Events` per patient and date (the file is in that order)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f)
        for (mrn, on), same in groupby(rows, key=lambda row: (row["mrn"], row["date"])):
            doses: list[tuple[str, float]] = []
            weight: float | None = None
            started: list[str] = []
            stopped: list[str] = []
            for row in same:
                kind, value = row["kind"], row["value"]
                if kind == "dose":
                    drug, _, mg = value.partition("=")
                    doses.append((drug, float(mg)))
                elif kind == "weight":
                    weight = float(value)
                elif kind in KINDS:
                    (started if kind == "med_start" else stopped).append(value)
                else:
                    raise ValueError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")
            yield mrn, date.fromisoformat(on), Events(doses=tuple(doses), weight_kg=weight, med_start=tuple(started),
                                                      med_stop=tuple(stopped))


def load_events(path: Path, app: App | None = None) -> int:
    """Record every event of `path` through the service layer; how many `record` calls it took."""
    a = app or App()
    today, now = a.today(), a.now()
    calls = 0
    with a.session() as s:
        for mrn, on, events in grouped(path):
            record(s, a.library, mrn, events, on=on, today=today, now=now, actor="bench",
                   dates=a.settings.dates.range)
            calls += 1
            if calls % COMMIT_EVERY == 0:
                s.commit()
        s.commit()
    a.close()
    return calls


def main(argv: list[str]) -> int:
    peak_file, kind, *rest = argv
    atexit.register(lambda: Path(peak_file).write_text(f"{peak_kb()}\n", encoding="ascii"))
    if kind == "monitor":
        return monitor(rest)
    if kind == "events":
        print(f"recorded {load_events(Path(rest[0]))} patient-days of events")
        return 0
    raise SystemExit(f"unknown step {kind!r}: monitor or events")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
