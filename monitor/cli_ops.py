"""Operations: `monitor backup PATH` and `monitor restore PATH` (CLI.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from monitor.cli_args import app_of
from monitor.cli_show import err, out
from monitor.db.backup import backup as copy_out
from monitor.db.backup import restore as copy_in
from monitor.db.session import shown
from monitor.services.audit import verify_chain


def backup(ctx: typer.Context, path: Annotated[Path, typer.Argument(help="A new file for the copy")]) -> None:
    """A consistent copy of the whole database while it is in use (SQLite's online backup;
    pg_dump on PostgreSQL), readable by its owner only."""
    a = app_of(ctx)
    copied = copy_out(a.engine, path)
    out.print(f"backup of {shown(a.engine.url)}: {copied.bytes:,} bytes in {copied.path}; "
              f"{sum(copied.rows.values()):,} rows in {len(copied.rows)} tables", markup=False)


def restore(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A backup `monitor backup` wrote")],
    force: Annotated[bool, typer.Option("--force", help="Replace everything in a database that is not empty")] = False,
) -> None:
    """Put a backup back into an empty database (stop the daemon and the web app first), migrate it
    to this version, and check its audit trail."""
    a = app_of(ctx)
    copied = copy_in(a.engine, path, force=force)
    out.print(f"restored {copied.path} into {shown(a.engine.url)}: {sum(copied.rows.values()):,} rows in "
              f"{len(copied.rows)} tables", markup=False)
    with a.session() as s:
        check = verify_chain(s)
    if not check.intact:
        err.print(f"monitor: the restored audit trail does not verify: run `monitor audit verify` "
                  f"({check.events} events read)", markup=False)
        raise typer.Exit(1)
    out.print(f"audit: {check.events} events, chain intact", markup=False)
