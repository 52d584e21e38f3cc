"""How the command line shows things: tables, JSON, progress and ingestion summaries."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from datetime import date
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from monitor.services.prepare import IngestReport
from monitor.services.views import inert


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader left (`monitor status | head -1`): raise, as `print` does, so a command may
        keep its own exit code (rich's own handler exits 1)."""
        self.quiet = True
        raise BrokenPipeError


out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False, soft_wrap=True)



def write_csv(rows: Iterable[dict[str, Any]], columns: list[str], file: TextIO | None = None) -> None:
    """Every CSV export: a header and the rows' `columns`, each text cell made inert."""
    writer = csv.writer(file or sys.stdout)
    writer.writerow(columns)
    writer.writerows([inert(row.get(c)) for c in columns] for row in rows)


def emit_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False)
    out.print_json(text) if out.is_terminal else print(text)  # noqa: T201


def shown(flag: dict[str, Any]) -> str:
    return "" if flag["value"] is None else f"{flag['value']:g} {flag['unit'] or ''}"


def interaction_checks(medication: dict[str, Any]) -> str:
    if not medication["checked"]:
        return "unlisted: interactions not checked"
    return "checked: " + (", ".join(medication["interactions"]) or "no interaction rule applies")


def _piped(value: Any) -> str:
    """A cell of a piped table: on one line, and inert when it is text."""
    if value is None:
        return ""
    return inert(" ".join(value.split())) if isinstance(value, str) else str(value)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table for a terminal; piped or redirected, plain tab-separated rows that never wrap (so
    `monitor overdue | grep nurse@example.org` finds every row whole), their text cells inert for a
    spreadsheet that opens the file."""
    if not out.is_terminal:
        print(title)  # noqa: T201
        for r in [columns, *rows]:
            print("\t".join(_piped(v) for v in r))  # noqa: T201
        return
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)


def progress_bar(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


def show_plan_source(run: dict[str, Any] | None, day: date, *, caption: bool) -> None:
    """Say which daily run the stored plan comes from (`caption`: on stdout, for people) and warn on
    stderr when it is older than the date asked for: the list may then be out of date."""
    if run is None:
        err.print(f"warning: no daily run yet: nothing is planned until `monitor run` has run for {day}",
                  markup=False)
        return
    if caption:
        out.print(f"(from the daily run of {run['date']})", markup=False)
    if run["date"] < day.isoformat():
        err.print(f"warning: the last daily run was for {run['date']}, before {day}: run `monitor run` "
                  "to bring the plan up to date", markup=False)


def show_ingest(name: str, report: IngestReport) -> bool:
    """The outcome of one file; False (with a warning on stderr) when the outcomes do not add up to
    the records its reader saw: a record unaccounted for is a bug, never silence."""
    out.print(f"{name}: {report.counts()}; records seen: {report.seen}")
    if report.critical_flags:
        out.print(f"  [bold red]{report.critical_flags} critical flags raised now[/] (see `monitor flags`)")
    if report.already_quarantined:
        out.print(f"  ({report.already_quarantined} of the quarantined were already in quarantine)")
    for reason, count in sorted(report.reasons.items()):
        out.print(f"  quarantined {count}: {reason}")
    if report.total != report.seen:
        err.print(f"monitor: warning: {name}: {report.seen} records seen but {report.total} accounted for; this "
                  "is a bug in monitor: please report it (ingesting the file again is safe)", markup=False)
    return report.total == report.seen


def show_status(view: dict[str, Any]) -> None:
    """`monitor status` as text: the verdict first, then runs, the day in progress, daemons."""
    out.print("healthy" if view["healthy"] else "UNHEALTHY: " + "; ".join(view["problems"]), markup=False)
    table("daily cycles", ["date", "status", "started", "finished", "seconds", "evaluated", "failed", "by"],
          [[r["date"], r["status"] + (f" ({r['reason']})" if r["reason"] else ""), r["started_at"], r["finished_at"],
            r["seconds"], r["evaluated"], r["failed"], ", ".join(r["by"])] for r in view["runs"]])
    p = view["in_progress"]
    if p is not None:
        out.print(f"{p['date']} {'in progress' if p['alive'] else 'not finished, no process working on it'}: "
                  f"{p['evaluated']} evaluated, {p['left']} due left ({p['claimed']} being evaluated now), "
                  f"{p['failed']} failed", markup=False)
    table("daemons", ["daemon", "state", "started", "last heartbeat", "seconds ago", "MLLP port"],
          [[d["owner"], d["state"], d["started_at"], d["beat_at"], d["seconds_since_beat"], d["mllp_port"]]
           for d in view["daemons"]])
    mllp = view["mllp_today"]
    detail = ", ".join(f"{v} {k}" for k, v in mllp.items() if k != "messages")
    out.print(f"MLLP messages today: {mllp['messages']}" + (f" ({detail})" if detail else ""), markup=False)
    out.print(f"quarantine: {view['quarantine_open']} open records", markup=False)
    o = view["outbox"]
    out.print(f"outbox: {o['pending'] + o['sending']} waiting, {o['sent']} sent, {o['dead']} dead-lettered, "
              f"{o['cancelled']} cancelled", markup=False)
