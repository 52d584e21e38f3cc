"""`monitor demo`: a synthetic cohort on a fresh SQLite file, run through the real product.

Everything goes through the same code a clinic uses: the cohort through bulk enrollment, the
labs through CSV ingestion, the plan through the daily cycle, digests through the templates.
All patients and values are invented (seeded, so every run on the same date is the same).
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from sqlmodel import Session, select

from monitor.app import App
from monitor.config import Database
from monitor.db.tables import Patient
from monitor.domain.analytes import Analyte, Catalog
from monitor.domain.digest import Digest
from monitor.domain.errors import UserError
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.domain.schedule import LOOKAHEAD, dose_timeline, planned_slots
from monitor.domain.snapshot import Genotype, PhaseEpisode, Snapshot, Weight
from monitor.private import OWNER_ONLY_FOLDER, owner_only
from monitor.services import daily, flags, outbox, patients, views
from monitor.services.cohort import enroll_cohort
from monitor.services.digest import build_digests
from monitor.services.enroll_csv import read_enrollments
from monitor.services.ingest import ingest_file
from monitor.services.prepare import IngestReport

PROTOCOL = "aih-azathioprine"
#: The file that makes a folder the demo's: only in such a folder (or a new one) does the demo write.
MARKER = ".monitor-demo"
NURSES = ("a.okafor@clinic.example", "b.singh@clinic.example", "c.murphy@clinic.example")
SITES = ("north", "south")
#: (phase at the end, share of the cohort)
MIX = ((Phase.BASELINE, 0.05), (Phase.INDUCTION, 0.2), (Phase.MAINTENANCE, 0.35), (Phase.WITHDRAWAL, 0.1),
       (Phase.OFF_TREATMENT, 0.1), (Phase.REINDUCTION, 0.08), (Phase.LIFELONG_MAINTENANCE, 0.12))
#: Typical values (canonical unit, sd) for invented results.
NORMAL = {"WBC": (6.5, 1.2), "NEUT": (4.0, 0.9), "LYMPH": (1.8, 0.4), "PLT": (250, 50), "HGB": (135, 10),
          "MCV": (92, 4), "ALT": (28, 8), "AST": (26, 6), "ALP": (80, 18), "BILI": (10, 3), "ALB": (42, 3),
          "CREAT": (75, 12), "IGG": (11, 2)}
#: Active autoimmune hepatitis at diagnosis: (peak value, half-life in days on treatment).
ACTIVE = {"ALT": (320, 12), "AST": (250, 12), "IGG": (24, 25)}
PANEL_ANALYTES = {"CBC": ("WBC", "NEUT", "LYMPH", "PLT", "HGB", "MCV"),
                  "LFT": ("ALT", "AST", "ALP", "BILI", "ALB"), "RENAL": ("CREAT",), "IGG": ("IGG",)}


@dataclass
class Person:
    mrn: str
    phase: Phase
    start: date
    weight: float
    coordinator: str
    site: str
    history: list[tuple[Phase, date]] = field(default_factory=list)  # confirmed changes after enrollment
    setpoints: dict[str, float] = field(default_factory=dict)  # this person's usual values
    story: str = "well"  # well, leukopenia, critical, lapsed, relapse

    @property
    def active_from(self) -> date | None:
        """When the current (re)induction began: liver tests are high then and fall."""
        if self.phase is Phase.INDUCTION:
            return self.start
        return self.history[-1][1] if self.phase is Phase.REINDUCTION else None


#: The patients the README's tour shows (index in the cohort: phase, days on treatment, story).
SHOWCASE = {2: (Phase.INDUCTION, 42, "no_labs"),   # DEMO0003: enrolled six weeks ago, never drawn
            6: (Phase.MAINTENANCE, 700, "critical")}  # DEMO0007: a critical leukopenia two days ago


def cohort(n: int, today: date, rng: random.Random) -> list[Person]:
    people = []
    phases = [p for p, share in MIX for _ in range(max(1, round(share * n)))]
    for i in range(n):
        phase = phases[i % len(phases)]
        days = {Phase.BASELINE: -rng.randint(3, 14), Phase.INDUCTION: rng.randint(10, 80)}.get(
            phase, rng.randint(400, 2000))
        p = Person(mrn=f"DEMO{i + 1:04d}", phase=phase, start=today - timedelta(days=days),
                   weight=round(rng.uniform(48, 105), 1), coordinator=NURSES[i % 3], site=SITES[i % 2],
                   story=rng.choices(("well", "leukopenia", "critical", "lapsed", "relapse"), (74, 9, 3, 10, 4))[0])
        if i in SHOWCASE:
            p.phase, days, p.story = SHOWCASE[i]
            p.start = today - timedelta(days=days)
        recent = today - timedelta(days=rng.randint(7, 40))
        if phase in (Phase.WITHDRAWAL, Phase.OFF_TREATMENT, Phase.REINDUCTION):
            p.history.append((Phase.WITHDRAWAL, recent - timedelta(days=300 if phase != Phase.WITHDRAWAL else 0)))
        if phase in (Phase.OFF_TREATMENT, Phase.REINDUCTION):
            p.history.append((Phase.OFF_TREATMENT, recent - timedelta(days=150 if phase == Phase.REINDUCTION else 0)))
        if phase is Phase.REINDUCTION:
            p.history.append((Phase.REINDUCTION, recent))
        if phase is Phase.LIFELONG_MAINTENANCE:
            p.history.append((Phase.LIFELONG_MAINTENANCE, recent - timedelta(days=300)))
        people.append(p)
    return people


def enrollment_phase(p: Person) -> Phase:
    return p.phase if p.phase in (Phase.BASELINE, Phase.INDUCTION) else Phase.MAINTENANCE


def draw_days(p: Person, protocol: MonitoringProtocol, today: date) -> list[tuple[date, tuple[str, ...]]]:
    """The scheduled draws up to today, from the engine's own schedule."""
    snap = Snapshot(enrollment_id=0, start_on=p.start, weights=(Weight(p.start, p.weight),),
                    genotypes=(Genotype("TPMT", "normal", p.start), Genotype("NUDT15", "normal", p.start)),
                    phases=(PhaseEpisode(enrollment_phase(p), p.start),
                            *(PhaseEpisode(ph, on) for ph, on in p.history)))
    timeline = dose_timeline(snap, protocol, protocol.safety.anchor_drug)
    by_day: dict[date, set[str]] = {}
    for s in planned_slots(snap, protocol, horizon=today + LOOKAHEAD, timeline=timeline, extra=[]):
        if s.due_on <= today:
            by_day.setdefault(s.due_on, set()).update(s.panels)
    if p.active_from is not None:  # the diagnostic (baseline) bloods, just before treatment
        by_day.setdefault(p.active_from - timedelta(days=3), set()).update(PANEL_ANALYTES)
    return [(day, tuple(sorted(panels))) for day, panels in sorted(by_day.items())]


