"""The e-mail commands: `monitor outbox`, `monitor digest`, `monitor coordinators` (CLI.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from monitor.app import App
from monitor.cli_args import app_of, choose, day_or_today
from monitor.cli_show import emit_json, err, out, show_plan_source, table
from monitor.domain.errors import UserError
from monitor.services import coordinators, outbox, runs, views
from monitor.services.digest import build_digests, letters
from monitor.services.outbox import Delivery

outbox_app = typer.Typer(no_args_is_help=False, help="E-mails waiting, sent and dead-lettered; deliver them.")
coordinators_app = typer.Typer(no_args_is_help=False, help="Nurse coordinators: display names, escalation addresses.")

FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


def say_delivered(done: Delivery, waiting: int) -> None:
    """One line on what a delivery did; the reason when the server could not be used."""
    out.print(f"outbox: {done.sent} sent, {done.retried} to retry, {done.dead} dead-lettered; "
              f"{waiting} waiting", markup=False)
    if done.unreachable:
        err.print(f"e-mail not delivered now: {done.unreachable}; the messages wait in the outbox and are "
                  "retried (`monitor outbox list`)", markup=False)


def waiting(a: App) -> int:
    with a.session() as s:
        c = outbox.counts(s)
    return c[outbox.PENDING] + c[outbox.SENDING]


@outbox_app.callback(invoke_without_command=True)
def outbox_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(outbox_list, ctx=ctx)


def _message_view(m: Any, a: App) -> dict[str, Any]:
    zone = a.settings.clinic.zone

    def at(v: Any) -> str | None:
        return None if v is None else v.astimezone(zone).isoformat(timespec="seconds")

    return {"id": m.id, "kind": m.kind, "recipient": m.recipient, "status": m.status, "attempts": m.attempts,
            "created_at": at(m.created_at), "next_attempt_at": at(m.next_attempt_at) if m.status == "pending" else None,
            "sent_at": at(m.sent_at), "subject": m.subject, "last_error": m.last_error, "key": m.key}


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="pending, sending, sent, dead, cancelled or all")] = "all",
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="The newest this many")] = 100,
    fmt: FormatOpt = "table",
) -> None:
    """E-mails in the outbox, newest first, with their status, attempts and last error."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    choose(status, "--status", *outbox.STATUSES, "all")
    with a.session() as s:
        rows = [_message_view(m, a) for m in outbox.listing(s, status=None if status == "all" else status,
                                                            limit=limit)]
        c = outbox.counts(s)
    if fmt == "json":
        emit_json({"counts": c, "messages": rows})
        return
    table(f"Outbox ({', '.join(f'{k} {v}' for k, v in c.items())})",
          ["id", "kind", "to", "status", "attempts", "created", "next/sent", "subject", "last error"],
          [[m["id"], m["kind"], m["recipient"], m["status"], m["attempts"], m["created_at"],
            m["next_attempt_at"] or m["sent_at"], m["subject"], m["last_error"]] for m in rows])


@outbox_app.command("send")
def outbox_send(ctx: typer.Context) -> None:
    """Deliver every waiting e-mail now (whatever its retry time). Exit 1 when one could not be."""
    a = app_of(ctx)
    done = a.deliver(any_time=True)
    say_delivered(done, waiting(a))
    if done.unreachable or done.retried or done.dead:
        raise typer.Exit(1)


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context, message: Annotated[int, typer.Argument(help="Outbox message id")]) -> None:
    """Give a dead-lettered (or waiting) e-mail another go now, its attempts counted afresh."""
    a = app_of(ctx)
    with a.session() as s:
        outbox.retry(s, message, now=a.now())
    done = a.deliver(any_time=True, ids=[message])
    say_delivered(done, waiting(a))
    if not done.sent:
        raise typer.Exit(1)


def digest(
    ctx: typer.Context,
    on: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default: today in the clinic)")] = None,
    coordinator: Annotated[str | None, typer.Option(help="Only this coordinator's (an address)")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Print the text; queue and send nothing")] = False,
    html: Annotated[bool, typer.Option("--html", help="With --preview: the HTML part")] = False,
) -> None:
    """Each coordinator's digest for a date, from the stored plan: queued in the outbox (once per
    coordinator and date; the daily cycle does it when the day closes) and sent, or previewed."""
    a = app_of(ctx)
    today = day_or_today(a, on)
    if html and not preview:
        raise UserError("--html goes with --preview (it prints the HTML part instead of the text)")
    with a.session() as s:
        day = runs.day(s, "daily", today.isoformat())
        if not preview and (day is None or day.status != "done"):
            raise UserError(f"the daily cycle for {today} has not completed, so its digests would be built from an "
                            f"older plan: `monitor run --date {today}` queues and sends them; `--preview` shows "
                            "them now")
        show_plan_source(views.last_daily_run(s), today, caption=not preview)
        digests = build_digests(s, today=today, mail=a.mail, coordinator=coordinator)
        if not digests:
            raise UserError(f"no active enrollment names the coordinator {coordinator!r}; "
                            "`monitor coordinators` lists them" if coordinator else "no active enrollment")
        made = letters(digests, a.mail)
        if preview:
            for m in made:
                out.print(f"To: {m.recipient}\nSubject: {m.subject}\n", markup=False, highlight=False)
                out.print(m.html if html and m.html else m.text, markup=False, highlight=False)
            return
        queued = outbox.enqueue(s, made, sender=a.mail.sender, now=a.now())
        s.commit()
        ids = [m.id for m in outbox.by_keys(s, [m.key for m in made]) if m.id is not None]
    out.print(f"{queued} digests queued ({len(made) - queued} already in the outbox for {today})")
    done = a.deliver(ids=ids)
    say_delivered(done, waiting(a))


@coordinators_app.callback(invoke_without_command=True)
def coordinators_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(coordinators_list, ctx=ctx)


@coordinators_app.command("list")
def coordinators_list(ctx: typer.Context, fmt: FormatOpt = "table") -> None:
    """Every coordinator: the address enrollments name, display name, escalation address, patients."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    with a.session() as s:
        rows = coordinators.listing(s)
    if fmt == "json":
        emit_json(rows)
        return
    table(f"Coordinators ({len(rows)})", ["address", "name", "escalation address", "active enrollments"],
          [[r["address"], r["name"], r["escalation_address"], r["active_enrollments"]] for r in rows])


@coordinators_app.command("set")
def coordinators_set(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The coordinator's e-mail address, as enrollments name it")],
    name: Annotated[str | None, typer.Option(help="How the digest greets them")] = None,
    escalate_to: Annotated[str | None, typer.Option(
        "--escalate-to", help="Who gets a critical alert they leave unacknowledged (\"\": nobody)")] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: your user name)")] = None,
) -> None:
    """Add a coordinator or change their display name or escalation address."""
    a = app_of(ctx)
    with a.session() as s:
        row = coordinators.set_coordinator(s, address, name=name, escalation=escalate_to, by=by or a.actor,
                                           now=a.now())
        s.commit()
        out.print(f"{row.address}: name {row.name or '-'}, escalation to {row.escalation_address or 'nobody'}",
                  markup=False)
