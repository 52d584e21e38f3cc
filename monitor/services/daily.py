"""The daily cycle: evaluate enrollments due for review and write their plans idempotently."""

from __future__ import annotations

import logging
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from monitor.db.snapshots import load_snapshots
from monitor.db.tables import (
    Enrollment,
    FlagRow,
    HeldResult,
    PhaseEpisode,
)
from monitor.db.upsert import insert_ignore
from monitor.domain.items import Flag, FlagStatus
from monitor.domain.plan import Plan, evaluate
from monitor.domain.protocol import Severity
from monitor.ingest.records import record_key
from monitor.logs import fields
from monitor.notify.mail import Mail
from monitor.protocols import Library
from monitor.services import runs
from monitor.services.alerts import queue_alerts
from monitor.services.audit import SYSTEM, audit
from monitor.services.digest import queue_digests
from monitor.services.plans import (
    DRAWS,
    LAPSES,
    PROPOSALS,
    STEPS,
    BatchRows,
    draw_values,
    lapse_values,
    proposal_values,
    step_values,
)
from monitor.services.quarantine_rows import keep
from monitor.services.review import settle
from monitor.services.worklists import record_site_counts

log = logging.getLogger(__name__)

BATCH = 500
DEFAULT_MAIL = Mail()  # the settings' defaults (minimal PHI)
AUTOMATIC = "monitor (automatic rule)"


@dataclass
class RunReport:
    run_on: date
    evaluated: int = 0
    failed: int = 0
    flags_raised: int = 0
    flags_resolved: int = 0
    rows_changed: int = 0
    held_expired: int = 0
    digests: int = 0  # queued in the outbox when the day closed
    requeued: int = 0  # new input arrived while evaluating: left due for the next run
    new_flag_ids: list[int] = field(default_factory=list)  # raised or re-opened
    failed_ids: list[int] = field(default_factory=list)  # enrollments that could not be evaluated
    run_id: int | None = None  # the day's job_run row
    done: bool = False  # the day's cycle is complete
    left: int = 0  # due enrollments left when this process finished (other processes hold them)
    stopped: bool = False  # told to stop before the day was done

    def add(self, other: RunReport) -> None:
        for name in ("evaluated", "failed", "flags_raised", "flags_resolved", "rows_changed", "requeued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.new_flag_ids += other.new_flag_ids
        self.failed_ids += other.failed_ids

    def counts(self) -> dict[str, int]:
        """What a committed batch adds to the day's row (its failures are counted as they are marked)."""
        return {name: getattr(self, name) for name in runs.COUNTS if name != "failed"}

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.run_on.isoformat(), "evaluated": self.evaluated, "failed": self.failed,
                "flags_raised": self.flags_raised, "flags_resolved": self.flags_resolved,
                "rows_changed": self.rows_changed, "held_expired": self.held_expired, "digests": self.digests,
                "requeued": self.requeued,
                "failed_enrollments": self.failed_ids[:100]}


def _assign(row: Any, values: dict[str, Any]) -> bool:
    """Set the values that differ; whether any did."""
    differ = {k: v for k, v in values.items() if getattr(row, k) != v}
    for k, v in differ.items():
        setattr(row, k, v)
    return bool(differ)


def _flag_values(f: Flag) -> dict[str, Any]:
    return {"kind": f.kind, "severity": f.severity, "analyte": f.analyte, "value": f.value, "unit": f.unit,
            "observed_on": f.observed_on, "result_id": f.result_id, "rule_id": f.rule_id, "why": f.why}


def _reopens(row: FlagRow, flag: Flag) -> bool:
    """A resolved flag met again (its result corrected back), or an acknowledged one now worse."""
    return row.status == FlagStatus.RESOLVED or (
        row.status == FlagStatus.ACKNOWLEDGED and Severity(flag.severity).rank > Severity(row.severity).rank)


def sync_flags(session: Session, eid: int, plan: Plan, rows: Sequence[FlagRow], *,
               now: datetime) -> tuple[int, list[int], int]:
    """Flags by key: new ones added, changed ones updated (a corrected result), resolved ones
    closed with the why. Returns (rows changed, ids raised or re-opened, how many resolved)."""
    stored = {row.key: row for row in rows}
    fresh = [{**_flag_values(f), "enrollment_id": eid, "key": f.key, "status": FlagStatus.OPEN, "raised_at": now}
             for f in plan.flags if f.key not in stored]
    raised = insert_ignore(session, FlagRow, fresh, ["enrollment_id", "key"])
    changed = len(raised)
    for f in plan.flags:
        row = stored.get(f.key)
        if row is None:
            continue
        if _reopens(row, f):
            row.status, row.raised_at = FlagStatus.OPEN, now
            row.acknowledged_at = row.acknowledged_by = row.ack_reason = row.resolved_at = row.resolution = None
            assert row.id is not None
            raised.append(row.id)
            changed += 1
        if _assign(row, _flag_values(f)):
            changed += 1
    resolved = 0
    for r in plan.resolved:
        row = stored.get(r.key)
        if row is not None and row.status == FlagStatus.OPEN:
            row.status, row.resolved_at, row.resolution = FlagStatus.RESOLVED, now, r.why
            resolved += 1
    return changed + resolved, raised, resolved


