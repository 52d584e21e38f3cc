"""The web app's lists: the overdue review (filtered, sorted and paged in the database, so that
100,000 patients cost what one page does), the per-site overdue rate and its trend, and the flag
worklist (snooze, escalate). Every query takes the sites the user may see (None: every site)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, distinct, func, or_
from sqlalchemy import select as select_rows
from sqlmodel import Session, col, select

from monitor.db.tables import Coordinator, Enrollment, FlagRow, OverduePanelRow, Patient, SiteOverdue
from monitor.domain.errors import NotFound, UserError
from monitor.domain.items import FlagStatus
from monitor.domain.protocol import MOST_SEVERE_FIRST, Phase, Severity
from monitor.notify.mail import Mail
from monitor.notify.render import render
from monitor.services.audit import audit
from monitor.services.checks import ACTOR_CHARS, check_text
from monitor.services.digest import who
from monitor.services.outbox import Letter, enqueue
from monitor.services.plans import lapse_holds
from monitor.services.views import flag_view, most_severe_first, site_of

Sites = tuple[str, ...] | None  # None: every site

#: The overdue review's sort keys, each ending with the row's id, so that a page is one walk of an
#: index (`since`) rather than a sort of every overdue row (bench/web.py: 370 ms -> a few at 100,000).
SORTS = {
    "days": (col(OverduePanelRow.since).asc(),),
    "without": (col(OverduePanelRow.last_result_on).asc().nulls_first(),),
    "mrn": (col(Patient.mrn).asc(),),
    "site": (col(Enrollment.site).asc(), col(OverduePanelRow.since).asc()),
    "coordinator": (col(Enrollment.coordinator).asc(), col(OverduePanelRow.since).asc()),
    "phase": (col(Enrollment.phase).asc(), col(OverduePanelRow.since).asc()),
    "panel": (col(OverduePanelRow.panel).asc(), col(OverduePanelRow.since).asc()),
}
#: A page says how many rows match up to this many, then "more than" (counting 130,000 overdue
#: panels costs a third of a second; each site's exact rate is in the trend table).
COUNT_CAP = 10_000


@dataclass(frozen=True)
class OverdueFilter:
    site: str = ""
    coordinator: str = ""
    panel: str = ""
    phase: str = ""
    min_days: int = 0  # overdue for at least this many days
    sort: str = "days"
    page: int = 1

    def checked(self) -> OverdueFilter:
        if self.sort not in SORTS:
            raise UserError(f"sort {self.sort!r} must be one of {', '.join(SORTS)}")
        return replace(self, min_days=max(0, min(self.min_days, 36500)), page=max(1, min(self.page, 1_000_000)))


def _at(sites: tuple[str, ...]) -> ColumnElement[bool]:
    """Enrollments at one of these sites ("": those without a site)."""
    return site_of().in_(list(sites))


def _seen(sites: Sites) -> ColumnElement[bool]:
    """Enrollments the user may see: active, at one of their sites."""
    active = col(Enrollment.status) == "active"
    return active if sites is None else and_(active, _at(sites))


def _overdue_query(f: OverdueFilter, *, today: date, sites: Sites) -> Any:
    """The filter as a query of plain columns (no ORM objects: an export streams 100,000s of rows)."""
    o, e = OverduePanelRow, Enrollment
    query = (select_rows(col(o.since), col(o.panel), col(o.draws_unmet), col(o.last_result_on), col(o.rule_id),
                         col(o.why), col(Patient.id), col(Patient.mrn), col(e.phase), col(e.coordinator), col(e.site))
             .join(Enrollment, col(Enrollment.id) == OverduePanelRow.enrollment_id)
             .join(Patient, col(Patient.id) == Enrollment.patient_id)
             .where(_seen(sites), lapse_holds(today)))
    if f.site:
        query = query.where(_at(("" if f.site == "-" else f.site,)))
    if f.coordinator:
        query = query.where(col(Enrollment.coordinator) == f.coordinator)
    if f.panel:
        query = query.where(col(OverduePanelRow.panel) == f.panel)
    if f.phase:
        query = query.where(col(Enrollment.phase) == f.phase)
    if f.min_days:
        query = query.where(col(OverduePanelRow.since) <= today - timedelta(days=f.min_days))
    return query


def _row(since: date, panel: str, unmet: int, last: date | None, rule_id: str, why: str, pid: int, mrn: str,
         phase: str, coordinator: str | None, site: str | None, *, today: date) -> dict[str, Any]:
    return {"patient_id": pid, "mrn": mrn, "panel": panel, "due_on": since.isoformat(),
            "days_overdue": (today - since).days, "draws_unmet": unmet,
            "last_result_on": None if last is None else last.isoformat(),
            "days_without_result": None if last is None else (today - last).days,
            "phase": phase, "coordinator": coordinator, "site": site, "rule_id": rule_id, "why": why}


def overdue_page(session: Session, f: OverdueFilter, *, today: date, sites: Sites,
                 page_size: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the overdue review and how many rows the filter matches, up to COUNT_CAP + 1
    (more than COUNT_CAP)."""
    f = f.checked()
    query = _overdue_query(f, today=today, sites=sites)
    matching = query.with_only_columns(col(OverduePanelRow.id)).limit(COUNT_CAP + 1).subquery()
    total = session.execute(select_rows(func.count()).select_from(matching)).scalar_one()
    ordered = query.order_by(*SORTS[f.sort], col(OverduePanelRow.id))
    rows = session.execute(ordered.limit(page_size).offset((f.page - 1) * page_size)).all()
    return [_row(*r, today=today) for r in rows], total


