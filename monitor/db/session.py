"""Engine and session factory. SQLite gets WAL and a busy timeout; instants stay UTC. No engine
ever shows a statement's parameters in an error (they hold raw HL7, MRNs, names and doses)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError

from monitor.domain.errors import UserError
from monitor.private import create_owner_only

MIN_SQLITE = (3, 35, 0)  # RETURNING (ECOSYSTEM.md gotcha 30)


#: Every SQLite connection's settings. WAL lets readers (the web app) work while the daemon
#: writes. A checkpoint (copying the WAL back into the database, with an fsync) every 10,000
#: pages (~40 MB of WAL) instead of SQLite's 1,000: a large lab file dirties pages all over the
#: (patient, day) index, and checkpointing after every batch cost a third of its insert time
#: (bench/ingest.py).
SQLITE_PRAGMAS = ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON", "synchronous=NORMAL",
                  "wal_autocheckpoint=10000")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _new_file_owner_only(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
    """A new SQLite file is created 0600 before SQLite would create it 0644 (umask permitting)."""
    if cargs and cargs[0] != ":memory:" and not cparams.get("uri"):
        create_owner_only(cargs[0])


def shown(url: str | URL) -> str:
    """A database as it is safe to show: a SQLite file's full path, otherwise the URL without its
    password (also when it cannot be parsed)."""
    try:
        parsed = make_url(url)
    except Exception:
        return re.sub(r"(//[^/:@]*:)[^/]*@", r"\1***@", str(url))
    path = sqlite_path(parsed)
    if path is not None:
        return str(path)
    return parsed.difference_update_query(["password"]).render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (a path, or a `file:` URI with `uri=true`); None for another
    database or an in-memory one."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if url.query.get("uri") == "true":
        path = urlparse(database).path
        return Path(path).resolve() if path and url.query.get("mode") != "memory" else None
    return Path(database).resolve()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise UserError(
            f"database.url {shown(url)!r} is not a database URL; use e.g. sqlite:///monitor.db "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise UserError(f"SQLite {sqlite3.sqlite_version} is too old; monitor needs 3.35 or newer")
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "do_connect", _new_file_owner_only)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    except NoSuchModuleError:
        raise UserError(f"database.url {shown(url)!r} names an unknown kind of database "
                        f"{parsed.drivername!r}; use sqlite:/// or postgresql+psycopg://") from None
    except ModuleNotFoundError as e:
        raise UserError(
            f"the driver for {parsed.get_backend_name()} is not installed ({e.name}); "
            "use postgresql+psycopg:// and install it with: pip install 'monitor[postgres]'"
        ) from None