def value_for(p: Person, analyte: str, taken: date, last: bool, rng: random.Random) -> float:
    mean, sd = NORMAL[analyte]
    setpoint = p.setpoints.setdefault(analyte, max(rng.gauss(mean, sd), mean * 0.5))
    value = setpoint * rng.gauss(1, 0.06)  # within-person variation is much smaller than between people
    active = p.active_from is not None and taken >= p.active_from - timedelta(days=7)
    if active and p.active_from is not None and analyte in ACTIVE:  # active hepatitis resolving on treatment
        peak, half_life = ACTIVE[analyte]
        days = max((taken - p.active_from).days, 0) * rng.uniform(0.7, 1.3)
        value = setpoint + (peak - setpoint) * 0.5 ** (days / half_life)
    if last and analyte == "WBC" and p.story in ("leukopenia", "critical"):
        value = rng.uniform(3.0, 3.4) if p.story == "leukopenia" else rng.uniform(1.5, 1.9)
    if last and analyte == "ALT" and p.story == "relapse":
        value = rng.choice((rng.uniform(60, 100), rng.uniform(130, 200)))  # possible relapse, or relapse
    return value


def lab_rows(people: list[Person], protocol: MonitoringProtocol, catalog: Catalog, today: date,
             rng: random.Random) -> Iterator[list[str]]:
    for p in people:
        if p.story == "no_labs":
            continue
        days = draw_days(p, protocol, today)
        if p.story in ("leukopenia", "critical"):  # the count that showed it, two days ago
            days.append((today - timedelta(days=2), ("CBC",)))
        sent: set[tuple[date, str]] = set()
        skip_last = rng.randint(1, 2) if p.story == "lapsed" else 0
        for n, (due, panels) in enumerate(days[: len(days) - skip_last] if skip_last else days):
            last = n >= len(days) - 1 - skip_last
            if rng.random() < 0.05 and not last:  # the odd missed draw
                continue
            taken = min(due + timedelta(days=rng.randint(-2, 2)), today)
            for panel in panels:
                for analyte in PANEL_ANALYTES[panel]:
                    if (taken, analyte) in sent:
                        continue
                    sent.add((taken, analyte))
                    value = value_for(p, analyte, taken, last, rng)
                    a = catalog.analytes[analyte]
                    yield [p.mrn, taken.isoformat(), a.loinc, *unit_value(a, value, rng)]
    # A few records that show what happens to results the product cannot store as they are.
    yield ["DEMO0001", today.isoformat(), "777-3", "210", "furlongs"]
    yield ["DEMO0002", today.isoformat(), "6690-2", "see comment", "10*9/L"]
    yield ["NOTYET01", today.isoformat(), "6690-2", "5.9", "10*9/L"]  # not enrolled yet: held


