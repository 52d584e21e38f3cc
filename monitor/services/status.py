"""`monitor status`: is the daily cycle running every day, and is a daemon alive? Read-only.

Healthy means: a daily cycle completed within `STALE_RUN` (26 hours: a day and a margin for a
late or slow run), a daemon's heartbeat within `SILENT_DAEMON` (5 minutes: it beats every
minute), no dead-lettered e-mail and none waiting longer than `STUCK_MAIL`. Anything else is a
problem, named, so cron, Nagios or a container health check can alert.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.db.tables import DaemonHeartbeat, InboundMessage, JobRun, OutboxMessage, Quarantine
from monitor.services import outbox, runs

STALE_RUN = timedelta(hours=26)
SILENT_DAEMON = timedelta(minutes=5)
STUCK_MAIL = timedelta(hours=1)  # an e-mail due this long and not sent: the SMTP server is failing
SHOWN_RUNS = 7


def _at(value: datetime | None, zone: ZoneInfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat(timespec="seconds")


def _run_view(run: JobRun, zone: ZoneInfo) -> dict[str, Any]:
    stats = run.stats
    finished = run.finished_at if run.status == "done" else None
    return {"date": run.run_key, "status": run.status, "started_at": _at(run.started_at, zone),
            "finished_at": _at(finished, zone),
            "seconds": None if finished is None else round((finished - run.started_at).total_seconds(), 1),
            "evaluated": stats.get("evaluated", 0), "failed": stats.get("failed", 0),
            "flags_raised": stats.get("flags_raised", 0), "by": stats.get("by", {}),
            "resumed": len(stats.get("resumed", [])), "reason": stats.get("reason")}


def _progress(session: Session, run: JobRun, *, now: datetime) -> dict[str, Any]:
    """The day being worked on: evaluated so far and what is left (claimed now, or waiting)."""
    today = date.fromisoformat(run.run_key)
    left = runs.due_count(session, today=today)
    evaluated = run.stats.get("evaluated", 0)
    return {"date": run.run_key, "status": run.status, "evaluated": evaluated, "left": left,
            "claimed": runs.claimed(session, now=now),
            "failed": len(runs.failed_ids(session, today=today)),
            "alive": run.status == "running" and run.lease_until >= now}


def _no_daemon(last: DaemonHeartbeat | None, *, now: datetime, zone: ZoneInfo) -> str:
    if last is None:
        return "no daemon has ever run on this database (start `monitor daemon`)"
    if last.state == "stopped":
        return f"no daemon is running: the last, {last.owner}, stopped at {_at(last.beat_at, zone)}"
    minutes = (now - last.beat_at).total_seconds() / 60
    return (f"no daemon heartbeat for {minutes:.0f} minutes (the last: {last.owner} at {_at(last.beat_at, zone)}): "
            "it was killed or hangs")


def report(session: Session, *, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """What `monitor status` shows, and `problems` (empty when healthy)."""
    recent = session.exec(select(JobRun).where(col(JobRun.job_name) == "daily", ~col(JobRun.run_key).contains("#"))
                          .order_by(col(JobRun.run_key).desc()).limit(SHOWN_RUNS)).all()
    last_done = session.exec(select(JobRun).where(col(JobRun.job_name) == "daily", col(JobRun.status) == "done")
                             .order_by(col(JobRun.finished_at).desc()).limit(1)).first()
    unfinished = next((r for r in recent if r.status != "done"), None)
    beats = session.exec(select(DaemonHeartbeat).order_by(col(DaemonHeartbeat.beat_at).desc())).all()
    midnight = datetime.combine(now.astimezone(zone).date(), datetime.min.time(), tzinfo=zone)
    mllp = dict(session.exec(select(InboundMessage.status, func.count()).where(
        col(InboundMessage.channel) == "mllp", col(InboundMessage.received_at) >= midnight)
        .group_by(col(InboundMessage.status))).all())
    problems = []
    if last_done is None or last_done.finished_at is None:
        problems.append("no daily cycle has completed yet")
    elif now - last_done.finished_at > STALE_RUN:
        hours = (now - last_done.finished_at).total_seconds() / 3600
        problems.append(f"the last completed daily cycle ({last_done.run_key}) finished {hours:.0f} hours ago")
    if not any(b.state != "stopped" and now - b.beat_at <= SILENT_DAEMON for b in beats):
        problems.append(_no_daemon(beats[0] if beats else None, now=now, zone=zone))
    mail = outbox.counts(session)
    oldest = session.exec(select(func.min(OutboxMessage.created_at))
                          .where(col(OutboxMessage.status).in_([outbox.PENDING, outbox.SENDING]))).one()
    if mail[outbox.DEAD]:
        problems.append(f"{mail[outbox.DEAD]} e-mails could not be delivered (`monitor outbox list --status dead`; "
                        "`monitor outbox retry ID` once fixed)")
    if oldest is not None and now - oldest > STUCK_MAIL:
        problems.append(f"e-mail has been waiting since {_at(oldest, zone)} (`monitor outbox list` says why)")
    return {
        "now": _at(now, zone),
        "healthy": not problems,
        "problems": problems,
        "runs": [_run_view(r, zone) for r in recent],
        "in_progress": None if unfinished is None else _progress(session, unfinished, now=now),
        "daemons": [{"owner": b.owner, "state": b.state, "started_at": _at(b.started_at, zone),
                     "beat_at": _at(b.beat_at, zone), "seconds_since_beat": int((now - b.beat_at).total_seconds()),
                     "mllp_port": b.mllp_port} for b in beats],
        "quarantine_open": session.exec(select(func.count()).select_from(Quarantine)
                                        .where(col(Quarantine.status) == "open")).one(),
        "mllp_today": {"messages": sum(mllp.values()), **{str(k): v for k, v in sorted(mllp.items())}},
        "outbox": {**mail, "oldest_waiting_at": _at(oldest, zone)},
    }