def overdue_all(session: Session, f: OverdueFilter, *, today: date, sites: Sites) -> Iterator[dict[str, Any]]:
    """Every row the filter matches, in its order, streamed (the CSV export)."""
    f = f.checked()
    query = _overdue_query(f, today=today, sites=sites).order_by(*SORTS[f.sort], col(OverduePanelRow.id))
    for r in session.execute(query.execution_options(yield_per=2000)):
        yield _row(*r, today=today)


def choices(session: Session, *, sites: Sites, panels: list[str]) -> dict[str, list[str]]:
    """What the overdue review's filters offer: the sites and coordinators there are (walks of
    their indexes), every phase, and the protocols' panels."""
    def values(column: Any) -> list[str]:
        query = select_rows(column).distinct()
        if sites is not None:
            query = query.where(_at(sites))
        return sorted(v or "-" for (v,) in session.execute(query))

    return {"site": values(col(Enrollment.site)), "coordinator": [c for c in values(col(Enrollment.coordinator))
                                                                    if c != "-"],
            "phase": [p.value for p in Phase], "panel": sorted(panels)}


# -- the per-site rate (PINCER-style: the share of enrolled patients with an overdue draw) --------

def unknown_sites(session: Session, sites: tuple[str, ...]) -> list[str]:
    """Those of `sites` no enrollment names (a typo, or a site with no patient yet)."""
    known = set(_sites(session, None))
    return [site for site in sites if site not in known]


def _sites(session: Session, sites: Sites) -> list[str]:
    """The sites of enrollments the user may see ("" for none), a walk of the site index."""
    query = select_rows(site_of()).distinct()
    if sites is not None:
        query = query.where(_at(sites))
    return [site for (site,) in session.execute(query)]


def site_counts(session: Session, *, today: date, sites: Sites) -> dict[str, tuple[int, int]]:
    """Per site: active enrollments, and how many of them have an overdue or missed draw today."""
    site = site_of()
    enrolled = dict(session.execute(select_rows(site, func.count()).where(_seen(sites)).group_by(site)).all())
    late = dict(session.execute(
        select_rows(site, func.count(distinct(col(Enrollment.id))))
        .join(OverduePanelRow, col(OverduePanelRow.enrollment_id) == Enrollment.id)
        .where(_seen(sites), lapse_holds(today)).group_by(site)).all())
    return {s: (n, late.get(s, 0)) for s, n in sorted(enrolled.items())}


def record_site_counts(session: Session, *, today: date) -> int:
    """Store today's per-site counts (the trend the overdue review draws), in the caller's
    transaction; called when the day's cycle closes. Idempotent for the day."""
    counts = site_counts(session, today=today, sites=None)
    for site, (enrolled, late) in counts.items():
        row = session.get(SiteOverdue, (today, site))
        if row is None:
            session.add(SiteOverdue(on=today, site=site, enrolled=enrolled, overdue=late))
        else:
            row.enrolled, row.overdue = enrolled, late
    return len(counts)