def unit_value(analyte: Analyte, value: float, rng: random.Random) -> list[str]:
    """The canonical unit, or for some results the units other labs use, to exercise conversion."""
    key = analyte.key
    if key == "BILI" and rng.random() < 0.3:
        return [f"{value / 17.1:.2f}", "mg/dL"]
    if key == "HGB" and rng.random() < 0.3:
        return [f"{value / 10:.1f}", "g/dL"]
    if key in ("WBC", "PLT") and rng.random() < 0.3:
        return [f"{value:.1f}" if key == "WBC" else f"{value:.0f}", "10*3/uL"]
    digits = 0 if key in ("PLT", "HGB", "ALT", "AST", "ALP", "CREAT", "MCV") else 1
    return [f"{value:.{digits}f}", analyte.unit]


def handled_at_the_time(session: Session, people: list[Person], *, today: date, now: datetime) -> None:
    """Flags raised before a patient's last confirmed phase change were acted on back then, and the
    infection screen of a patient past baseline was recorded before the first dose."""
    changed = {p.mrn: p.history[-1][1] for p in people if p.history}
    treated = {p.mrn for p in people if p.phase is not Phase.BASELINE}
    for flag in views.flags(session, status="open"):
        if flag["observed_on"] < changed.get(flag["mrn"], date.min).isoformat():
            reason = "demo: handled when the phase changed"
        elif flag["kind"] == "infection_screen" and flag["mrn"] in treated:
            reason = "demo: HBV, HCV, HIV and VZV screened before the first dose"
        else:
            continue
        flags.acknowledge(session, flag["id"], reason=reason, by="demo", today=today, now=now)
    session.commit()


def fresh(directory: Path) -> None:
    """Make `directory` the demo's: a new or empty folder gets the marker; in a folder with the
    marker (an earlier demo's) only what a demo writes is removed. Any other folder, e.g. a clinic's
    with its database, is refused (UserError) before anything is touched."""
    try:
        if directory.exists() and not directory.is_dir():
            raise UserError(f"--dir {directory} is not a folder; give the demo a new folder")
        if directory.is_dir() and not (directory / MARKER).is_file() and any(directory.iterdir()):
            raise UserError(f"--dir {directory} is not a demo folder (it holds files and no {MARKER} marker): "
                            "the demo writes only into a new folder or one it made; choose another --dir")
        directory.mkdir(mode=OWNER_ONLY_FOLDER, parents=True, exist_ok=True)
        with open(directory / MARKER, "w", encoding="utf-8", opener=owner_only) as f:
            f.write("made by `monitor demo`, which may replace the files it wrote here\n")
        for name in ("monitor.db", "monitor.db-wal", "monitor.db-shm", "cohort.csv", "labs.csv"):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(directory / "outbox", ignore_errors=True)
    except OSError as e:
        raise UserError(f"--dir {directory}: cannot use it for the demo ({e.strerror})") from None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_demo(a: App, directory: Path, *, size: int, today: date, console: Console) -> None:
    started = time.perf_counter()
    rng = random.Random("monitor-demo")  # the same cohort, relative to the date, every time
    fresh(directory)
    a.settings = a.settings.model_copy(
        update={"database": Database(url=f"sqlite:///{(directory / 'monitor.db').resolve()}"),
                "outbox": a.settings.outbox.model_copy(update={"transport": "file",
                                                               "directory": str(directory / "outbox")})})
    people = cohort(size, today, rng)
    write_files(a, directory, people, today, rng)
    now = a.now()
    with a.session() as s:
        enroll_cohort(s, a.library, read_enrollments(directory / "cohort.csv", a.library, today=today), today=today,
                      now=now, actor="demo")
        for p in people:
            for phase, on in p.history:
                patients.change_phase(s, p.mrn, phase, on=on, reason="demo history", by="demo", today=today,
                                      now=now)
        s.commit()
        ingested = ingest_file(s, "csv", directory / "labs.csv", a.ingest_context())
        # The history's flags, then what the clinic did about them at the time; then the day's cycle,
        # which queues each coordinator's digest (and the critical alerts still open) in the outbox.
        everyone = [p for p in s.exec(select(Patient.id)).all() if p is not None]
        daily.evaluate_patients(s, a.library, everyone, today=today, now=now, mail=a.mail)
        handled_at_the_time(s, people, today=today, now=now)
        report = daily.run_daily(s, a.library, today=today, now=now, mail=a.mail, clock=a.now)
        sent = outbox.deliver(s, a.transport(), sender=a.mail.sender, clock=a.now, by="demo", policy=a.policy)
        digests = build_digests(s, today=today, mail=a.mail)
    summarise(console, directory, people, ingested, report, digests, sent, today=today,
              seconds=time.perf_counter() - started)


