"""`monitor backup` and `monitor restore`: a consistent copy of the whole database while it is in
use, and that copy put back into an empty database.

SQLite: the online backup API (one step, inside one read transaction: the copy is the database as
of one instant, whatever the daemon writes meanwhile), to a new file readable by its owner only.
PostgreSQL: `pg_dump --format=custom` (one snapshot) and `pg_restore`, the password passed in the
environment, never on a command line. A copy is restored into the same kind of database, which
must be empty (no row in any of monitor's tables) unless `force`; it is then migrated to this
version's schema."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, func, inspect, select, text
from sqlalchemy.engine import URL

from monitor.db.migrate import upgrade_to_head
from monitor.db.session import sqlite_path
from monitor.domain.errors import UserError
from monitor.private import create_owner_only

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"


@dataclass(frozen=True)
class Copied:
    path: Path
    bytes: int
    rows: dict[str, int]  # table -> rows


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table of monitor's schema (alembic's own table left out)."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as c:
        return {name: int(c.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in sorted(meta.tables.items()) if name != "alembic_version"}


def _pg(url: URL) -> tuple[list[str], dict[str, str]]:
    """libpq arguments and environment for a SQLAlchemy PostgreSQL URL (the password in PGPASSWORD)."""
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    args = [f"--host={url.host or 'localhost'}", f"--port={url.port or 5432}", f"--dbname={url.database}"]
    if url.username:
        args.append(f"--username={url.username}")
    return args, env


def _last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else "no reason given"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UserError(f"{name} is not installed; install the PostgreSQL client (apt-get install postgresql-client)")
    return found


def backup(engine: Engine, path: Path) -> Copied:
    """Copy the whole database to `path`, a new file."""
    if path.exists():
        raise UserError(f"{path} exists already; give a new file name (a backup never overwrites one)")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent} is not a folder; create it first")
    url = engine.url
    source = sqlite_path(url)
    create_owner_only(str(path))
    try:
        if source is not None:
            _copy(source, path)
        elif url.get_backend_name() == "postgresql":
            args, env = _pg(url)
            done = subprocess.run([_tool("pg_dump"), "--format=custom", f"--file={path}", *args], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(f"pg_dump failed: {_last_line(done.stderr)}")
        else:
            raise UserError(f"monitor backs up SQLite and PostgreSQL, not {url.get_backend_name()}")
    except BaseException:
        path.unlink(missing_ok=True)  # never a half-written backup that looks like one
        raise
    return Copied(path, path.stat().st_size, row_counts(engine))


def _empty(engine: Engine) -> bool:
    return not any(row_counts(engine).values()) if inspect(engine).get_table_names() else True


def restore(engine: Engine, path: Path, *, force: bool = False) -> Copied:
    """Put a backup back: the database must be empty unless `force` (then everything in it is
    replaced); afterwards it is migrated to this version's schema."""
    if not path.is_file():
        raise UserError(f"{path} is not a file; give the backup `monitor backup` wrote")
    with path.open("rb") as f:
        head = f.read(16)
    target = sqlite_path(engine.url)
    kind = "sqlite" if head == SQLITE_MAGIC else "postgresql" if head.startswith(PG_MAGIC) else None
    if kind is None:
        raise UserError(f"{path} is not a monitor backup (neither a SQLite database nor a pg_dump archive)")
    if kind != ("sqlite" if target is not None else engine.url.get_backend_name()):
        raise UserError(f"{path} is a {kind} backup; restore it into a {kind} database (database.url)")
    if not force and not _empty(engine):
        raise UserError("the database is not empty; restore into a new one, or pass --force to replace "
                        "everything in it with the backup")
    if target is not None:
        engine.dispose()
        _copy(path, target)
    else:
        with engine.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        args, env = _pg(engine.url)
        done = subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error", *args, str(path)], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"pg_restore failed: {_last_line(done.stderr)}")
    upgrade_to_head(engine)
    return Copied(path, path.stat().st_size, row_counts(engine))


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup, in one step: one read transaction, so one instant of the source."""
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target, timeout=30)) as dst:
        src.backup(dst)
