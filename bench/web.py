"""The web app's latency at hospital scale: the overdue review (first page, filtered, CSV export)
and the patient page, through a real `monitor serve`, on SQLite.

    python -m bench.web [--patients 100000] [--requests 200] [--dir /tmp/web-100k]

Builds (once per folder; kept for the next run) a clinic through the product: `monitor enroll
--csv` of `--patients` patients at 4 sites, 40 coordinators, every protocol and phase, started
up to three years ago; a recent CBC and LFT for two patients in three (`monitor ingest`), so
that the rest are overdue; the day's cycle (`monitor run`). Then starts `monitor serve` and times
`--requests` requests of each kind, one after another on one keep-alive connection (as one browser
tab does), after 10 unmeasured ones: median, p95 and max in milliseconds, printed as Markdown.
The patient page is asked for a different patient each time.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

PROTOCOLS = ("aih-azathioprine", "ibd-azathioprine", "rheum-azathioprine")
PHASES = ("induction", "maintenance", "maintenance", "maintenance", "withdrawal", "lifelong_maintenance")
SITES = ("north", "south", "east", "west")
PASSWORD = "bench password 2026"
#: A draw: (LOINC, value, UCUM unit) of a CBC and an LFT, all within range.
DRAW = (("6690-2", 6.1, "10*9/L"), ("751-8", 3.9, "10*9/L"), ("731-0", 1.8, "10*9/L"), ("777-3", 250, "10*9/L"),
        ("718-7", 135, "g/L"), ("1742-6", 22, "U/L"), ("1975-2", 9, "umol/L"), ("6768-6", 80, "U/L"))


def monitor(folder: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "MONITOR_DATABASE_URL": f"sqlite:///{folder / 'monitor.db'}",
           "MONITOR_OUTBOX__TRANSPORT": "file", "MONITOR_OUTBOX__DIRECTORY": str(folder / "outbox")}
    done = subprocess.run([sys.executable, "-m", "monitor", *args], cwd=folder, env=env, input=stdin, text=True,
                          capture_output=True)
    if done.returncode not in (0, 1):
        sys.exit(f"monitor {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def build(folder: Path, patients: int, today: date) -> None:
    rng = random.Random(16)
    folder.mkdir(parents=True, exist_ok=True)
    cohort, labs = folder / "cohort.csv", folder / "labs.csv"
    with open(cohort, "w", newline="") as f, open(labs, "w", newline="") as g:
        c, lab = csv.writer(f), csv.writer(g)
        c.writerow(["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site", "phase"])
        lab.writerow(["mrn", "collected_at", "code", "value", "unit"])
        for i in range(patients):
            mrn = f"W{i:07d}"
            phase = PHASES[i % len(PHASES)]
            start = today - timedelta(days=rng.randint(120, 3 * 365) if phase != "induction" else rng.randint(1, 80))
            c.writerow([mrn, PROTOCOLS[i % 3], start.isoformat(), rng.randint(50, 100), "normal", "normal",
                        f"nurse{i % 40:02d}@trust.example", SITES[i % 4], phase])
            if i % 3:
                drawn = today - timedelta(days=rng.randint(1, 20))
                for code, value, unit in DRAW:
                    lab.writerow([mrn, f"{drawn.isoformat()}T09:00:00", code, value, unit])
    for step in (("enroll", "--csv", str(cohort)), ("ingest", str(labs)), ("run", "--date", today.isoformat())):
        started = time.perf_counter()
        monitor(folder, *step)
        print(f"built: monitor {step[0]} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    add_flags(folder, patients, today)
    monitor(folder, "users", "add", "admin@trust.example", "--role", "admin", stdin=PASSWORD + "\n")
    (folder / "built").write_text(today.isoformat())


def add_flags(folder: Path, patients: int, today: date) -> None:
    """Open flags for the worklist: a high MCV twice for one patient in five of those drawn, a low
    WBC for one in fifty (ingested, then the day's cycle again: only they are evaluated)."""
    flags = folder / "labs-flags.csv"
    with open(flags, "w", newline="") as f:
        lab = csv.writer(f)
        lab.writerow(["mrn", "collected_at", "code", "value", "unit"])
        for i in range(patients):
            if i % 3 and i % 5 == 1:
                for ago in (30, 2):
                    lab.writerow([f"W{i:07d}", f"{(today - timedelta(days=ago)).isoformat()}T10:00:00", "787-2", 107,
                                  "fL"])
            if i % 3 and i % 50 == 2:
                lab.writerow([f"W{i:07d}", f"{(today - timedelta(days=1)).isoformat()}T10:00:00", "6690-2", 2.9,
                              "10*9/L"])
    for step in (("ingest", str(flags)), ("run", "--date", today.isoformat())):
        started = time.perf_counter()
        monitor(folder, *step)
        print(f"built: monitor {step[0]} (flags) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (folder / "flags").write_text("added")


class Client:
    """One keep-alive connection with a logged-in session, as a browser tab has."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str, float]:
        headers = {"Cookie": self.cookie}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read().decode()
        took = (time.perf_counter() - started) * 1000
        if cookie := response.getheader("set-cookie"):
            self.cookie = cookie.split(";")[0]
        return response.status, text, took

    def log_in(self) -> None:
        _, page, _ = self.request("GET", "/login")
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found
        status, _, _ = self.request("POST", "/login", urlencode(
            {"email": "admin@trust.example", "password": PASSWORD, "csrf": found.group(1)}))
        assert status == 303, status


def measure(client: Client, paths: list[str]) -> list[float]:
    for path in paths[:10]:
        client.request("GET", path)
    times = []
    for path in paths[10:]:
        status, _, took = client.request("GET", path)
        assert status == 200, (path, status)
        times.append(took)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dir", type=Path, help="the clinic's folder (built when new, else reused)")
    args = parser.parse_args()
    folder = args.dir or Path(f"/tmp/monitor-web-{args.patients}")
    if not (folder / "built").exists():
        build(folder, args.patients, date.today())
    today = date.fromisoformat((folder / "built").read_text())
    if not (folder / "flags").exists():  # a folder built before the worklist was measured
        add_flags(folder, args.patients, today)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MONITOR_DATABASE_URL": f"sqlite:///{folder / 'monitor.db'}",
           "MONITOR_WEB__SECRET_KEY": "bench", "MONITOR_WEB__SECURE_COOKIES": "false"}
    server = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--port", str(port)], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        client = Client(port)
        client.log_in()
        n = args.requests + 10
        _, first, _ = client.request("GET", "/overdue")
        total = re.search(r"(More than )?<strong>([\d,]+)</strong> panels overdue", first)
        ids = [int(i) for i in re.findall(r'href="/patients/(\d+)"', first)]
        rng = random.Random(7)
        pages = [f"/overdue?page={rng.randint(1, 20)}" if i % 2 else "/overdue" for i in range(n)]
        def criteria(i: int) -> dict[str, str]:  # a site and one of its coordinators (nurse k works at site k % 4)
            return {"site": SITES[i % 4], "coordinator": f"nurse{(i % 10) * 4 + i % 4:02d}@trust.example",
                    "panel": "CBC"}

        filtered = [f"/overdue?{urlencode({**criteria(i), 'days': 7})}" for i in range(n)]
        exports = [f"/overdue.csv?{urlencode(criteria(i))}" for i in range(n)]
        patient_ids = [rng.randint(1, args.patients) for _ in range(n)] if ids else []
        results = {
            "overdue review, first page (and pages 1-20)": measure(client, pages),
            "overdue review, filtered (site, coordinator, panel, ≥ 7 days)": measure(client, filtered),
            "CSV export of a filtered review (one coordinator's panel)": measure(client, exports),
            "patient page (chart, plan, flags, results)": measure(client, [f"/patients/{p}" for p in patient_ids]),
            "flag worklist, a page (and pages 1-20)": measure(client, [f"/flags?page={rng.randint(1, 20)}" if i % 2
                                                                       else "/flags" for i in range(n)]),
            "flag worklist of one site and coordinator": measure(client, [
                f"/flags?{urlencode({k: v for k, v in criteria(i).items() if k != 'panel'})}" for i in range(n)]),
            "CSV export of the whole review": measure(client, ["/overdue.csv"] * 13),
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
    shown = f"{'more than ' if total.group(1) else ''}{total.group(2)}" if total else "?"
    print(f"\n{args.patients:,} patients on SQLite, {shown} panels overdue, "
          f"plans of {today}; {args.requests} requests each (the whole export: 3)\n")
    print("| request | median ms | p95 ms | max ms |\n| --- | ---: | ---: | ---: |")
    for name, times in results.items():
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
        print(f"| {name} | {statistics.median(times):.0f} | {p95:.0f} | {max(times):.0f} |")


if __name__ == "__main__":
    main()