def write_files(a: App, directory: Path, people: list[Person], today: date, rng: random.Random) -> None:
    """The cohort and its labs as a clinic would have them: the CLI's CSV files."""
    with open(directory / "cohort.csv", "w", newline="", encoding="utf-8", opener=owner_only) as f:
        w = csv.writer(f)
        w.writerow(["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site", "phase"])
        for p in people:
            w.writerow([p.mrn, PROTOCOL, p.start, p.weight, "normal", "normal", p.coordinator, p.site,
                        enrollment_phase(p).value])
    with open(directory / "labs.csv", "w", newline="", encoding="utf-8", opener=owner_only) as f:
        w = csv.writer(f)
        w.writerow(["mrn", "collected_at", "code", "value", "unit"])
        w.writerows(lab_rows(people, a.library.get(PROTOCOL), a.library.catalog, today, rng))


def summarise(console: Console, directory: Path, people: list[Person], ingested: IngestReport,
              report: daily.RunReport, digests: list[Digest], sent: outbox.Delivery, *, today: date,
              seconds: float) -> None:
    severities = Counter(p.severity for d in digests for p in d.problems)
    watching = sum(d.watching for d in digests)
    phases = Counter(p.phase.value for p in people)
    overdue = sum(len(d.overdue) for d in digests)
    console.print(f"[bold]monitor demo[/] for {today} in {directory}/ ({seconds:.1f} s)")
    console.print(f"  {len(people)} synthetic patients: "
                  + ", ".join(f"{n} {ph}" for ph, n in sorted(phases.items())))
    console.print(f"  labs: {ingested.stored} results stored, {ingested.held} held (MRN not enrolled), "
                  f"{ingested.quarantined} quarantined with a reason")
    console.print(f"  daily cycle: {report.evaluated} enrollments evaluated; open problems: {severities['critical']} "
                  f"critical, {severities['action']} action, {watching} watch flags; "
                  f"{overdue} panels overdue (latest required draw unmet)")
    console.print(f"  {report.digests} coordinator digests and the open critical alerts: {sent.sent} e-mails written "
                  f"to {directory / 'outbox'}/ (the outbox's file transport)")
    console.print("\nLook around (the demo database is the default one inside the folder):")
    console.print(f"  cd {directory}")
    console.print("  monitor overdue                 # every panel whose latest required draw is unmet, worst first")
    console.print("  monitor flags                   # the flag worklist, critical first")
    console.print("  monitor patient DEMO0007        # a critical leukopenia: azathioprine held, and why")
    console.print("  monitor patient DEMO0003        # enrolled six weeks ago, never drawn: every draw missed")
    console.print("  monitor quarantine              # records that could not be stored, with reasons")
    console.print(f"  cat outbox/digest-{NURSES[0]}-{today.isoformat()}.eml")
    console.print("  monitor outbox list             # every e-mail, sent or waiting")
    console.print("  monitor users add you@example.org --role admin && monitor serve")
    console.print("                                  # the web app on http://localhost:8000")
