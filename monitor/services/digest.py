"""Coordinator digests: what each nurse coordinator needs to do on a day, from the stored plan,
queued in the outbox when the day's cycle completes (one per coordinator and date)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func
from sqlalchemy import select as select_rows
from sqlmodel import Session, col, select

from monitor.db.tables import (
    Coordinator,
    DoseStepRow,
    DueDrawRow,
    Enrollment,
    FlagRow,
    OutboxMessage,
    OverduePanelRow,
    Patient,
    ProposalRow,
)
from monitor.domain.digest import (
    UNASSIGNED,
    UPCOMING_DAYS,
    Digest,
    DueLine,
    FlagRecord,
    OverdueLine,
    ProposalLine,
    Since,
    StepLine,
    Who,
    patient_label,
    problem,
    problems,
)
from monitor.domain.items import FlagStatus
from monitor.domain.protocol import Severity
from monitor.notify.mail import Mail
from monitor.notify.render import render
from monitor.services.outbox import Letter, enqueue
from monitor.services.plans import draw_listed, lapse_holds

log = logging.getLogger(__name__)

#: Severities a digest lists one line per problem; the others are counted (`monitor flags` lists them).
LISTED = ("critical", "action")
RANK = {s.value: s.rank for s in Severity}
#: "Since your last digest" looks back this far at most (older: the digest says nothing of it).
SINCE_AT_MOST = timedelta(days=35)


@dataclass(frozen=True)
class _Enrolled:
    coordinator: str
    who: Who
    phase: str


def _people(session: Session, mail: Mail) -> dict[int, _Enrolled]:
    rows = session.execute(select_rows(col(Enrollment.id), col(Enrollment.coordinator), col(Enrollment.phase),
                                       col(Patient.id), col(Patient.mrn), col(Patient.name))
                           .join(Patient, col(Patient.id) == Enrollment.patient_id)
                           .where(col(Enrollment.status) == "active")).all()
    return {eid: _Enrolled(coordinator or UNASSIGNED, who(mail, mrn, name, pid), phase)
            for eid, coordinator, phase, pid, mrn, name in rows if eid is not None}


def who(mail: Mail, mrn: str, name: str | None, patient_id: int | None) -> Who:
    """A patient as e-mails name them (minimal PHI unless turned off), linked with web.base_url."""
    base = mail.base_url.rstrip("/")
    return Who(patient_label(mrn, name, minimal=mail.minimal_phi), f"{base}/patients/{patient_id}" if base else "")


def _acknowledged(session: Session, *, since: date) -> dict[tuple[int, str], int]:
    """Per enrollment and problem, the worst severity (rank) acknowledged since `since`."""
    worst: dict[tuple[int, str], int] = {}
    for eid, kind, analyte, rule_id, severity in session.execute(
            select_rows(col(FlagRow.enrollment_id), col(FlagRow.kind), col(FlagRow.analyte), col(FlagRow.rule_id),
                        col(FlagRow.severity))
            .where(col(FlagRow.status) == FlagStatus.ACKNOWLEDGED,
                   col(FlagRow.acknowledged_at) >= datetime.combine(since, datetime.min.time(), tzinfo=UTC))):
        key = (eid, problem(kind, analyte, rule_id))
        worst[key] = max(worst.get(key, -1), RANK.get(severity, 0))
    return worst


def _last_digests(session: Session, day: date) -> dict[str, tuple[date, datetime]]:
    """Each coordinator's previous digest before `day`: its date and when it was written."""
    recent = datetime.combine(day - SINCE_AT_MOST, datetime.min.time(), tzinfo=UTC)
    rows = session.exec(select(OutboxMessage.key, OutboxMessage.created_at)
                        .where(col(OutboxMessage.kind) == "digest", col(OutboxMessage.created_at) >= recent,
                               col(OutboxMessage.status).not_in(["dead", "cancelled"]))).all()
    last: dict[str, tuple[date, datetime]] = {}
    for key, at in rows:
        _, coordinator, on = key.rsplit("|", 2)
        d = date.fromisoformat(on)
        if d < day and (coordinator not in last or last[coordinator][0] < d):
            last[coordinator] = (d, at)
    return last


