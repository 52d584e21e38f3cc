"""A coordinator's digest: what one nurse coordinator needs to do on one day, most dangerous first.

Plain values the daily cycle's stored plan is turned into (services/digest.py) and the e-mail
templates render (templates/email/); never ORM objects. Open flags are shown one line per problem
(`Problem`): a patient's four high MCVs are one line with the latest value and the count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from monitor.domain.protocol import MOST_SEVERE_FIRST

#: The digest of enrollments without a coordinator.
UNASSIGNED = "unassigned"
#: Draws due within this many days after today are listed as coming up.
UPCOMING_DAYS = 7


def initials(name: str | None) -> str:
    """"Jane Q. Smith" -> "J.Q.S."; "SMITH^JANE" (HL7 order) -> "J.S."; none -> ""."""
    if not name:
        return ""
    parts = name.split("^")
    if len(parts) > 1:  # family^given^middle
        parts = [*parts[1:], parts[0]]
    words = [w for p in parts for w in p.replace(",", " ").split()]
    return "".join(f"{w[0].upper()}." for w in words if w[0].isalpha())


def patient_label(mrn: str, name: str | None, *, minimal: bool) -> str:
    """How a patient is named in an e-mail: minimal PHI shows initials and the MRN's last four characters."""
    if minimal:
        return " ".join(x for x in (initials(name), f"…{mrn[-4:]}") if x)
    return f"{mrn} {name}" if name else mrn


@dataclass(frozen=True)
class Who:
    label: str
    link: str  # "" without web.base_url


@dataclass(frozen=True)
class Problem:
    """One open problem: the open flags of a patient under one rule (kind and analyte), as one line."""

    who: Who
    flag_id: int  # the latest flag: `monitor ack ID` acknowledges the problem
    severity: str  # the worst of its open flags
    kind: str
    analyte: str
    value: str  # the latest result's, "" when the flag carries none
    unit: str
    first_on: date
    latest_on: date
    results: int
    why: str  # the latest flag's


@dataclass(frozen=True)
class FlagRecord:
    """An open flag as the digest reads it."""

    id: int
    enrollment_id: int
    severity: str
    kind: str
    analyte: str  # "" for a flag about no one result
    rule_id: str
    value: str
    unit: str
    observed_on: date
    why: str


def problem(kind: str, analyte: str | None, rule_id: str) -> str:
    """What flags are one problem about, within an enrollment: a kind of finding in one analyte
    (four high MCVs), or the rule of a flag about no one result."""
    return f"{kind}@{analyte or rule_id}"


def problems(flags: Iterable[FlagRecord], who: dict[int, Who]) -> list[Problem]:
    """Open flags grouped one line per patient and problem, most severe first."""
    groups: dict[tuple[int, str], list[FlagRecord]] = {}
    for f in flags:
        groups.setdefault((f.enrollment_id, problem(f.kind, f.analyte, f.rule_id)), []).append(f)
    lines = []
    for (eid, _), group in groups.items():
        group.sort(key=lambda f: (f.observed_on, f.id))
        latest = group[-1]
        worst = min((f.severity for f in group), key=lambda s: MOST_SEVERE_FIRST.get(s, 1))
        lines.append(Problem(who[eid], latest.id, worst, latest.kind, latest.analyte, latest.value, latest.unit,
                             group[0].observed_on, latest.observed_on, len(group), latest.why))
    lines.sort(key=lambda p: (MOST_SEVERE_FIRST.get(p.severity, 1), p.who.label, p.kind))
    return lines


@dataclass(frozen=True)
class OverdueLine:
    """A panel whose latest required draw is unmet, since `due_on`."""

    who: Who
    panel: str
    due_on: date
    phase: str
    days_overdue: int
    draws_unmet: int
    last_result_on: date | None
    days_since_result: int | None


@dataclass(frozen=True)
class DueLine:
    who: Who
    panel: str
    due_on: date
    phase: str


@dataclass(frozen=True)
class StepLine:
    who: Who
    drug: str
    dose_mg: str
    on: date


@dataclass(frozen=True)
class ProposalLine:
    """A phase change the plan proposes, waiting for a clinician (`monitor phase`)."""

    who: Who
    to_phase: str
    why: str


@dataclass(frozen=True)
class Since:
    """What changed since the coordinator's previous digest."""

    last: date | None  # the previous digest's date; None: this is the first
    new_flags: int = 0
    resolved_flags: int = 0
    newly_overdue: int = 0


@dataclass
class Digest:
    coordinator: str  # the address, or UNASSIGNED
    name: str  # how the coordinator is greeted
    day: date
    problems: list[Problem] = field(default_factory=list)
    overdue: list[OverdueLine] = field(default_factory=list)
    due: list[DueLine] = field(default_factory=list)
    upcoming: list[DueLine] = field(default_factory=list)
    dose_steps: list[StepLine] = field(default_factory=list)
    proposals: list[ProposalLine] = field(default_factory=list)
    since: Since = Since(None)
    watching: int = 0  # open flags of watch severity, counted, not listed
    covered: int = 0  # open flags of a problem acknowledged lately at their severity or worse

    @property
    def critical_count(self) -> int:
        return sum(p.severity == "critical" for p in self.problems)

    @property
    def empty(self) -> bool:
        return not (self.problems or self.overdue or self.due or self.upcoming or self.dose_steps or self.proposals)

    @property
    def key(self) -> str:
        """The digest's natural key: one per coordinator and day."""
        return f"digest|{self.coordinator}|{self.day.isoformat()}"
