"""Files that hold patient data are their owner's alone (mode 0600) whatever the umask: the
database (SQLite gives its -wal, -shm and journal files the database file's mode) and every file
the product writes (the demo's cohort, labs and outbox messages; backups and the outbox when built).
"""

from __future__ import annotations

import os
from contextlib import suppress

OWNER_ONLY = 0o600
OWNER_ONLY_FOLDER = 0o700


def owner_only(path: str, flags: int) -> int:
    """An `opener` for open(): a file it creates is readable and writable by its owner only."""
    return os.open(path, flags, OWNER_ONLY)


def create_owner_only(path: str) -> None:
    """Create an empty file readable by its owner only, unless it exists; a file that cannot be
    created is left to whoever opens it next to report."""
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