def build_digests(session: Session, *, today: date, mail: Mail, coordinator: str | None = None) -> list[Digest]:
    """One digest per coordinator with active enrollments (`coordinator`: that one only), as the
    stored plan reads on `today`."""
    people = _people(session, mail)
    if coordinator is not None:
        people = {eid: p for eid, p in people.items() if p.coordinator == coordinator}
    names = {c.address: c.name for c in session.exec(select(Coordinator)).all() if c.name}
    digests = {p.coordinator: Digest(p.coordinator, names.get(p.coordinator, p.coordinator), today)
               for p in people.values()}
    open_flags = session.exec(select(FlagRow).where(FlagRow.status == FlagStatus.OPEN)).all()
    acks = _acknowledged(session, since=today - timedelta(days=mail.ack_covers_days))
    records: dict[str, list[FlagRecord]] = defaultdict(list)
    for f in open_flags:
        p = people.get(f.enrollment_id)
        if p is None or f.id is None:
            continue
        acked = acks.get((f.enrollment_id, problem(f.kind, f.analyte, f.rule_id)))
        if f.severity != "critical" and acked is not None and RANK.get(f.severity, 0) <= acked:
            digests[p.coordinator].covered += 1  # acknowledged at this severity or worse, lately
            continue
        if f.severity not in LISTED:
            digests[p.coordinator].watching += 1
            continue
        records[p.coordinator].append(FlagRecord(f.id, f.enrollment_id, f.severity, f.kind, f.analyte or "", f.rule_id,
                                                 "" if f.value is None else f"{f.value:g}", f.unit or "",
                                                 f.observed_on, f.why))
    named = {eid: p.who for eid, p in people.items()}
    for name, flags in records.items():
        digests[name].problems = problems(flags, named)
    for o in session.exec(select(OverduePanelRow).where(lapse_holds(today)).order_by(col(OverduePanelRow.since))):
        if (p := people.get(o.enrollment_id)) is not None:
            since = None if o.last_result_on is None else (today - o.last_result_on).days
            digests[p.coordinator].overdue.append(OverdueLine(p.who, o.panel, o.since, p.phase, (today - o.since).days,
                                                              o.draws_unmet, o.last_result_on, since))
    soon = today + timedelta(days=UPCOMING_DAYS)
    for d in session.exec(select(DueDrawRow).where(draw_listed(today), col(DueDrawRow.closes_on) >= today,
                                                   col(DueDrawRow.opens_on) <= soon)
                          .order_by(col(DueDrawRow.due_on), col(DueDrawRow.id))):
        if (p := people.get(d.enrollment_id)) is not None:
            line = DueLine(p.who, d.panel, d.due_on, p.phase)
            (digests[p.coordinator].due if d.opens_on <= today else digests[p.coordinator].upcoming).append(line)
    for s in session.exec(select(DoseStepRow).where(DoseStepRow.status == "due").order_by(col(DoseStepRow.on))):
        if (p := people.get(s.enrollment_id)) is not None:
            digests[p.coordinator].dose_steps.append(StepLine(p.who, s.drug, f"{s.dose_mg:g}", s.on))
    for r in session.exec(select(ProposalRow).order_by(col(ProposalRow.enrollment_id))):
        if (p := people.get(r.enrollment_id)) is not None:
            digests[p.coordinator].proposals.append(ProposalLine(p.who, r.to_phase, r.why))
    _since(session, digests, people, today=today)
    return sorted(digests.values(), key=lambda d: d.coordinator)


def _since(session: Session, digests: dict[str, Digest], people: dict[int, _Enrolled], *, today: date) -> None:
    """What changed since each coordinator's previous digest (its first says nothing)."""
    last = _last_digests(session, today)
    if not last:
        return
    earliest_at = min(at for _, at in last.values())
    earliest_on = min(on for on, _ in last.values())
    new: dict[str, int] = defaultdict(int)
    resolved: dict[str, int] = defaultdict(int)
    overdue: dict[str, int] = defaultdict(int)
    for eid, raised, gone in session.exec(
            select(FlagRow.enrollment_id, FlagRow.raised_at, FlagRow.resolved_at)
            .where((col(FlagRow.raised_at) > earliest_at) | (col(FlagRow.resolved_at) > earliest_at))):
        if (p := people.get(eid)) is not None and p.coordinator in last:
            at = last[p.coordinator][1]
            new[p.coordinator] += raised > at
            resolved[p.coordinator] += gone is not None and gone > at
    for eid, from_on in session.exec(select(OverduePanelRow.enrollment_id, func.max(OverduePanelRow.from_on))
                                     .where(lapse_holds(today), col(OverduePanelRow.from_on) > earliest_on)
                                     .group_by(col(OverduePanelRow.enrollment_id), col(OverduePanelRow.panel))):
        if (p := people.get(eid)) is not None and p.coordinator in last and from_on > last[p.coordinator][0]:
            overdue[p.coordinator] += 1
    for name, digest in digests.items():
        if name in last:
            digest.since = Since(last[name][0], new[name], resolved[name], overdue[name])


def letters(digests: list[Digest], mail: Mail) -> list[Letter]:
    """The digests as outbox letters (an empty one only with `digest.send_empty`)."""
    out = []
    for n, d in enumerate(digests):
        if d.empty and not mail.send_empty:
            continue
        try:
            r = render("digest", digest=d, minimal_phi=mail.minimal_phi)
        except Exception as e:  # a bug: logged, and the other coordinators' digests still go
            log.error("digest %s of %s for %s could not be rendered: %s", n + 1, len(digests), d.day, type(e).__name__)
            continue
        to = mail.unassigned_to if d.coordinator == UNASSIGNED else d.coordinator
        out.append(Letter(d.key, "digest", to, r.subject, r.text, r.html))
    return out


def queue_digests(session: Session, *, today: date, mail: Mail, now: datetime) -> int:
    """Queue the day's digests (in the caller's transaction); how many were new."""
    return enqueue(session, letters(build_digests(session, today=today, mail=mail), mail), sender=mail.sender,
                   now=now)
