"""The composition root: settings, database, protocols and the clock, built once per command."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session

from monitor import clock
from monitor.config import Settings, load_settings
from monitor.db.migrate import require_existing, upgrade_to_head
from monitor.db.session import make_engine
from monitor.domain.errors import UserError
from monitor.ingest.hl7_reader import codec_for
from monitor.ingest.records import ReadOptions
from monitor.notify.mail import Mail
from monitor.notify.transport import FileTransport, SmtpServer, SmtpTransport, Transport
from monitor.protocols import Library, packaged_library
from monitor.services.alerts import queue_escalations
from monitor.services.outbox import Delivery, Policy, deliver
from monitor.services.prepare import Context
from monitor.services.runs import owner


class App:
    def __init__(self, config: Path | None = None, *, may_create: bool = True) -> None:
        self.config = config
        #: Only commands that start a clinic (init, enroll, demo) create a database; any other
        #: command in the wrong folder must not answer "nothing to do" from a new, empty one.
        self.may_create = may_create

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @cached_property
    def library(self) -> Library:
        return self.load_library()

    def load_library(self) -> Library:
        """The protocol files as they are now (ProtocolError when one is not valid)."""
        site = self.settings.protocols.directory
        return Library(Path(site)) if site else packaged_library()

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.database.url)
        try:
            if not self.may_create:
                require_existing(engine)
            upgrade_to_head(engine)
        except BaseException:
            engine.dispose()  # a database that cannot be used leaves no connection open
            raise
        return engine

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def now(self) -> datetime:
        return clock.now_utc()

    def today(self) -> date:
        return clock.today(self.settings.clinic.zone)

    def ingest_context(self) -> Context:
        return Context(catalog=self.library.catalog, clinic_zone=self.settings.clinic.zone,
                       hold_days=self.settings.ingest.hold_days, now=self.now(), library=self.library,
                       options=self.read_options(), dates=self.settings.dates.range, mail=self.mail)

    @property
    def mail(self) -> Mail:
        s = self.settings
        return Mail(sender=s.smtp.sender, minimal_phi=s.digest.minimal_phi, send_empty=s.digest.send_empty,
                    unassigned_to=s.digest.unassigned_to, base_url=s.web.base_url,
                    escalate_after=timedelta(hours=s.alerts.escalate_after_hours),
                    ack_covers_days=s.alerts.ack_covers_days)

    @property
    def policy(self) -> Policy:
        o = self.settings.outbox
        return Policy(max_attempts=o.max_attempts, retry_seconds=o.retry_seconds, claim_seconds=o.claim_seconds)

    def deliver(self, *, any_time: bool = False, ids: Sequence[int] | None = None,
                stop: Callable[[], bool] = lambda: False) -> Delivery:
        """Queue the escalations that are due, then send what the outbox holds (services/outbox.py)."""
        with self.session() as s:
            queue_escalations(s, mail=self.mail, now=self.now())
            s.commit()
            by = f"{owner()}/{uuid.uuid4().hex[:8]}"  # this call's own: a daemon's threads are two senders
            return deliver(s, self.transport(), sender=self.mail.sender, clock=self.now, by=by,
                           policy=self.policy, any_time=any_time, ids=ids, stop=stop)

    def transport(self) -> Transport:
        """How the outbox's messages leave ([outbox] transport): SMTP, or .eml files in a folder."""
        o, s = self.settings.outbox, self.settings.smtp
        if o.transport == "file":
            return FileTransport(Path(o.directory))
        return SmtpTransport(SmtpServer(host=s.host, port=s.port, security=s.security, username=s.username,
                                        password=s.password.get_secret_value(), timeout_seconds=s.timeout_seconds,
                                        ca_file=s.ca_file))

    def read_options(self) -> ReadOptions:
        i = self.settings.ingest
        if codec_for(i.hl7_encoding) is None:
            raise UserError(f"setting ingest.hl7_encoding {i.hl7_encoding!r} is not a character set monitor reads; "
                            "use an HL7 table 0211 name such as UNICODE UTF-8 or 8859/1 "
                            "(or set MONITOR_INGEST__HL7_ENCODING)")
        return ReadOptions(lab_zone=ZoneInfo(i.lab_timezone), mrn_type=i.mrn_type, mrn_authority=i.mrn_authority,
                           hl7_encoding=i.hl7_encoding)

    @property
    def actor(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "cli"
