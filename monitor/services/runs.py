"""Who evaluates what in a day's cycle: one shared `job_run` row per (job, clinic day), and claims
on enrollments so that each is evaluated by one process.

Every process that works on a day — several daemons on one PostgreSQL database, a person's
`monitor run` beside them — *joins* the day's row (creating it, or resuming one whose process
stopped or died) and then *claims* batches of due enrollments (`claimed_by`, `claimed_until`:
a lease, so a dead process's batch is taken over when it lapses). A batch's counts are added to
the row in the batch's own transaction, so the row is exact whatever stops when. The day is
*done* when nothing due is left: the process that finds that closes the row.

On PostgreSQL claims take rows `FOR UPDATE SKIP LOCKED`; SQLite has one writer at a time, so the
claim statement (one UPDATE ... RETURNING) is atomic there as it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment, JobRun
from monitor.db.upsert import insert_ignore

LEASE = timedelta(minutes=10)  # default; `daemon.claim_lease_seconds`
COUNTS = ("evaluated", "failed", "flags_raised", "flags_resolved", "rows_changed", "requeued")


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Joined:
    id: int
    found: str | None  # the status the day's row had (None: this process started the day)


def day(session: Session, job: str, key: str) -> JobRun | None:
    """The (job, day) run's row, as committed."""
    return session.exec(select(JobRun).where(col(JobRun.job_name) == job, col(JobRun.run_key) == key)
                        .execution_options(populate_existing=True)).first()


def _locked(session: Session, run_id: int, *, lease_until: datetime | None = None) -> JobRun:
    """The run's row, locked for this transaction: a write first (the lease, or a no-op), so the
    read after it sees the last committed counts on PostgreSQL and SQLite alike, and no other
    process changes them before this transaction ends."""
    session.execute(update(JobRun).where(col(JobRun.id) == run_id)
                    .values(lease_until=lease_until or col(JobRun.lease_until))
                    .execution_options(synchronize_session=False))
    return session.exec(select(JobRun).where(col(JobRun.id) == run_id)
                        .execution_options(populate_existing=True)).one()


def join(session: Session, job: str, key: str, *, now: datetime, by: str, lease: timedelta = LEASE) -> Joined:
    """Take part in the (job, day) run: start it, join it while it runs, or resume it when the
    process(es) working on it stopped (`failed`, `stopped`) or died (its lease lapsed); a resumed
    run keeps what happened before in `stats["resumed"]`. A day that is done stays done."""
    started = insert_ignore(session, JobRun, [{
        "job_name": job, "run_key": key, "owner": by, "status": "running", "started_at": now,
        "lease_until": now + lease, "stats": {}}], ["job_name", "run_key"])
    if started:
        return Joined(started[0], None)
    found = day(session, job, key)
    assert found is not None and found.id is not None
    run = _locked(session, found.id)
    lapsed = run.status == "running" and run.lease_until < now
    if run.status in ("failed", "stopped") or lapsed:
        note = {"at": now.isoformat(), "by": by, "was": "lapsed" if lapsed else run.status,
                "reason": run.stats.get("reason", f"no process renewed it after {run.lease_until.isoformat()}")}
        stats = {k: v for k, v in run.stats.items() if k != "reason"}
        run.stats = {**stats, "resumed": [*stats.get("resumed", []), note]}
        run.status, run.lease_until, run.finished_at = "running", now + lease, None
    return Joined(run.id or found.id, found.status)


def wanted(session: Session, job: str, key: str, *, today: date, now: datetime, by: str) -> bool:
    """Whether a daemon should take part in the (job, day) run now: it has not started, it stopped
    or died (resume it), or it runs and has due enrollments nobody holds (help)."""
    run = day(session, job, key)
    if run is None or run.status in ("failed", "stopped"):
        return True
    if run.status == "done":
        return False
    return run.lease_until < now or bool(session.exec(
        select(col(Enrollment.id)).where(*_due(today), _free(by, now)).limit(1)).first())


def add_batch(session: Session, run_id: int, counts: Mapping[str, int], *, by: str, lease_until: datetime) -> None:
    """Add a batch's counts to the run, in the batch's transaction; the run stays alive."""
    run = _locked(session, run_id, lease_until=lease_until)
    stats = dict(run.stats)
    for name in COUNTS:
        stats[name] = stats.get(name, 0) + counts.get(name, 0)
    stats["by"] = {**stats.get("by", {}), by: stats.get("by", {}).get(by, 0) + counts.get("evaluated", 0)}
    run.stats = stats
    if run.status in ("failed", "stopped"):  # another process stopped; this one still works on the day
        run.status = "running"


def _active(today: date) -> list[ColumnElement[bool]]:
    """Active enrollments, less those whose evaluation failed today (counted once; tried again by
    the next day's cycle)."""
    return [col(Enrollment.status) == "active",
            or_(col(Enrollment.failed_on).is_(None), col(Enrollment.failed_on) != today)]


