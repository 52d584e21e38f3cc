"""A seeded synthetic hospital cohort as the CLI's own files, at any size (issue 14's benchmark).

    python -m bench.cohort --patients 100000 --dir /tmp/cohort-100k [--seed 14] [--today YYYY-MM-DD]

Writes into the folder, one patient at a time, so memory stays flat at any size:

* `cohort.csv` for `monitor enroll --csv`: the three azathioprine protocols, every phase, TPMT and
  NUDT15 results (some intermediate and poor), weights, date of birth and sex, coordinators and sites.
* `labs.csv` for `monitor ingest`: three years of draws (at least 20 a patient, CBC + LFT and
  creatinine, IgG for autoimmune hepatitis) as each site's laboratory sends them: the hospital lab
  in canonical units with its ranges and accession numbers (`source_id`), the district lab in US
  units with neither. Some leukopenia, neutropenia and critical counts, drug liver toxicity,
  relapses (ALT rising in maintenance), and corrections (a `C` row for an earlier `source_id`); at
  the end, two records that must be quarantined and one for an MRN not enrolled (held).
* `events.csv` (`mrn, date, kind, value`): doses as the protocol's induction table or maintenance
  target gives them, re-weighings and interacting drugs started and stopped, for
  `bench.steps.load_events` (there is no bulk CLI for them).
* `labs-next-day.csv`: a draw on the day after `--today` for 1 % of the patients (an ordinary next day).
* `cohort.json`: the seed, the dates and what the files hold (written last: a folder without it is
  incomplete).

Every value is invented. The same seed, size and `--today` give the same files, byte for byte.
Clinical numbers come from the packaged config (codes, units, ranges, doses); the shares and
typical values here are the cohort's, not the product's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import clock
from monitor.config import load_settings
from monitor.demo import ACTIVE, NORMAL
from monitor.domain.analytes import Analyte, Catalog
from monitor.domain.protocol import MonitoringProtocol, Phase
from monitor.protocols import Library, packaged_library

HISTORY_DAYS = 3 * 365  # every patient's labs reach back this far
ROUTINE_DRAWS = 20  # clinic draws spread over the history, whatever else the patient had
INDUCTION_DRAW_DAYS = (7, 14, 21, 28, 42, 56, 84)  # extra draws after a treatment start in the history
NEXT_DAY_EVERY = 100  # one patient in this many has a draw on the day after --today
CORRECTED = 0.005  # share of the hospital lab's draws with one result corrected later
LAB_COLUMNS = ["mrn", "collected_at", "code", "value", "unit", "ref_low", "ref_high", "status", "source_id"]
COHORT_COLUMNS = ["mrn", "protocol", "start", "weight_kg", "tpmt", "nudt15", "coordinator", "site", "phase",
                  "dob", "sex"]
EVENT_COLUMNS = ["mrn", "date", "kind", "value"]
SITES = ("north", "south", "east", "west", "riverside", "central")
PATIENTS_PER_NURSE = 500

#: (protocol, share of the cohort, (phase, share of the protocol's patients))
PROTOCOLS = (
    ("aih-azathioprine", 30, ((Phase.BASELINE, 3), (Phase.INDUCTION, 10), (Phase.MAINTENANCE, 50),
                              (Phase.WITHDRAWAL, 7), (Phase.OFF_TREATMENT, 12), (Phase.REINDUCTION, 5),
                              (Phase.LIFELONG_MAINTENANCE, 13))),
    ("ibd-azathioprine", 45, ((Phase.BASELINE, 3), (Phase.INDUCTION, 12), (Phase.MAINTENANCE, 75),
                              (Phase.OFF_TREATMENT, 10))),
    ("rheum-azathioprine", 25, ((Phase.BASELINE, 3), (Phase.INDUCTION, 12), (Phase.MAINTENANCE, 75),
                                (Phase.OFF_TREATMENT, 10))),
)
#: Days from the enrollment start to --today, by phase (a baseline patient starts in the coming days).
DAYS_ON = {Phase.BASELINE: (-14, -3), Phase.INDUCTION: (7, 84), Phase.REINDUCTION: (7, 84),
           Phase.MAINTENANCE: (120, 3000), Phase.LIFELONG_MAINTENANCE: (400, 3000), Phase.WITHDRAWAL: (14, 200),
           Phase.OFF_TREATMENT: (30, 1500)}
ON_DRUG_BEFORE_START = 700  # withdrawal and off treatment: azathioprine taken this long before the start
GENOTYPES = {"TPMT": (("normal", 887), ("intermediate", 100), ("poor", 3), ("unknown", 10)),
             "NUDT15": (("normal", 950), ("intermediate", 35), ("poor", 2), ("unknown", 13))}
#: What each patient's course holds: (story, share). A story's event is on the latest draw or,
#: for some, on an earlier one the patient recovered from.
STORIES = (("well", 715), ("leukopenia", 70), ("neutropenia", 30), ("critical", 15), ("liver", 40),
           ("relapse", 50), ("lapsed", 80))
REWEIGHED, ON_INTERACTING_DRUG, STOPPED_IT = 0.25, 0.06, 0.3
#: Within-person variation (coefficient of variation) from draw to draw: far smaller than between people.
VARIATION = {"WBC": 0.08, "NEUT": 0.1, "LYMPH": 0.08, "PLT": 0.06, "HGB": 0.025, "MCV": 0.012, "ALT": 0.1,
             "AST": 0.08, "ALP": 0.05, "BILI": 0.1, "ALB": 0.03, "CREAT": 0.04, "IGG": 0.04}
ON_DRUG = {"WBC": 0.85, "NEUT": 0.85, "LYMPH": 0.8, "MCV": 1.06}  # azathioprine's usual effect on a setpoint
#: The values of a story's draw; a relapse's ALT over its last three draws (2: two draws before the latest).
STORY_VALUES: dict[str, dict[str, tuple[float, float]]] = {
    "leukopenia": {"WBC": (3.0, 3.4), "NEUT": (1.4, 1.9)},
    "neutropenia": {"WBC": (3.2, 3.9), "NEUT": (0.6, 1.2)},
    "critical": {"WBC": (1.5, 1.9), "NEUT": (0.3, 0.9)},
    "liver": {"ALT": (130, 260), "AST": (90, 180), "ALP": (140, 220)}}
RELAPSE_ALT = {2: (55, 75), 1: (85, 115), 0: (130, 200)}


@dataclass(frozen=True)
class Lab:
    """A site's laboratory: which analytes it reports in a draw, in which units, and what else."""

    analytes: tuple[str, ...]
    units: dict[str, str]  # analyte -> the unit it reports in, when not the canonical one
    ranges: bool  # sends its reference ranges (in canonical units)
    accession: str  # source_id prefix: every result carries its accession number ("": none)


