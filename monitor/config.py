"""Settings: packaged defaults, then a site TOML file, then MONITOR_<SECTION>__<KEY> variables."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.domain.dates import DateRange
from monitor.domain.errors import UserError
from monitor.paths import config_dir
from monitor.tomlfile import first_problem, read_toml


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Database(Section):
    url: str = "sqlite:///monitor.db"


def known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/London)") from None
    return value


class Clinic(Section):
    timezone: str = "Europe/London"

    _zone = field_validator("timezone")(known_zone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Daemon(Section):
    run_at: str = "06:30"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    claim_lease_seconds: int = Field(default=600, ge=5, le=86_400)
    workers: int = Field(default=0, ge=0, le=64)  # processes on a large cycle; 0: one per CPU core
    ping_url: str = ""

    @field_validator("ping_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("use an http:// or https:// URL, e.g. https://hc-ping.com/<uuid>, or leave it empty")
        return value

    @property
    def claim_lease(self) -> timedelta:
        return timedelta(seconds=self.claim_lease_seconds)

    @field_validator("run_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("use local HH:MM, e.g. 06:30")
        return value


class Dates(Section):
    years_back: int = Field(default=100, ge=1, le=200)
    days_ahead: int = Field(default=366, ge=0, le=3660)
    results_days_ahead: int = Field(default=1, ge=0, le=366)

    @property
    def range(self) -> DateRange:
        return DateRange(self.years_back, self.days_ahead, self.results_days_ahead)


class Ingest(Section):
    hold_days: int = 180
    lab_timezone: str = "Europe/London"
    mrn_type: str = "MR"
    mrn_authority: str = ""
    hl7_encoding: str = "UNICODE UTF-8"  # checked where it is used (App.read_options)

    _zone = field_validator("lab_timezone")(known_zone)


class Protocols(Section):
    # A folder laid out like the packaged config/ (analytes.toml, grading/, protocols/).
    # Empty: the protocols shipped with monitor.
    directory: str = ""


class Smtp(Section):
    host: str = "localhost"
    port: int = 25
    username: str = ""
    password: SecretStr = SecretStr("")  # never printed: str() and repr() show ********
    security: Literal["none", "starttls", "ssl"] = "none"
    sender: str = "monitor@localhost"
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    ca_file: str = ""  # a CA bundle to trust for TLS (a site's own CA); empty: the system's


class Digest(Section):
    minimal_phi: bool = True  # initials and the MRN's last four characters, never a name or whole MRN
    send_empty: bool = True  # a "nothing due" note, so that silence never hides a dead daemon
    unassigned_to: str = ""  # who gets the digest of enrollments without a coordinator


class Alerts(Section):
    escalate_after_hours: float = Field(default=4, gt=0, le=24 * 14)
    ack_covers_days: int = Field(default=30, ge=0, le=365)  # an acknowledged problem, for later results no worse


class Outbox(Section):
    transport: Literal["smtp", "file"] = "smtp"
    directory: str = "outbox"  # the file transport's folder (.eml files)
    max_attempts: int = Field(default=10, ge=1, le=100)  # temporary failures before a message is dead
    retry_seconds: int = Field(default=60, ge=1)  # the first retry's wait; doubled each time, with jitter
    claim_seconds: int = Field(default=300, ge=1)  # a sender's hold on a message it is sending


class Mllp(Section):
    enabled: bool = False  # the listener inside `monitor daemon`
    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)


class Web(Section):
    secret_key: SecretStr = SecretStr("")  # never printed; signs session cookies (empty: a new one per start)
    base_url: str = ""  # e.g. https://monitor.example.org: e-mails link each patient to its page
    host: str = "127.0.0.1"  # `monitor serve` listens here (behind a TLS proxy in production)
    port: int = Field(default=8000, ge=0, le=65535)
    secure_cookies: bool = True  # session cookie only over HTTPS (localhost counts as secure in browsers)
    session_hours: float = Field(default=8, gt=0, le=24 * 7)
    forwarded_allow_ips: str = "127.0.0.1"  # proxies trusted to say the client's address
    login_failures_per_account: int = Field(default=5, ge=1)  # in login_window_minutes, then refused
    login_failures_per_address: int = Field(default=20, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    snooze_max_days: int = Field(default=14, ge=1, le=90)  # a snoozed flag comes back after at most this
    page_size: int = Field(default=50, ge=10, le=1000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MONITOR_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )
    database: Database = Database()
    clinic: Clinic = Clinic()
    dates: Dates = Dates()
    daemon: Daemon = Daemon()
    ingest: Ingest = Ingest()
    protocols: Protocols = Protocols()
    smtp: Smtp = Smtp()
    digest: Digest = Digest()
    alerts: Alerts = Alerts()
    outbox: Outbox = Outbox()
    mllp: Mllp = Mllp()
    web: Web = Web()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the files, which arrive as init arguments.
        return env_settings, init_settings


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(config: Path | None = None) -> Settings:
    """Defaults from the packaged monitor.toml, then the site file, then the environment."""
    data = read_toml(config_dir() / "monitor.toml")
    site = config or (Path(os.environ["MONITOR_CONFIG"]) if os.environ.get("MONITOR_CONFIG") else None)
    if site is not None:
        data = _merge(data, read_toml(site, hint="; check --config or MONITOR_CONFIG"))
    shorthand = os.environ.get("MONITOR_DATABASE_URL")
    if shorthand and not os.environ.get("MONITOR_DATABASE__URL"):
        data = _merge(data, {"database": {"url": shorthand}})
    try:
        return Settings(**data)
    except ValidationError as e:
        where, what = first_problem(e)
        origin = f" in {site}" if site else ""
        variable = f"MONITOR_{where.upper().replace('.', '__')}"
        raise UserError(f"setting {where}{origin}: {what} (or set {variable})") from None