def _due(today: date) -> list[ColumnElement[bool]]:
    """Active enrollments whose review date has come, or last evaluated for a later day than this
    run's (a backdated run)."""
    return [*_active(today),
            or_(col(Enrollment.next_review_on) <= today, col(Enrollment.last_evaluated_on) > today)]


def make_due(session: Session, *, today: date) -> int:
    """Every active enrollment due for review today (`monitor run --full`: a protocol changed):
    the day's cycle then evaluates each once, whichever process claims it; how many."""
    made = session.execute(update(Enrollment).where(*_active(today)).values(next_review_on=today)
                           .execution_options(synchronize_session=False))
    return int(made.rowcount)  # type: ignore[attr-defined]


def _free(by: str, now: datetime) -> ColumnElement[bool]:
    """Held by no process, by this one, or by one whose claim lapsed."""
    return or_(col(Enrollment.claimed_by).is_(None), col(Enrollment.claimed_by) == by,
               col(Enrollment.claimed_until) < now)


def claim(session: Session, *, today: date, now: datetime, by: str, lease: timedelta, after: int,
          limit: int) -> list[int]:
    """Claim up to `limit` due enrollments with ids above `after` that no other process holds (or
    whose claim lapsed); their ids, ascending. Commit to make the claim visible."""
    chosen = (select(col(Enrollment.id)).where(*_due(today), _free(by, now), col(Enrollment.id) > after)
              .order_by(col(Enrollment.id)).limit(limit).with_for_update(skip_locked=True))
    claimed = session.execute(update(Enrollment).where(col(Enrollment.id).in_(chosen))
                              .values(claimed_by=by, claimed_until=now + lease).returning(col(Enrollment.id))
                              .execution_options(synchronize_session=False))
    return sorted(row[0] for row in claimed)


def release(session: Session, *, by: str) -> None:
    """Give up this process's claims (it stops): another takes them at once."""
    session.execute(update(Enrollment).where(col(Enrollment.claimed_by) == by)
                    .values(claimed_by=None, claimed_until=None).execution_options(synchronize_session=False))


def mark_failed(session: Session, ids: Sequence[int], *, today: date) -> None:
    """These enrollments could not be evaluated today: released, and not claimed again today."""
    if ids:
        session.execute(update(Enrollment).where(col(Enrollment.id).in_(list(ids)))
                        .values(failed_on=today, claimed_by=None, claimed_until=None)
                        .execution_options(synchronize_session=False))


def retry_failed(session: Session, *, today: date) -> int:
    """Let today's cycle try again the enrollments that failed today (a person's `monitor run`,
    after fixing a protocol file); how many."""
    done = session.execute(update(Enrollment).where(col(Enrollment.failed_on) == today).values(failed_on=None)
                           .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def due_count(session: Session, *, today: date) -> int:
    return int(session.exec(select(func.count()).select_from(Enrollment).where(*_due(today))).one())


def failed_ids(session: Session, *, today: date) -> list[int]:
    return [i for i in session.exec(select(Enrollment.id).where(col(Enrollment.failed_on) == today)
                                    .order_by(col(Enrollment.id))).all() if i is not None]


def complete(session: Session, run_id: int, *, today: date, finished: datetime,
             closing: Callable[[], Mapping[str, int]]) -> bool:
    """Close the day's run when nothing due is left (claimed by another process or not): done, with
    its exact failed count, and `closing()`'s counts when this process is the one that closes it.
    False (the row unchanged) while something is left."""
    if due_count(session, today=today):
        return False
    run = _locked(session, run_id)
    extra = closing() if run.status != "done" else {}
    failed = failed_ids(session, today=today)
    stats = {k: v for k, v in run.stats.items() if k != "reason"}
    run.stats = {**stats, **extra, "failed": len(failed), "failed_enrollments": failed[:100]}
    if run.status != "done":
        run.status, run.finished_at = "done", finished
    return True


def leave(session: Session, run_id: int, status: str, reason: str, *, at: datetime) -> None:
    """This process stops before the day is done (`failed`: an error; `stopped`: asked to): the
    row says so, with the reason, unless the day is done. Another process working on the day
    sets it running again with its next batch; a later run resumes it."""
    run = _locked(session, run_id)
    if run.status == "running":
        run.status, run.finished_at, run.stats = status, at, {**run.stats, "reason": reason}


def claimed(session: Session, *, now: datetime) -> int:
    """Enrollments some process holds a live claim on (it is evaluating them now)."""
    return int(session.exec(select(func.count()).select_from(Enrollment).where(
        col(Enrollment.claimed_by).is_not(None), col(Enrollment.claimed_until) >= now)).one())


def next_lapse(session: Session, *, today: date, now: datetime) -> datetime | None:
    """When the first live claim on a due enrollment lapses (a process that died leaves its batch
    to be taken over then); None when there is none."""
    return session.exec(select(func.min(col(Enrollment.claimed_until))).where(
        *_due(today), col(Enrollment.claimed_until) >= now)).one()