@dataclass
class _Stored:
    """A batch's stored plan rows (flags as ORM rows: their status is kept), the changes to write,
    and the review dates to settle."""

    draws: BatchRows
    steps: BatchRows
    lapses: BatchRows
    proposals: BatchRows
    flags: dict[int, list[FlagRow]]
    settles: list[dict[str, Any]] = field(default_factory=list)  # review dates (services/review.py)

    @classmethod
    def load(cls, session: Session, ids: Sequence[int]) -> _Stored:
        flags: dict[int, list[FlagRow]] = defaultdict(list)
        for row in session.exec(select(FlagRow).where(col(FlagRow.enrollment_id).in_(ids))).all():
            flags[row.enrollment_id].append(row)
        return cls(DRAWS.batch(session, ids), STEPS.batch(session, ids), LAPSES.batch(session, ids),
                   PROPOSALS.batch(session, ids), flags)

    def flush(self, session: Session) -> int:
        """Write the batch's plan rows and review dates; how many enrollments were requeued (new
        input arrived while they were evaluated)."""
        for rows in (self.draws, self.steps, self.lapses, self.proposals):
            rows.flush(session)
        return len(self.settles) - settle(session, self.settles)


def apply_plan(session: Session, enrollment: Enrollment, plan: Plan, stored: _Stored, report: RunReport, *,
               now: datetime) -> None:
    """Write one plan: due draws, overdue panels, dose steps and proposals replaced by key, flags synced by
    key, and the review date — unless new input arrived since the enrollment was read. The plan
    rows and review dates of a batch are written together (`_Stored.flush`)."""
    eid = enrollment.id
    assert eid is not None
    changed = 0
    for change in plan.phase_changes:  # automatic transitions become part of the history
        session.add(PhaseEpisode(enrollment_id=eid, phase=change.to_phase.value, started_on=change.on,
                                 reason=change.why, confirmed_by=AUTOMATIC))
        enrollment.phase, enrollment.phase_since = change.to_phase.value, change.on
        changed += 1
    changed += stored.draws.sync(eid, [draw_values(d) for d in plan.drawn.draws])
    changed += stored.steps.sync(eid, [step_values(s) for s in plan.dose_steps])
    changed += stored.lapses.sync(eid, [lapse_values(p) for p in plan.drawn.lapses])
    changed += stored.proposals.sync(eid, [proposal_values(p) for p in plan.proposals])
    flags_changed, raised, resolved = sync_flags(session, eid, plan, stored.flags[eid], now=now)
    stored.settles.append({"eid": eid, "seen": enrollment.revision, "next_review_on": plan.next_review_on,
                           "evaluated_on": plan.as_of})
    report.evaluated += 1
    report.rows_changed += changed + flags_changed
    report.flags_raised += len(raised)
    report.flags_resolved += resolved
    report.new_flag_ids += raised


def _failed(report: RunReport, enrollment_id: int, error: BaseException) -> None:
    """Log a failed enrollment by id, with the error's type and where it was raised (never its
    message or values: they may hold patient data)."""
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f"{frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else "?"
    log.error("enrollment %s could not be evaluated: %s at %s", enrollment_id, type(error).__name__, where)
    report.failed += 1
    report.failed_ids.append(enrollment_id)


def _evaluate(session: Session, library: Library, ids: Sequence[int], report: RunReport, *, today: date,
              now: datetime) -> None:
    # The enrollments (with their revisions) are read before the data their plans come from.
    enrollments = session.exec(select(Enrollment).where(col(Enrollment.id).in_(ids)).order_by(col(Enrollment.id))
                               .execution_options(populate_existing=True)).all()
    snapshots = load_snapshots(session, enrollments, today=today)
    stored = _Stored.load(session, ids)
    for enrollment in enrollments:
        assert enrollment.id is not None
        try:
            plan = evaluate(snapshots[enrollment.id], library.get(enrollment.protocol_id), today=today)
        except Exception as e:  # one bad enrollment never stops the others; retried next run
            _failed(report, enrollment.id, e)
            continue
        apply_plan(session, enrollment, plan, stored, report, now=now)
    report.requeued += stored.flush(session)