def site_trends(session: Session, *, today: date, sites: Sites, weeks: int = 12) -> list[dict[str, Any]]:
    """Per site: the rate as of the last closed day (the plans the review shows), and one point a
    week for the last `weeks` weeks (the closed day on or before each week's date; None for a week
    with none). Before any day was closed, the rate is counted now."""
    start = today - timedelta(weeks=weeks)
    query = select(SiteOverdue).where(col(SiteOverdue.on) >= start - timedelta(days=6),
                                      col(SiteOverdue.on) <= today)
    if sites is not None:
        query = query.where(col(SiteOverdue.site).in_(list(sites)))
    history: dict[str, dict[date, SiteOverdue]] = {}
    for row in session.exec(query):
        history.setdefault(row.site, {})[row.on] = row
    current = {}
    for site, days in history.items():
        last = days[max(days)]
        current[site] = (last.enrolled, last.overdue)
    # A site with no closed day in the window (new, or before the first close) is counted now.
    missing = tuple(site for site in _sites(session, sites) if site not in current)
    if missing:
        current.update(site_counts(session, today=today, sites=missing))
    out = []
    for site, (enrolled, late) in sorted(current.items()):
        days = history.get(site, {})
        points: list[float | None] = []
        for week in range(weeks, -1, -1):
            on = today - timedelta(weeks=week)
            found = next((days[d] for d in (on - timedelta(days=k) for k in range(7)) if d in days), None)
            points.append(None if found is None or not found.enrolled else found.overdue / found.enrolled)
        out.append({"site": site or "-", "enrolled": enrolled, "overdue": late,
                    "rate": late / enrolled if enrolled else 0.0, "weekly": points})
    return out


# -- the flag worklist ---------------------------------------------------------------------------