LABS = (
    Lab(("WBC", "NEUT", "LYMPH", "PLT", "HGB", "MCV", "ALT", "AST", "ALP", "BILI", "ALB", "CREAT"), {}, True, "H"),
    Lab(("WBC", "NEUT", "PLT", "HGB", "ALT", "AST", "ALP", "BILI", "CREAT"),
        {"WBC": "10*3/uL", "NEUT": "10*3/uL", "PLT": "10*3/uL", "HGB": "g/dL", "BILI": "mg/dL", "CREAT": "mg/dL"},
        False, ""),
)


@dataclass
class Person:
    index: int
    mrn: str
    protocol: str
    phase: Phase
    start: date
    weight: float
    genotypes: dict[str, str]
    coordinator: str
    site: str
    lab: Lab
    sex: str
    dob: date
    story: str
    setpoints: dict[str, float] = field(default_factory=dict)  # this person's usual values

    @property
    def drug_from(self) -> date | None:
        """When azathioprine started (None: not yet)."""
        if self.phase is Phase.BASELINE:
            return None
        before = self.phase in (Phase.WITHDRAWAL, Phase.OFF_TREATMENT)
        return self.start - timedelta(days=ON_DRUG_BEFORE_START) if before else self.start

    def on_drug(self, day: date) -> bool:
        began = self.drug_from
        stopped = self.phase is Phase.OFF_TREATMENT and day >= self.start
        return began is not None and began <= day and not stopped


