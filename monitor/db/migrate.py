"""Bring a database to the newest schema. Any command that needs the database calls this."""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from alembic import command
from monitor.paths import alembic_dir

#: pg_advisory_xact_lock key: several daemons starting at once migrate one at a time.
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72  # "monitor"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(alembic_dir()))
    return cfg


def is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def upgrade_to_head(engine: Engine) -> None:
    if is_current(engine):
        return
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
