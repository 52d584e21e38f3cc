"""The schema. Alembic migrations are generated from these classes; nothing else creates tables.

Clinical dates are DATE columns; instants are UTC through UTCDateTime. Every plan row has a
natural unique key so that re-running a day or re-ingesting a file changes nothing.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from monitor.db.types import UTCDateTime

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def instant(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime(), **kw)


class Patient(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(max_length=64, unique=True)
    name: str | None = Field(default=None, max_length=200)
    dob: date | None = None
    sex: str | None = Field(default=None, max_length=1)
    created_at: datetime = instant()


class Enrollment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("patient_id", "protocol_id", "start_on"),)
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    phase: str = Field(max_length=32)
    phase_since: date
    start_on: date
    coordinator: str | None = Field(default=None, max_length=200, index=True)
    site: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(default="active", max_length=16)
    next_review_on: date = Field(index=True)
    last_evaluated_on: date | None = None
    # Bumped by every new input about the enrollment (a result, a dose, a phase, an acknowledgement):
    # the daily cycle writes its review date only if this is what it read (services/review.py).
    revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = instant()
    # The daily cycle's claim (services/runs.py): which process evaluates it now, until when; and
    # the day its evaluation last failed (it is not tried again by that day's cycle).
    claimed_by: str | None = Field(default=None, max_length=128)
    claimed_until: datetime | None = instant(default=None)
    failed_on: date | None = None


class PhaseEpisode(SQLModel, table=True):
    __tablename__ = "phase_episode"
    __table_args__ = (UniqueConstraint("enrollment_id", "started_on", "phase"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    phase: str = Field(max_length=32)
    started_on: date
    reason: str = Field(default="", sa_type=Text)
    confirmed_by: str | None = Field(default=None, max_length=200)


class DoseEvent(SQLModel, table=True):
    __tablename__ = "dose_event"
    __table_args__ = (UniqueConstraint("patient_id", "drug", "on"),)
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    drug: str = Field(max_length=64)
    dose_mg: float
    on: date


class WeightRecord(SQLModel, table=True):
    __tablename__ = "weight"
    __table_args__ = (UniqueConstraint("patient_id", "on"),)
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    on: date
    kg: float


class GenotypeRecord(SQLModel, table=True):
    __tablename__ = "genotype"
    __table_args__ = (UniqueConstraint("patient_id", "gene", "on"),)
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    gene: str = Field(max_length=16)
    status: str = Field(max_length=16)
    on: date


class MedicationRecord(SQLModel, table=True):
    __tablename__ = "medication"
    __table_args__ = (UniqueConstraint("patient_id", "drug", "started_on"),)
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    drug: str = Field(max_length=64)
    started_on: date
    stopped_on: date | None = None


class ThresholdOverride(SQLModel, table=True):
    """A clinician's patient-specific threshold (e.g. benign ethnic neutropenia), with the reason."""

    __tablename__ = "threshold_override"
    __table_args__ = (UniqueConstraint("enrollment_id", "rule_id"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    rule_id: str = Field(max_length=128)
    below: float | None = None
    above: float | None = None
    reason: str = Field(sa_type=Text)
    set_by: str = Field(max_length=200)
    set_at: datetime = instant()


class ResultColumns(SQLModel):
    """What a stored and a held result share: raw and canonical value, range, provenance."""

    source_key: str = Field(max_length=255, unique=True)
    source: str = Field(max_length=16)  # csv, hl7, fhir
    analyte: str = Field(max_length=16)
    code: str = Field(max_length=32)
    raw_value: str = Field(max_length=64)
    raw_unit: str = Field(max_length=64)
    value: float
    unit: str = Field(max_length=32)
    ref_low: float | None = None
    ref_high: float | None = None
    status: str = Field(default="final", max_length=16)
    observed_at: datetime = instant()
    observed_on: date
    received_at: datetime = instant()
    # The same test of the same order in any later message (HL7 filler order number + OBX-3/4).
    # Indexed where set (see _order_key_index): CSV and FHIR results have none.
    order_key: str | None = Field(default=None, max_length=255)


def _order_key_index(table: str) -> Index:
    has_key = text("order_key IS NOT NULL")
    return Index(f"ix_{table}_order_key", "order_key", sqlite_where=has_key, postgresql_where=has_key)


class LabResult(ResultColumns, table=True):
    __tablename__ = "lab_result"
    __table_args__ = (Index("ix_lab_result_patient_observed", "patient_id", "observed_on"),
                      _order_key_index("lab_result"))
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")


class HeldResult(ResultColumns, table=True):
    """A result for an MRN that is not enrolled yet; attached when it is."""

    __tablename__ = "held_result"
    __table_args__ = (_order_key_index("held_result"),)
    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(max_length=64, index=True)
    expires_on: date


class Quarantine(SQLModel, table=True):
    """A record that could not be stored exactly: kept whole with the reason.

    Its raw text is the texts of its `parts` (QuarantinePart ids, in order), then `raw`: what it
    shares with other records of its message is stored once (services/quarantine_rows.py)."""

    id: int | None = Field(default=None, primary_key=True)
    record_key: str = Field(max_length=64, unique=True)  # hash of format + whole raw record
    format: str = Field(max_length=16)
    origin: str = Field(max_length=255)  # file name and line, or feed
    parts: list[int] | None = Field(default=None, sa_column=Column(JSON))
    raw: str = Field(sa_type=Text)  # the record's own text, after its parts
    reason: str = Field(sa_type=Text)  # the last reason it could not be stored
    status: str = Field(default="open", max_length=16, index=True)  # open, replayed, requarantined
    created_at: datetime = instant()
    resolved_at: datetime | None = instant(default=None)
    attempts: int = Field(default=1, sa_column_kwargs={"server_default": "1"})  # deliveries and replays that failed
    last_tried_at: datetime = instant()


class QuarantinePart(SQLModel, table=True):
    """Raw text that quarantined records share (an HL7 message's MSH, PID and OBR segments, the
    times a FHIR report's members inherit), stored once however many records point to it."""

    __tablename__ = "quarantine_part"
    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64, unique=True)  # sha256 of the text
    text: str = Field(sa_type=Text)


class InboundMessage(SQLModel, table=True):
    """A message as received from a feed (MLLP, HTTP), stored before it is acknowledged."""

    __tablename__ = "inbound_message"
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)  # mllp, http
    received_at: datetime = instant()
    control_id: str | None = Field(default=None, max_length=64)
    raw: str = Field(sa_type=Text)
    #: sha256 of `raw`, while the message is unfinished (received, failed): the same message sent
    #: again is the same row, not another.
    digest: str | None = Field(default=None, max_length=64, unique=True)
    status: str = Field(default="received", max_length=16, index=True)  # received, processed, rejected, failed
    ack_code: str | None = Field(default=None, max_length=2)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class DueDrawRow(SQLModel, table=True):
    """An unmet draw as the last evaluation planned it (domain.items.PlannedDraw): its status on a
    day is derived when read (services/plans.py), not stored."""

    __tablename__ = "due_draw"
    __table_args__ = (UniqueConstraint("enrollment_id", "panel", "due_on"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    panel: str = Field(max_length=16)
    due_on: date = Field(index=True)
    opens_on: date = Field(index=True)  # upcoming before, due from
    closes_on: date  # due until, overdue after
    missed_on: date | None = None  # missed from (unmet, past closes_on)
    shown_on: date | None = None  # listed from (None: from the evaluation)
    gone_on: date | None = None  # listed until the day before
    rule_id: str = Field(max_length=128)
    why: str = Field(sa_type=Text)


class OverduePanelRow(SQLModel, table=True):
    """A panel whose most recent required draw is unmet (overdue or missed), from `from_on` until
    the day before `until_on` (None: until the enrollment is evaluated again)."""

    __tablename__ = "overdue_panel"
    __table_args__ = (UniqueConstraint("enrollment_id", "panel", "from_on"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    panel: str = Field(max_length=16)
    from_on: date
    until_on: date | None = None
    since: date = Field(index=True)  # due date of the first unmet draw of the run
    draws_unmet: int
    last_result_on: date | None = None
    rule_id: str = Field(max_length=128)
    why: str = Field(sa_type=Text)


class DoseStepRow(SQLModel, table=True):
    __tablename__ = "dose_step"
    __table_args__ = (UniqueConstraint("enrollment_id", "drug", "on"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    drug: str = Field(max_length=64)
    on: date
    dose_mg: float
    status: str = Field(max_length=16)
    rule_id: str = Field(max_length=128)
    why: str = Field(sa_type=Text)


class ProposalRow(SQLModel, table=True):
    """A phase change the last evaluation proposes and a clinician confirms (`monitor phase`)."""

    __tablename__ = "phase_proposal"
    __table_args__ = (UniqueConstraint("enrollment_id", "to_phase"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    to_phase: str = Field(max_length=32)
    rule_id: str = Field(max_length=128)
    why: str = Field(sa_type=Text)


class FlagRow(SQLModel, table=True):
    __tablename__ = "flag"
    __table_args__ = (UniqueConstraint("enrollment_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    key: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    analyte: str | None = Field(default=None, max_length=16)
    value: float | None = None
    unit: str | None = Field(default=None, max_length=32)
    observed_on: date
    result_id: int | None = Field(default=None, foreign_key="lab_result.id")
    rule_id: str = Field(max_length=128)
    why: str = Field(sa_type=Text)
    status: str = Field(default="open", max_length=16, index=True)  # open, acknowledged, resolved
    raised_at: datetime = instant()
    acknowledged_at: datetime | None = instant(default=None)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    ack_reason: str | None = Field(default=None, sa_type=Text)
    resolved_at: datetime | None = instant(default=None)
    resolution: str | None = Field(default=None, sa_type=Text)  # why it no longer holds
    # Out of the worklist until this date (a coordinator waiting for something), and why.
    snoozed_until: date | None = None
    snooze_reason: str | None = Field(default=None, sa_type=Text)


class JobRun(SQLModel, table=True):
    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job_name", "run_key"),)
    id: int | None = Field(default=None, primary_key=True)
    job_name: str = Field(max_length=64)
    run_key: str = Field(max_length=64)  # the local calendar date; `date#id` once moved aside unfinished
    owner: str = Field(max_length=128)
    status: str = Field(max_length=16)  # running, done, failed, stopped (stats["reason"] says why)
    started_at: datetime = instant()
    lease_until: datetime = instant()
    finished_at: datetime | None = instant(default=None)
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class DaemonHeartbeat(SQLModel, table=True):
    """One row per running (or recently stopped) `monitor daemon`, beaten every minute."""

    __tablename__ = "daemon_heartbeat"
    owner: str = Field(max_length=128, primary_key=True)  # host:pid
    started_at: datetime = instant()
    beat_at: datetime = instant()
    state: str = Field(max_length=32)  # idle, running the daily cycle, stopping, stopped
    mllp_port: int | None = None


class AuditEvent(SQLModel, table=True):
    """Who changed what. Holds internal ids only, never names, MRNs or values."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = instant()
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    entity: str = Field(max_length=32)
    entity_id: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # The hash chain (services/audit.py): this row's SHA-256 over its content and the previous
    # row's hash, so an edited or deleted row breaks the chain (`monitor audit verify`).
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


class Coordinator(SQLModel, table=True):
    """A nurse coordinator (the address enrollments name): a display name for the digest, and the
    address an unacknowledged critical alert escalates to."""

    __tablename__ = "coordinator"
    address: str = Field(max_length=200, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    escalation_address: str | None = Field(default=None, max_length=200)
    updated_at: datetime = instant()


class OutboxMessage(SQLModel, table=True):
    """An e-mail to send, written in the transaction of what caused it (the day's close, a critical
    flag) under a natural key, so nothing is lost and nothing is queued twice (services/outbox.py)."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_message_waiting", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)  # digest|address|date, alert|flag id, escalation|flag id
    kind: str = Field(max_length=16)  # digest, alert, escalation
    recipient: str = Field(max_length=200)
    subject: str = Field(sa_type=Text)
    text_body: str = Field(sa_type=Text)
    html_body: str | None = Field(default=None, sa_type=Text)
    message_id: str = Field(max_length=255)  # from the key: a resend is recognisable
    flag_id: int | None = Field(default=None, foreign_key="flag.id", index=True)
    created_at: datetime = instant()
    status: str = Field(default="pending", max_length=16)  # pending, sending, sent, dead
    attempts: int = 0
    next_attempt_at: datetime = instant()
    claimed_by: str | None = Field(default=None, max_length=128)
    claimed_until: datetime | None = instant(default=None)
    sent_at: datetime | None = instant(default=None)
    last_error: str | None = Field(default=None, sa_type=Text)


class OutboxAttempt(SQLModel, table=True):
    """Every delivery attempt of an outbox message and how it ended (sent, retry, dead)."""

    __tablename__ = "outbox_attempt"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="outbox_message.id", index=True)
    at: datetime = instant()
    by: str = Field(max_length=128)
    outcome: str = Field(max_length=16)
    detail: str | None = Field(default=None, sa_type=Text)


class WebUser(SQLModel, table=True):
    """Someone who logs in to the web app (`monitor users`). A coordinator or viewer sees only the
    patients of their sites; an admin sees every site."""

    __tablename__ = "web_user"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=200, unique=True)  # lower case
    password_hash: str = Field(max_length=255)  # Argon2id (pwdlib)
    role: str = Field(max_length=16)  # admin, coordinator, viewer
    sites: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    disabled: bool = False
    created_at: datetime = instant()


class WebSession(SQLModel, table=True):
    """A login: the cookie holds a random token, this table its SHA-256. Logout, a password reset
    or a disable ends it here, so a copied cookie stops working at once."""

    __tablename__ = "web_session"
    id: str = Field(max_length=64, primary_key=True)  # SHA-256 of the cookie's token
    user_id: int = Field(foreign_key="web_user.id", index=True)
    created_at: datetime = instant()
    ended_at: datetime | None = instant(default=None)


class LoginAttempt(SQLModel, table=True):
    """Each login attempt, for rate limiting per account and per address."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_email_at", "email", "at"),
                      Index("ix_login_attempt_address_at", "address", "at"))
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = instant()
    email: str = Field(max_length=200)
    address: str = Field(max_length=64)
    ok: bool


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API (`monitor tokens add`): it acts as its user (role, sites).
    Only its SHA-256 is stored."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="web_user.id", index=True)
    created_at: datetime = instant()
    last_used_at: datetime | None = instant(default=None)
    revoked_at: datetime | None = instant(default=None)


class SiteOverdue(SQLModel, table=True):
    """Per site and completed day: the active enrollments and how many have an overdue or missed
    draw (the overdue review's trend, a PINCER-style rate). Written when a day's cycle closes."""

    __tablename__ = "site_overdue"
    on: date = Field(primary_key=True)
    site: str = Field(max_length=64, primary_key=True)  # "" for enrollments without a site
    enrolled: int
    overdue: int
