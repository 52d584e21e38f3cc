"""A database that cannot be opened or used, as one line a user can act on (`monitor.cli.main`).

The line says which database, what failed and what to check. It repeats the driver's own words
only for a failed connection: the text of a failed statement may carry patient data (PostgreSQL's
DETAIL shows the offending row: MRNs, names, values). Passwords never show (`session.shown`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from monitor.db.session import shown

#: SQLite result codes (extended codes start with their primary one): what failed, what to check.
SQLITE = {
    "SQLITE_NOTADB": ("is not a SQLite database (a damaged file, or another kind of file)",
                      "check database.url, or restore the clinic's backup"),
    "SQLITE_CORRUPT": ("is damaged", "restore the clinic's backup"),
    "SQLITE_CANTOPEN": ("cannot be opened", "check that its folder exists and that you may write there"),
    "SQLITE_READONLY": ("is read-only", "check that you may write the file and its folder (SQLite keeps its "
                                        "-wal and -shm files beside it)"),
    "SQLITE_PERM": ("may not be written", "check the permissions of the file and its folder"),
    "SQLITE_BUSY": ("stayed locked by another process for 30 s", "let it finish (a large ingest?), then try again"),
    "SQLITE_LOCKED": ("stayed locked by another process for 30 s", "let it finish (a large ingest?), then try again"),
    "SQLITE_FULL": ("cannot grow: the disk is full", "free some space, then try again"),
    "SQLITE_IOERR": ("could not be read or written (a disk error)", "check the disk, then try again"),
}
#: PostgreSQL SQLSTATE codes or classes (two characters): what failed, what to check.
POSTGRES = {
    "08": ("lost its connection", "check that the server is running, then try again"),
    "25006": ("is read-only (a standby server?)", "point database.url at the primary server"),
    "28": ("refused the user or password", "check database.url's user and password"),
    "3D": ("does not exist", "check database.url's database name, or create the database"),
    "40": ("stopped the work because another session changed the same rows", "try again"),
    "42501": ("refused the database user access to monitor's tables", "grant that user rights on them"),
    "53": ("ran out of disk, memory or connections", "check the server, then try again"),
    "57": ("stopped the work (the server is shutting down, or cancelled it)", "check the server, then try again"),
}


@dataclass(frozen=True)
class Problem:
    line: str
    exit_code: int  # 2: the database or its settings need fixing; 1: a bug (or a database changed by hand)


def explain(error: DBAPIError, url: str) -> Problem:
    """The one line for a database error, and the exit code."""
    where = shown(url)
    sqlite_code = str(getattr(error.orig, "sqlite_errorname", ""))
    state = str(getattr(error.orig, "sqlstate", None) or "")
    for code, (what, check) in SQLITE.items():
        if sqlite_code.startswith(code):
            return Problem(f"database {where} {what}: {check}", 2)
    if error.statement is None and not sqlite_code:  # connecting failed: the driver says why, never with data
        reason = " ".join(str(error.orig).splitlines()[0].split()) if str(error.orig) else type(error.orig).__name__
        return Problem(f"cannot connect to database {where} ({reason}): check that the server is running and "
                       "database.url's host, port, user, password and database name", 2)
    for code in (state, state[:2]):
        if code in POSTGRES:
            what, check = POSTGRES[code]
            return Problem(f"database {where} {what} (SQLSTATE {state}): {check}", 2)
    detail = sqlite_code or (f"SQLSTATE {state}" if state else type(error.orig).__name__)
    if isinstance(error, OperationalError | InterfaceError):
        return Problem(f"database {where} failed ({detail}): check that database.url names a monitor database "
                       "and that its disk or server is healthy", 2)
    return Problem(f"database {where} refused a change ({type(error).__name__}, {detail}): a bug in monitor or a "
                   "change made to the database by hand; what was not yet saved was rolled back. Please report it "
                   "(this line holds no patient data)", 1)