@dataclass
class Counts:
    """What the files hold: cohort.json, and what ingestion must report."""

    patients: int = 0
    lab_rows: int = 0
    draws: int = 0
    corrections: int = 0
    quarantined: int = 0
    held: int = 0
    events: int = 0
    next_day_rows: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    protocols: dict[str, int] = field(default_factory=dict)
    stories: dict[str, int] = field(default_factory=dict)


#: The first patients: every protocol in each of its phases, so a cohort of any size has them all.
COVERED = [(protocol, phase) for protocol, _, phases in PROTOCOLS for phase, _ in phases]


def person(i: int, n: int, today: date, rng: random.Random) -> Person:
    """Patient `i` of `n`: drawn from the shares above (the first ones cover every protocol and
    phase, every TPMT and NUDT15 status and every story)."""
    protocol, _, phases = rng.choices(PROTOCOLS, [share for _, share, _ in PROTOCOLS])[0]
    phase = rng.choices([p for p, _ in phases], [s for _, s in phases])[0]
    genotypes = {gene: rng.choices([g for g, _ in mix], [w for _, w in mix])[0] for gene, mix in GENOTYPES.items()}
    story = rng.choices([s for s, _ in STORIES], [w for _, w in STORIES])[0]
    if i < len(COVERED):
        protocol, phase = COVERED[i]
        statuses = [g for g, _ in GENOTYPES["TPMT"]]
        genotypes = {"TPMT": statuses[i % 4], "NUDT15": statuses[i // 4 % 4]}
        story = "relapse" if phase is Phase.MAINTENANCE and protocol == "aih-azathioprine" else STORIES[i % 7][0]
    start = today - timedelta(days=rng.randint(*DAYS_ON[phase]))
    nurse = i % max(len(SITES), n // PATIENTS_PER_NURSE)
    site = SITES[nurse % len(SITES)]
    if story == "relapse" and (protocol != "aih-azathioprine" or phase not in (Phase.MAINTENANCE,
                                                                                 Phase.LIFELONG_MAINTENANCE)):
        story = "liver" if phase is not Phase.BASELINE else "well"
    if story == "liver" and phase is Phase.BASELINE:
        story = "well"
    sex = rng.choice("FM")
    p = Person(index=i, mrn=f"BN{i + 1:07d}", protocol=protocol, phase=phase, start=start,
               weight=round(rng.uniform(45, 120), 1),
               genotypes=genotypes,
               coordinator=f"nurse{nurse:03d}@{site}.clinic.example", site=site, lab=LABS[SITES.index(site) % 2],
               sex=sex, dob=start - timedelta(days=rng.randint(18 * 365, 85 * 365)), story=story)
    for analyte, (mean, sd) in NORMAL.items():
        p.setpoints[analyte] = max(rng.gauss(mean, sd), mean * 0.5)
    return p


def draw_days(p: Person, today: date, rng: random.Random) -> list[date]:
    """The routine draws over the history and, after a start in it, the baseline and induction
    draws; a lapsed patient's stop months ago."""
    first = today - timedelta(days=HISTORY_DAYS - rng.randint(0, 14))
    last = today - timedelta(days=rng.randint(100, 200) if p.story == "lapsed" else rng.randint(1, 40))
    step = (last - first).days / (ROUTINE_DRAWS - 1)
    days = {min(last, max(first, first + timedelta(days=round(k * step) + rng.randint(-3, 3))))
            for k in range(ROUTINE_DRAWS)}
    if first < p.start <= last:
        days.add(p.start - timedelta(days=rng.randint(1, 7)))
        days.update(d for d in (p.start + timedelta(days=k + rng.randint(-1, 1)) for k in INDUCTION_DRAW_DAYS)
                    if d <= last)
    return sorted(days)


def canonical_value(p: Person, analyte: str, day: date, on_drug: bool, rng: random.Random) -> float:
    """A result on an ordinary day: the person's setpoint, the drug's effect on counts and red
    cells, and in autoimmune hepatitis the active disease at diagnosis or relapse, falling after
    the (re)start of treatment (not for a patient enrolled in withdrawal or off treatment: in remission)."""
    value = p.setpoints[analyte] * rng.gauss(1, VARIATION[analyte])
    if on_drug:
        value *= ON_DRUG.get(analyte, 1.0)
    active = p.protocol == "aih-azathioprine" and p.phase not in (Phase.WITHDRAWAL, Phase.OFF_TREATMENT)
    if active and analyte in ACTIVE and day >= p.start - timedelta(days=30):
        peak, half_life = ACTIVE[analyte]
        days = max((day - p.start).days, 0) * rng.uniform(0.7, 1.3)
        value = max(value, p.setpoints[analyte] + (peak - p.setpoints[analyte]) * 0.5 ** (days / half_life))
    return value


def story_value(p: Person, analyte: str, value: float, before: int, rng: random.Random) -> float:
    """The value on the story's draw (`before` 0) or, for a relapse, the draws before it (ALT rising
    over three draws): low counts, a liver injury."""
    if p.story == "relapse":
        rising = RELAPSE_ALT.get(before)
        return rng.uniform(*rising) if analyte == "ALT" and rising else value
    changed = STORY_VALUES.get(p.story, {}).get(analyte) if before == 0 else None
    return rng.uniform(*changed) if changed else value


@dataclass(frozen=True)
class Column:
    """How a lab prints one analyte: code, unit, the factor to canonical, digits, and its range."""

    key: str
    code: str
    unit: str
    factor: float
    digits: str  # "%.2f": three significant digits of a typical value
    lowest: float  # canonical; smaller values are printed as this (never rounded to 0, never implausible)
    ref_low: str
    ref_high: str

    @classmethod
    def of(cls, analyte: Analyte, lab: Lab, sex: str) -> Column:
        unit = lab.units.get(analyte.key, analyte.unit)
        factor = Catalog.conversion(analyte, unit).factor
        digits = max(0, 2 - math.floor(math.log10(NORMAL[analyte.key][0] / factor)))
        ref = analyte.reference_by_sex.get(sex, analyte.reference) if lab.ranges else None
        return cls(analyte.key, analyte.loinc, unit, factor, f"%.{digits}f",
                   1.5 * max(analyte.plausible.low or 0, 10 ** -digits * factor),
                   "" if ref is None or ref.low is None else f"{ref.low:g}",
                   "" if ref is None or ref.high is None else f"{ref.high:g}")

    def printed(self, canonical: float) -> str:
        return self.digits % (max(canonical, self.lowest) / self.factor)


class Writer:
    """The four files of a cohort, written patient by patient."""

    def __init__(self, folder: Path, library: Library, today: date) -> None:
        self.library, self.catalog, self.today = library, library.catalog, today
        self.files = [open(folder / name, "w", newline="", encoding="utf-8")
                      for name in ("cohort.csv", "labs.csv", "events.csv", "labs-next-day.csv")]
        self.cohort, self.labs, self.events, self.next_day = (csv.writer(f) for f in self.files)
        for w, header in ((self.cohort, COHORT_COLUMNS), (self.labs, LAB_COLUMNS), (self.events, EVENT_COLUMNS),
                          (self.next_day, LAB_COLUMNS)):
            w.writerow(header)
        self.counts = Counts()
        self.columns = {(n, sex): [Column.of(self.catalog.analytes[key], lab, sex) for key in (*lab.analytes, "IGG")]
                        for n, lab in enumerate(LABS) for sex in "FM"}

    def close(self) -> None:
        for f in self.files:
            f.close()

    def patient(self, p: Person, rng: random.Random) -> None:
        c = self.counts
        c.patients += 1
        for tally, key in ((c.phases, p.phase.value), (c.protocols, p.protocol), (c.stories, p.story)):
            tally[key] = tally.get(key, 0) + 1
        self.cohort.writerow([p.mrn, p.protocol, p.start, p.weight, p.genotypes["TPMT"], p.genotypes["NUDT15"],
                              p.coordinator, p.site, p.phase.value, p.dob, p.sex])
        days = draw_days(p, self.today, rng)
        story_at = 0 if rng.random() < 0.6 or p.story == "relapse" else rng.randint(1, min(8, len(days) - 1))
        corrections: list[list[str]] = []
        for n, day in enumerate(days):
            from_end = len(days) - 1 - n
            rows = self.draw(p, day, n, rng, before=from_end - story_at)
            self.labs.writerows(rows)
            c.lab_rows += len(rows)
            c.draws += 1
            if p.lab.accession and rng.random() < CORRECTED:
                row = list(rng.choice(rows))
                value = f"{float(row[3]) * rng.uniform(0.8, 0.95):.{len(row[3].partition('.')[2])}f}"
                if value != row[3] and float(value) > 0:
                    row[3], row[7] = value, "C"
                    corrections.append(row)
        self.labs.writerows(corrections)
        c.lab_rows += len(corrections)
        c.corrections += len(corrections)
        if p.index % NEXT_DAY_EVERY == 0:
            tomorrow = self.today + timedelta(days=1)
            rows = self.draw(p, tomorrow, len(days), rng)
            self.next_day.writerows(rows)
            c.next_day_rows += len(rows)
        events = sorted(self.patient_events(p, days, rng), key=lambda e: e[0])
        self.events.writerows([p.mrn, on, kind, value] for on, kind, value in events)
        c.events += len(events)

    def draw(self, p: Person, day: date, n: int, rng: random.Random, *, before: int = -1) -> list[list[str]]:
        """One draw's rows as the patient's site lab sends them (`before`: how many draws before the
        story's draw this one is; negative: after it)."""
        at = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randint(7 * 60 + 30, 12 * 60))
        when = at.isoformat(timespec="minutes")
        columns = self.columns[LABS.index(p.lab), p.sex]
        if p.protocol != "aih-azathioprine" or n % 2:
            columns = columns[:-1]  # IgG: in every other draw, for autoimmune hepatitis only
        on_drug = p.on_drug(day)
        accession = f"{p.lab.accession}{p.index:07d}{n:03d}-" if p.lab.accession else ""
        rows = []
        for c in columns:
            value = canonical_value(p, c.key, day, on_drug, rng)
            if before >= 0:
                value = story_value(p, c.key, value, before, rng)
            rows.append([p.mrn, when, c.code, c.printed(value), c.unit, c.ref_low, c.ref_high, "",
                         accession and accession + c.code])
        return rows

    def patient_events(self, p: Person, days: list[date], rng: random.Random) -> Iterator[tuple[date, str, str]]:
        """Doses, a re-weighing and an interacting drug, each on or before --today."""
        protocol = self.library.get(p.protocol)
        for on, drug, mg in doses(p, protocol, self.today):
            yield on, "dose", f"{drug}={mg:g}"
        began = p.drug_from
        later = [d for d in days if began is not None and d > began]
        reweighed = [d for d in later if d > p.start]  # the start's weight is the enrollment's
        if reweighed and rng.random() < REWEIGHED:
            yield rng.choice(reweighed), "weight", f"{p.weight * rng.uniform(0.85, 1.15):.1f}"
        if later and rng.random() < ON_INTERACTING_DRUG:
            drug = rng.choice(interacting_drugs(protocol))
            started = rng.choice(later)
            yield started, "med_start", drug
            stopped = started + timedelta(days=rng.randint(14, 90))
            if rng.random() < STOPPED_IT and stopped <= self.today:
                yield stopped, "med_stop", drug

    def deliberate(self, n: int) -> None:
        """Records the product must not store as results: quarantined (a unit no analyte has, a value
        that is not a number) and held (an MRN nobody is enrolled under)."""
        when = f"{self.today - timedelta(days=1)}T23:59"
        wbc = self.catalog.analytes["WBC"]
        self.labs.writerows([["BN0000001", when, wbc.loinc, "6.1", "furlongs", "", "", "", ""],
                             [f"BN{n:07d}", when, wbc.loinc, "see comment", wbc.unit, "", "", "", ""],
                             ["NOTENROLLED1", when, wbc.loinc, "5.9", wbc.unit, "", "", "", ""]])
        self.counts.lab_rows += 3
        self.counts.quarantined += 2
        self.counts.held += 1


def doses(p: Person, protocol: MonitoringProtocol, today: date) -> Iterator[tuple[date, str, float]]:
    """The doses a clinic recorded: the (re)induction table step by step, or the maintenance target
    from when azathioprine started (halved in withdrawal, stopped off treatment); the TPMT/NUDT15
    factor on azathioprine, one tablet for a poor metaboliser."""
    anchor = protocol.safety.anchor_drug
    genetics = protocol.genetics
    intermediate = sum(status == "intermediate" for status in p.genotypes.values())
    factor = 1.0 if genetics is None or not intermediate else (
        genetics.intermediate_factor if intermediate == 1 else genetics.both_intermediate_factor)
    poor = "poor" in p.genotypes.values()

    def tablets(drug: str, mg: float) -> float:
        tablet = protocol.drugs[drug].tablet_mg if drug in protocol.drugs else 1.0
        if drug == anchor:
            mg = tablet if poor else mg * factor
        return 0.0 if mg <= 0 else max(tablet, round(mg / tablet) * tablet)

    began = p.drug_from
    regimen = protocol.induction
    if began is None:
        return
    if regimen is not None and p.phase in regimen.phases:
        for step in regimen.steps:
            on = p.start + timedelta(weeks=step.from_week - 1)
            if on > today:
                return
            scale = min(p.weight / regimen.reference_weight_kg, regimen.max_scale) if step.scale_with_weight else 1
            mg = step.mg_per_kg * p.weight if step.mg_per_kg is not None else step.dose_mg * scale
            yield on, step.drug, tablets(step.drug, mg)
        return
    target = protocol.dose_targets.get(anchor)
    per_kg = protocol.dosing.maintenance_mg_per_kg or (target.min_mg_per_kg if target else 1.0)
    yield began, anchor, tablets(anchor, per_kg * p.weight)
    if p.phase is Phase.WITHDRAWAL:
        yield p.start, anchor, tablets(anchor, per_kg * p.weight / 2)
    elif p.phase is Phase.OFF_TREATMENT:
        yield p.start, anchor, 0.0


def interacting_drugs(protocol: MonitoringProtocol) -> list[str]:
    """Every listed drug a protocol's interaction rules name (a class by its members)."""
    names = {drug for i in protocol.interactions for name in i.drugs
             for drug in (protocol.drug_list.members(name) or (name,))}
    return sorted(d for d in names if protocol.drug_list.canonical(d) and not protocol.drug_list.members(d))


def write_cohort(folder: Path, patients: int, *, seed: int, today: date, library: Library | None = None) -> Counts:
    """Write the cohort's files into `folder` (created if needed) and its cohort.json; the counts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cohort.json").unlink(missing_ok=True)
    writer = Writer(folder, library or packaged_library(), today)
    try:
        for i in range(patients):
            rng = random.Random(f"{seed}:{i}")  # each patient on its own: any one can be made again alone
            writer.patient(person(i, patients, today, rng), rng)
        writer.deliberate(patients)
    finally:
        writer.close()
    manifest = {"seed": seed, "patients": patients, "today": today.isoformat(),
                "tomorrow": (today + timedelta(days=1)).isoformat(), "counts": writer.counts.__dict__}
    (folder / "cohort.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return writer.counts


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A complete cohort folder's cohort.json, or None."""
    path = folder / "cohort.json"
    manifest: dict[str, Any] | None = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return manifest


def clinic_today() -> date:
    return clock.today(load_settings(None).clinic.zone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="the folder to write (its files are replaced)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    args = parser.parse_args()
    counts = write_cohort(args.dir, args.patients, seed=args.seed, today=args.today or clinic_today())
    print(json.dumps(counts.__dict__, sort_keys=True))


if __name__ == "__main__":
    main()