def evaluate_enrollments(session: Session, library: Library, ids: Sequence[int], report: RunReport, *,
                         today: date, now: datetime, mail: Mail = DEFAULT_MAIL,
                         on_commit: Callable[[RunReport], None] | None = None) -> None:
    """Evaluate these enrollments and write their plans, committed together with the alerts of
    the critical flags they raise (and what `on_commit(counts)` adds to the transaction). If the
    batch fails anywhere (loading, evaluating, writing), it is rolled back and each enrollment is
    tried alone: one that fails is logged by id, counted and skipped; the others are written."""
    part = RunReport(run_on=today)
    try:
        _evaluate(session, library, ids, part, today=today, now=now)
        queue_alerts(session, part.new_flag_ids, mail=mail, now=now)
        if on_commit is not None:
            on_commit(part)
        session.commit()
    except Exception as e:
        session.rollback()
        if len(ids) == 1:
            _failed(report, ids[0], e)
            return
        for eid in ids:
            evaluate_enrollments(session, library, [eid], report, today=today, now=now, mail=mail,
                                 on_commit=on_commit)
        return
    report.add(part)


def evaluate_patients(session: Session, library: Library, patient_ids: Iterable[int], *, today: date,
                      now: datetime, mail: Mail = DEFAULT_MAIL) -> int:
    """Evaluate these patients' active enrollments now (committed, with the alerts of their
    critical flags); return how many critical flags were raised or re-opened."""
    ids = session.exec(select(Enrollment.id).where(col(Enrollment.patient_id).in_(list(patient_ids)),
                                                   Enrollment.status == "active").order_by(col(Enrollment.id))).all()
    report = RunReport(run_on=today)
    evaluate_enrollments(session, library, [i for i in ids if i is not None], report, today=today, now=now,
                         mail=mail)
    if not report.new_flag_ids:
        return 0
    return len(session.exec(select(FlagRow.id).where(col(FlagRow.id).in_(report.new_flag_ids),
                                                     FlagRow.severity == "critical")).all())


def expire_held(session: Session, *, today: date, now: datetime) -> int:
    """Held results past their hold move to quarantine (with the reason), never silently away."""
    expired = session.exec(select(HeldResult).where(col(HeldResult.expires_on) < today)).all()
    rows = [{"record_key": record_key("held", h.source_key), "format": "held", "origin": h.source_key[:255],
             "parts": [], "raw": h.model_dump_json(exclude={"id"}), "at": now,
             "reason": f"held until {h.expires_on} and no enrollment arrived for this MRN; "
                       "enroll the patient, then replay"} for h in expired]
    keep(session, rows, {})
    if expired:
        session.execute(delete(HeldResult).where(col(HeldResult.id).in_([h.id for h in expired])))
    return len(expired)


@dataclass
class _Cycle:
    """One process's part in a day's cycle (run_daily)."""

    session: Session
    library: Library
    report: RunReport
    mail: Mail
    now: datetime
    clock: Callable[[], datetime]
    by: str
    batch: int
    lease: timedelta
    stop: Callable[[], bool]
    progress: Callable[[int, int], None] | None
    total: int

    @property
    def run_id(self) -> int:
        assert self.report.run_id is not None
        return self.report.run_id

    def count(self, counts: dict[str, int]) -> None:
        """Add counts to the day's row, in the current transaction; the run's lease is renewed."""
        runs.add_batch(self.session, self.run_id, counts, by=self.by, lease_until=self.clock() + self.lease)

    def one_pass(self) -> bool:
        """Claim and evaluate batches in id order until none is left to claim; whether any was."""
        s, today, cursor, claimed = self.session, self.report.run_on, 0, False
        while not self.stop():
            ids = runs.claim(s, today=today, now=self.clock(), by=self.by, lease=self.lease, after=cursor,
                             limit=self.batch)
            s.commit()
            if not ids:
                break
            claimed, cursor = True, ids[-1]
            before = len(self.report.failed_ids)
            evaluate_enrollments(s, self.library, ids, self.report, today=today, now=self.now, mail=self.mail,
                                 on_commit=lambda part: self.count(part.counts()))
            if failed := self.report.failed_ids[before:]:
                runs.mark_failed(s, failed, today=today)
                self.count({"failed": len(failed)})
                s.commit()
            log.debug("daily cycle %s: %s evaluated enrollments %s", today, self.by, ids,
                      extra=fields(event="batch", date=today, by=self.by, enrollment_ids=ids))
            if self.progress is not None:
                done = self.report.evaluated + self.report.failed
                self.progress(done, max(done, self.total))
        return claimed

    def close_day(self) -> None:
        """The day is done when nothing due is left; the process that finds so closes its row,
        expires held results and queues the coordinators' digests, once a day, in that transaction.
        Otherwise other processes hold what is left."""
        s, report = self.session, self.report

        def closing() -> dict[str, int]:
            report.held_expired = expire_held(s, today=report.run_on, now=self.now)
            report.digests = queue_digests(s, today=report.run_on, mail=self.mail, now=self.clock())
            record_site_counts(s, today=report.run_on)  # the overdue review's per-site trend
            return {"held_expired": report.held_expired, "digests": report.digests}

        report.done = runs.complete(s, self.run_id, today=report.run_on, finished=self.clock(), closing=closing)
        if not report.done:
            report.left = runs.due_count(s, today=report.run_on)

    def leave(self, status: str, reason: str) -> None:
        """Stop before the day is done: this process's claims released, the row saying why."""
        runs.release(self.session, by=self.by)
        runs.leave(self.session, self.run_id, status, reason, at=self.clock())


