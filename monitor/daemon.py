"""`monitor daemon`: the daily cycle every clinic day, exactly once, unattended.

APScheduler (in memory, jobs registered here) is only the alarm clock; the database says what is
done (architecture decision 2). The main thread sleeps until it is woken: at `daemon.run_at` in
the clinic's time zone, every minute, and at start. Each time it runs today's cycle if the run
time has passed and the day is not done — the catch-up after downtime (one run, for today), the
takeover of a daemon that died (its claims lapse), and a DST night (the day's one `job_run` row
makes a second firing a no-op) are all that one rule. Every minute the daemon also writes its
heartbeat row. The MLLP listener, when enabled, has its own thread and event loop, so a long
cycle never delays an ACK.

SIGTERM and SIGINT: the batch in hand is finished and committed, then the daemon exits 0.
SIGHUP: the protocol files are read again and used from the next cycle, if they are valid; a bad
file is refused (logged) and the ones in use are kept.

Like healthchecks' `sendalerts`: a thin loop over steps that each do one thing, a flag for
signals, and an error in one cycle logged and retried at the next minute, never a crash loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock_time
from types import FrameType
from typing import IO
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from monitor.app import App
from monitor.db.session import sqlite_path
from monitor.domain.errors import UserError
from monitor.feed import Background, Feed
from monitor.logs import fields
from monitor.notify.ping import ping
from monitor.private import owner_only
from monitor.services import daily, heartbeat, runs
from monitor.services.checks import check_protocols
from monitor.services.daily import RunReport
from monitor.workers import Stop, helpers, how_many

log = logging.getLogger(__name__)

ACTOR = "monitor daemon"


def due_at(day: date, run_at: str, zone: ZoneInfo) -> datetime:
    """When `day`'s cycle is due: `run_at` local time that day. A time the clocks skip (spring
    forward) is read with the offset before the change (01:30 in London's gap is 02:30 BST, when
    APScheduler fires); a time that happens twice (fall back) is its first occurrence."""
    hour, minute = map(int, run_at.split(":"))
    # As a UTC instant: a local time in a gap or a fold never compares equal to another zone's (PEP 495).
    return datetime.combine(day, clock_time(hour, minute), tzinfo=zone).astimezone(UTC)


class Daemon:
    def __init__(self, a: App, *, by: str | None = None) -> None:
        self.app = a
        self.by = by or runs.owner()
        self.zone = a.settings.clinic.zone
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.reload_asked = threading.Event()
        self.helpers = Stop()  # the processes helping with a large cycle, asked to stop with the daemon
        self.state = "starting"
        self.feed: Feed | None = None
        self.mllp: Background | None = None
        self.started_at = a.now()

    # --- one step each -------------------------------------------------------------------------

    def tick(self) -> RunReport | None:
        """Run today's cycle if its time has passed and the day is not done (or help the daemons
        working on it); the report, or None when there was nothing to do."""
        now = self.app.now()
        today = now.astimezone(self.zone).date()
        if now < due_at(today, self.app.settings.daemon.run_at, self.zone):
            return None
        with self.app.session() as s:
            if not runs.wanted(s, "daily", today.isoformat(), today=today, now=now, by=self.by):
                return None
        return self.cycle(today)

    def cycle(self, today: date) -> RunReport | None:
        """Take part in `today`'s cycle: logged, pinged, and never raising (an error is retried by
        the next minute's tick)."""
        url = self.app.settings.daemon.ping_url
        self.beat("running the daily cycle")
        ping(url, "start")
        started = time.monotonic()
        log.info("daily cycle %s started", today, extra=fields(event="cycle_started", date=today, by=self.by))
        d = self.app.settings.daemon
        try:
            with self.app.session() as s:
                count = how_many(d.workers, runs.due_count(s, today=today), d.batch_size)
                with helpers(count - 1, today, config=self.app.config, stop=self.helpers) as helping:
                    report = daily.run_daily(s, self.app.library, today=today, now=self.app.now(), mail=self.app.mail,
                                             clock=self.app.now, actor=ACTOR, by=self.by, batch=d.batch_size,
                                             lease=d.claim_lease, stop=self.stopping.is_set)
                if helping and not report.stopped:  # the day's counts, over this daemon and its helpers
                    report = daily.day_report(s, today=today)
        except Exception as e:
            log.error("daily cycle %s stopped by %s; tried again in a minute", today, type(e).__name__,
                      extra=fields(event="cycle_failed", date=today, error=type(e).__name__))
            ping(url, "fail", {"error": type(e).__name__})
            return None
        finally:
            self.beat("stopping" if self.stopping.is_set() else "idle")
        seconds = time.monotonic() - started
        counts = {k: v for k, v in report.as_dict().items() if k not in ("date", "failed_enrollments")}
        outcome = "day done" if report.done else ("stopped" if report.stopped else f"{report.left} left to others")
        log.info("daily cycle %s: %s evaluated, %s failed, %s new flags, in %.1f s; %s", today, report.evaluated,
                 report.failed, report.flags_raised, seconds, outcome,
                 extra=fields(event="cycle_finished", date=today, seconds=round(seconds, 3), done=report.done,
                              left=report.left, **counts))
        if report.failed_ids:
            log.warning("daily cycle %s: enrollments that could not be evaluated: %s", today, report.failed_ids[:100],
                        extra=fields(event="enrollments_failed", date=today, enrollment_ids=report.failed_ids[:100]))
        if report.done:
            ping(url, "fail" if report.failed else "", {"evaluated": report.evaluated, "failed": report.failed})
            self.post()  # the day's digests now, not at the next minute
        return report

    def beat(self, state: str | None = None) -> None:
        """This daemon's heartbeat row (a database that is down is logged, not fatal)."""
        if state is not None:
            self.state = state
        try:
            with self.app.session() as s:
                heartbeat.beat(s, self.by, started_at=self.started_at, now=self.app.now(), state=self.state,
                               mllp_port=self.mllp.bound if self.mllp else None)
                s.commit()
        except Exception as e:
            log.warning("heartbeat not written: %s", type(e).__name__)

    def reload(self) -> bool:
        """Read the protocol files again; use them if they are valid and every active enrollment's
        protocol is still there. Otherwise keep the ones in use (logged)."""
        self.reload_asked.clear()
        try:
            fresh = self.app.load_library()
            with self.app.session() as s:
                check_protocols(s, fresh)
        except (UserError, OSError) as e:
            log.error("protocol files not reloaded, the ones in use are kept: %s", e,
                      extra=fields(event="reload_refused"))
            return False
        self.app.library = fresh
        if self.feed is not None:
            self.feed.reload()
        log.info("protocol files reloaded: %s", ", ".join(sorted(fresh.ids())), extra=fields(event="reloaded"))
        return True

    # --- the loop ------------------------------------------------------------------------------

    def minute(self) -> None:
        self.beat()
        self.wake.set()

    def post(self) -> None:
        """Queue due escalations and send what the outbox holds (every minute, in its own thread);
        an SMTP server or database that is down is logged and tried again next minute."""
        try:
            done = self.app.deliver(stop=self.stopping.is_set)
        except Exception as e:
            log.error("outbox not delivered (%s); trying again in a minute", type(e).__name__,
                      extra=fields(event="outbox_failed", error=type(e).__name__))
            return
        if done.sent or done.retried or done.dead:
            log.info("outbox: %s sent, %s to retry, %s dead-lettered", done.sent, done.retried, done.dead,
                     extra=fields(event="outbox_delivered", **done.as_dict()))
        if done.unreachable:
            log.warning("e-mail not delivered: %s", done.unreachable,
                        extra=fields(event="smtp_unreachable", reason=done.unreachable))

    def scheduler(self) -> BackgroundScheduler:
        """The alarm clock: the cycle at `run_at` local time; the heartbeat, catch-up and the outbox
        every minute."""
        hour, minute = map(int, self.app.settings.daemon.run_at.split(":"))
        clock = BackgroundScheduler(timezone=self.zone, jobstores={"default": MemoryJobStore()},
                                    executors={"default": ThreadPoolExecutor(3)},
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        clock.add_job(self.wake.set, CronTrigger(hour=hour, minute=minute, timezone=self.zone), id="daily-cycle")
        clock.add_job(self.minute, IntervalTrigger(minutes=1, timezone=self.zone), id="minute")
        clock.add_job(self.post, IntervalTrigger(minutes=1, timezone=self.zone), id="outbox")
        return clock

    def loop(self) -> None:
        while not self.stopping.is_set():
            if self.reload_asked.is_set():
                self.reload()
            report = self.look()
            self.wake.wait(timeout=self.pause(report))
            self.wake.clear()

    def look(self) -> RunReport | None:
        """`tick`, with a database that cannot be reached (restarting, network down) logged and
        tried again at the next wake, never the end of the daemon."""
        try:
            return self.tick()
        except Exception as e:
            log.error("could not look at today's cycle (%s); trying again in a minute", type(e).__name__,
                      extra=fields(event="tick_failed", error=type(e).__name__))
            return None

    def pause(self, report: RunReport | None) -> float:
        """Seconds until the next look (the scheduler wakes it every minute anyway): sooner when
        the day's work left is held by another process whose claim lapses first (it may have died)."""
        if report is None or not report.left:
            return 60
        try:
            with self.app.session() as s:
                lapse = runs.next_lapse(s, today=report.run_on, now=self.app.now())
        except Exception:
            return 60
        return 60 if lapse is None else min(60, max(1, (lapse - self.app.now()).total_seconds() + 1))

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_asked.set()
        else:
            if not self.stopping.is_set():
                log.info("%s received: stopping after the batch in hand", signal.Signals(signum).name,
                         extra=fields(event="stopping", signal=signal.Signals(signum).name))
            self.stopping.set()
            self.helpers.on_signal()
        self.wake.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; 0."""
        with one_daemon_per_sqlite_file(self.app):
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self.on_signal)
            self.start_mllp()
            clock = self.scheduler()
            clock.start()
            self.beat("idle")
            log.info("daemon %s started: daily cycle at %s %s%s", self.by, self.app.settings.daemon.run_at,
                     self.app.settings.clinic.timezone,
                     f", MLLP on port {self.mllp.bound}" if self.mllp else "",
                     extra=fields(event="started", by=self.by, mllp_port=self.mllp.bound if self.mllp else None))
            try:
                self.loop()
            finally:
                clock.shutdown(wait=True)
                if self.mllp is not None:
                    self.mllp.stop()
                self.beat("stopped")
                log.info("daemon %s stopped", self.by, extra=fields(event="stopped", by=self.by))
        return 0

    def start_mllp(self) -> None:
        m = self.app.settings.mllp
        if not m.enabled:
            return
        self.feed = Feed(self.app)
        if left := self.feed.reconcile():
            log.info("processed %s MLLP messages an earlier run left unfinished", left,
                     extra=fields(event="mllp_reconciled", messages=left))
        self.mllp = Background(self.feed, m.host, m.port)
        self.mllp.start()


@contextlib.contextmanager
def one_daemon_per_sqlite_file(a: App) -> Iterator[None]:
    """SQLite has one writer: a second daemon on the same file is refused (UserError, exit 2). The
    lock is the kernel's (flock) on a file beside the database, released when the process ends,
    however it ends. PostgreSQL: any number of daemons."""
    path = sqlite_path(make_url(a.settings.database.url))
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".daemon-lock")
    handle: IO[str] = open(lock_path, "a+", encoding="utf-8", opener=owner_only)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"another monitor daemon ({holder}) is running on the SQLite database {path}: SQLite "
                            "has one writer, so one daemon; stop that one first, or use PostgreSQL "
                            "(database.url) to run several") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{runs.owner()} pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
