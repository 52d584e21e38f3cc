"""Bring a database to the newest schema. Any command that needs the database calls this."""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from alembic import command
from monitor.db.session import shown, sqlite_path
from monitor.domain.errors import UserError
from monitor.paths import alembic_dir

#: pg_advisory_xact_lock key: several daemons starting at once migrate one at a time.
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72  # "monitor"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(alembic_dir()))
    return cfg


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest schema; UserError for one a newer monitor made."""
    scripts = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise UserError(f"database {shown(engine.url)} has schema revision {current}, which this monitor does "
                        "not know: a newer monitor made it; upgrade monitor")
    return current == scripts.get_current_head()


def require_existing(engine: Engine) -> None:
    """Refuse a database that does not exist yet, naming the one looked for (SQLite: the file;
    otherwise: a database without monitor's tables)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            raise UserError(f"no monitor database at {path}: run this in the clinic's folder, "
                            "set database.url (or --config), or create one with `monitor init`")
        return
    with engine.connect() as conn:
        found = inspect(conn).has_table("alembic_version")
    if not found:
        raise UserError(f"{shown(url)} holds no monitor database: "
                        "check database.url, or create one with `monitor init`")


def upgrade_to_head(engine: Engine) -> None:
    """Migrate one process at a time: the others wait for the lock, then find nothing to do
    (Alembic reads the version again inside the transaction)."""
    if is_current(engine):
        return
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        else:  # SQLite: the write lock from the start (busy_timeout waits for it), not at the first write
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