def day_report(session: Session, *, today: date) -> RunReport:
    """The day's cycle as its `job_run` row counts it, over every process that worked on it."""
    row = runs.day(session, "daily", today.isoformat())
    stats = row.stats if row is not None else {}
    report = RunReport(run_on=today, **{name: stats.get(name, 0) for name in (*runs.COUNTS, "held_expired", "digests")})
    report.failed_ids = runs.failed_ids(session, today=today)
    report.failed = len(report.failed_ids)
    report.run_id, report.done = (row.id, row.status == "done") if row is not None else (None, False)
    report.left = 0 if report.done else runs.due_count(session, today=today)
    return report


def run_daily(session: Session, library: Library, *, today: date, now: datetime, mail: Mail = DEFAULT_MAIL,
              clock: Callable[[], datetime] | None = None, full: bool = False,
              progress: Callable[[int, int], None] | None = None, actor: str = SYSTEM, by: str | None = None,
              batch: int = BATCH, lease: timedelta = runs.LEASE, stop: Callable[[], bool] | None = None,
              retry_failed: bool = False) -> RunReport:
    """Take part in the day's cycle: claim due enrollments (`full`: every active one) a batch at a
    time, evaluate them and write their plans, each batch committed with its counts on the day's
    `job_run` row, until none is left to claim; then close the day if nothing due is left.

    Several processes may do this at once (services/runs.py): each enrollment is evaluated by one.
    Idempotent: a second run the same day finds nothing due and changes no row. `stop()` is asked
    before each batch (a daemon told to stop leaves after the batch it is on); `retry_failed`
    tries again the enrollments whose evaluation failed earlier today. `clock` is the entry
    point's (claims, leases and when the run finished); without one, `now`.
    """
    by = by or runs.owner()
    report = RunReport(run_on=today)
    if retry_failed:
        runs.retry_failed(session, today=today)
    if full:
        runs.make_due(session, today=today)
    total = runs.due_count(session, today=today)
    report.run_id = runs.join(session, "daily", today.isoformat(), now=now, by=by, lease=lease).id
    session.commit()
    cycle = _Cycle(session, library, report, mail, now, clock or (lambda: now), by, batch, lease,
                   stop or (lambda: False), progress, total)
    try:
        # Later passes find what became due again while this one worked (new input) or what a
        # process that died had claimed, until a pass finds nothing.
        while cycle.one_pass() and not cycle.stop():
            pass
        if cycle.stop():
            report.stopped = True
            cycle.leave("stopped", f"{by} was told to stop at {cycle.clock().isoformat()}")
        else:
            cycle.close_day()
        audit(session, actor=actor, action="daily_cycle", entity="job_run", entity_id=report.run_id,
              now=cycle.clock(), **{k: v for k, v in report.as_dict().items() if k != "failed_enrollments"})
        session.commit()
    except BaseException as error:
        _left_by(cycle, error)
        raise
    return report


def _left_by(cycle: _Cycle, error: BaseException) -> None:
    """Record that this process stopped on an error, with its type (never its message: it may hold
    patient data). A database that cannot take even that leaves the row running, for a later
    run to resume when its lease lapses."""
    try:
        cycle.session.rollback()
        cycle.leave("failed", f"stopped by {type(error).__name__}")
        cycle.session.commit()
    except Exception as e:
        log.warning("daily run %s could not be marked failed: %s", cycle.run_id, type(e).__name__)