def worklist(session: Session, *, today: date, sites: Sites, snoozed: bool = False, site: str = "",
             coordinator: str = "", page: int = 1, page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """A page of the open flags, one line per patient and problem (kind and analyte, or rule: as
    `views.by_problem`), most severe first, then the latest; and how many problems there are.
    The problems are grouped, counted and paged in the database, then only the page's flags are
    read (46,000 open flags at 100,000 patients: ~0.2 s, not 1.2 s with window functions).
    Snoozed flags (until a later date) only when asked for; of one site or coordinator when asked."""
    f = FlagRow
    asleep = and_(col(f.snoozed_until).is_not(None), col(f.snoozed_until) > today)
    wanted = [_seen(sites), col(f.status) == FlagStatus.OPEN,
              asleep if snoozed else or_(col(f.snoozed_until).is_(None), ~asleep)]
    if site:
        wanted.append(_at(("" if site == "-" else site,)))
    if coordinator:
        wanted.append(col(Enrollment.coordinator) == coordinator)
    about = func.coalesce(col(f.analyte), col(f.rule_id))
    worst = func.min(most_severe_first(col(f.severity)))
    latest = func.max(col(f.observed_on))
    groups = (select_rows(col(f.enrollment_id), col(f.kind), about, worst, func.count(), func.min(col(f.observed_on)))
              .join(Enrollment, col(Enrollment.id) == f.enrollment_id).where(*wanted)
              .group_by(col(f.enrollment_id), col(f.kind), about))
    keys = groups.with_only_columns(col(f.enrollment_id))  # (counting needs no aggregate)
    total = session.execute(select_rows(func.count()).select_from(keys.subquery())).scalar_one()
    page_groups = session.execute(groups.order_by(worst, latest.desc(), col(f.enrollment_id), col(f.kind), about)
                                  .limit(page_size).offset((page - 1) * page_size)).all()
    if not page_groups:
        return [], total
    flags: dict[tuple[int, str, str], Any] = {}
    for row in session.execute(
            select_rows(f, col(Patient.id), col(Patient.mrn), col(Enrollment.site), col(Enrollment.coordinator))
            .join(Enrollment, col(Enrollment.id) == f.enrollment_id)
            .join(Patient, col(Patient.id) == Enrollment.patient_id)
            .where(*wanted, col(f.enrollment_id).in_({g[0] for g in page_groups}))):
        flag = row[0]
        key = (flag.enrollment_id, flag.kind, flag.analyte or flag.rule_id)
        if key not in flags or (flag.observed_on, flag.id) > (flags[key][0].observed_on, flags[key][0].id):
            flags[key] = row  # the problem's latest flag
    by_rank = {rank: name for name, rank in MOST_SEVERE_FIRST.items()}
    lines = []
    for eid, kind, subject, rank, results, first_on in page_groups:
        flag, pid, mrn, at, coordinator_ = flags[(eid, kind, subject)]
        lines.append({**flag_view(flag), "severity": by_rank.get(rank, "watch"), "results": results,
                      "first_observed_on": first_on.isoformat(), "patient_id": pid, "mrn": mrn, "site": at,
                      "coordinator": coordinator_,
                      "snoozed_until": None if flag.snoozed_until is None else flag.snoozed_until.isoformat(),
                      "snooze_reason": flag.snooze_reason})
    return lines, total


def flag_in_sites(session: Session, flag_id: int, sites: Sites) -> FlagRow:
    """The flag, if the user may see its patient (NotFound otherwise, as if it did not exist)."""
    found = session.execute(select_rows(FlagRow, col(Enrollment.site))
                            .join(Enrollment, col(Enrollment.id) == FlagRow.enrollment_id)
                            .where(col(FlagRow.id) == flag_id)).first()
    if found is None or (sites is not None and (found[1] or "") not in sites):
        raise NotFound(f"no flag with id {flag_id}")
    flag: FlagRow = found[0]
    return flag


NOTE_CHARS = 500  # a note or reason typed in a form


def typed(text: str, what: str) -> str:
    text = text.strip()
    if len(text) > NOTE_CHARS:
        raise UserError(f"the {what} is too long: at most {NOTE_CHARS} characters")
    return text


def snooze(session: Session, flag_id: int, *, until: date, reason: str, by: str, today: date, now: datetime,
           max_days: int, sites: Sites) -> FlagRow:
    """Take an open flag off the worklist until a date (at most `max_days` ahead), saying why. It
    stays open: it is still in the patient's page, the digest and the alerts. A critical flag is
    never snoozed, and a snoozed one is not snoozed again before it comes back."""
    check_text(by, "by", ACTOR_CHARS)
    flag = flag_in_sites(session, flag_id, sites)
    if flag.status != FlagStatus.OPEN:
        raise UserError(f"flag {flag_id} is {flag.status}; only an open flag can be snoozed")
    if flag.severity == Severity.CRITICAL:
        raise UserError(f"flag {flag_id} is critical: it stays on the worklist until it is acknowledged "
                        "(escalate it if you cannot act on it now)")
    if flag.snoozed_until is not None and flag.snoozed_until > today:
        raise UserError(f"flag {flag_id} is snoozed until {flag.snoozed_until}; it may be snoozed again when it "
                        "comes back")
    reason = typed(reason, "reason")
    if not reason:
        raise UserError("a reason is required: say what you are waiting for")
    if not today < until <= today + timedelta(days=max_days):
        raise UserError(f"snooze until a date after today and at most {max_days} days ahead "
                        f"(by {(today + timedelta(days=max_days)).isoformat()})")
    before = None if flag.snoozed_until is None else flag.snoozed_until.isoformat()
    flag.snoozed_until, flag.snooze_reason = until, reason
    # (the reason is in the flag's row; the audit trail, which nobody can edit, keeps only its length)
    audit(session, actor=by, action="snooze", entity="flag", entity_id=flag_id, now=now,
          before={"snoozed_until": before}, after={"snoozed_until": until.isoformat(), "reason_chars": len(reason)})
    return flag


def escalate(session: Session, flag_id: int, *, note: str, by: str, mail: Mail, now: datetime,
             sites: Sites) -> str:
    """E-mail an open flag now to its coordinator's escalation address (or the coordinator when
    there is none), through the outbox; the address it goes to."""
    check_text(by, "by", ACTOR_CHARS)
    flag = flag_in_sites(session, flag_id, sites)
    if flag.status != FlagStatus.OPEN:
        raise UserError(f"flag {flag_id} is {flag.status}; only an open flag is escalated")
    note = typed(note, "note")
    enrollment = session.get(Enrollment, flag.enrollment_id)
    assert enrollment is not None
    patient = session.get(Patient, enrollment.patient_id)
    assert patient is not None
    coordinator = session.get(Coordinator, enrollment.coordinator) if enrollment.coordinator else None
    to = (coordinator and coordinator.escalation_address) or enrollment.coordinator or mail.unassigned_to
    if not to:
        raise UserError("nobody to escalate to: the enrollment has no coordinator and digest.unassigned_to is empty")
    r = render("escalation", flag=flag, who=who(mail, patient.mrn, patient.name, patient.id), hours="",
               coordinator=enrollment.coordinator or "", by=by, note=note)
    key = f"escalation|{flag_id}|by|{now.isoformat(timespec='seconds')}"
    enqueue(session, [Letter(key, "escalation", to, r.subject, r.text, r.html, flag_id)], sender=mail.sender, now=now)
    audit(session, actor=by, action="escalate", entity="flag", entity_id=flag_id, now=now, note_chars=len(note))
    return to
