"""The audit trail commands: `monitor audit verify` (CLI.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from monitor.cli_args import app_of, choose
from monitor.cli_show import emit_json, out
from monitor.services import audit

audit_app = typer.Typer(no_args_is_help=False, help="The audit trail: who did what, hash-chained.")

#: What each kind of break says, after "row N (action at time)". Never the row's content.
SAYS = {
    audit.ALTERED: "was altered: its content no longer matches its hash",
    audit.AFTER_GAP: "does not follow the row before it: the row before it was deleted or altered",
    audit.UNSEALED: "has no hash: it was written outside the chain, or its hash was removed",
}


def _when(at: datetime | None, zone: ZoneInfo) -> str:
    return "an unreadable time" if at is None else at.astimezone(zone).isoformat(timespec="seconds")


def _break_view(b: audit.Break, zone: ZoneInfo) -> dict[str, Any]:
    return {"id": b.id, "action": b.action, "at": None if b.at is None else _when(b.at, zone), "kind": b.kind,
            "previous_id": b.previous_id, "says": SAYS[b.kind]}


@audit_app.callback(invoke_without_command=True)
def audit_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(verify, ctx=ctx)


@audit_app.command("verify")
def verify(ctx: typer.Context, fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text") -> None:
    """Check the audit trail's hash chain; exit 1 naming the first row altered, deleted or unhashed."""
    a = app_of(ctx)
    choose(fmt, "--format", "text", "json")
    with a.session() as s:
        check = audit.verify_chain(s)
    zone, b = a.settings.clinic.zone, check.first_break
    if fmt == "json":
        newest = None if check.newest is None else {"id": check.newest[0], "hash": check.newest[1]}
        emit_json({"events": check.events, "intact": check.intact, "newest": newest,
                   "first_break": None if b is None else _break_view(b, zone)})
    elif b is None:
        out.print(f"audit: {check.events} events, chain intact", markup=False)
    else:
        before = check.events - 1
        intact = "1 event before it is" if before == 1 else f"{before} events before it are"
        out.print(f"audit: row {b.id} ({b.action} at {_when(b.at, zone)}) {SAYS[b.kind]}; {intact} intact",
                  markup=False)
    if b is not None:
        raise typer.Exit(1)
