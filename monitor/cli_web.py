"""The web app's commands: `monitor serve`, `monitor users`, `monitor tokens` (CLI.md)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from monitor.cli_args import app_of, choose
from monitor.cli_show import emit_json, err, out, table
from monitor.domain.errors import UserError
from monitor.services import users, worklists

users_app = typer.Typer(no_args_is_help=True, help="Web users: add, list, disable, reset a password.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens (bearer) for /api.")

FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_password() -> str:
    """The new password: the first line of standard input when it is not a terminal (scripts),
    else asked for twice without echo."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("no password on standard input; pipe one line, or run in a terminal to be asked")
        return line
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        raise UserError("the two passwords differ; nothing was changed")
    return first


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: setting web.host)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: setting web.port)")] = None,
) -> None:
    """The admin and coordinator web app (put a TLS proxy in front; docs/deploy.md)."""
    import uvicorn

    from monitor.web.app import create_app

    a = app_of(ctx)
    w = a.settings.web
    host, port = host or w.host, w.port if port is None else port
    if not w.secret_key.get_secret_value() and host not in LOOPBACK:
        raise UserError(f"setting web.secret_key is empty: listening on {host}, sessions must survive a restart and "
                        "be shared by every process; set MONITOR_WEB__SECRET_KEY (docs/deploy.md), or listen on "
                        "127.0.0.1 to try it")
    a.engine  # noqa: B018  (migrate, or say what is wrong, before listening)
    shown = "localhost" if host == "127.0.0.1" else host  # (browsers keep its secure cookie over http there)
    out.print(f"monitor web app on http://{shown}:{port}/ (Ctrl-C stops it)", markup=False)
    sys.stdout.flush()
    uvicorn.run(create_app(a), host=host, port=port, proxy_headers=True, forwarded_allow_ips=w.forwarded_allow_ips,
                server_header=False, log_level="warning", access_log=False)


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    email: str,
    role: Annotated[str, typer.Option(help="admin, coordinator or viewer")],
    site: Annotated[list[str] | None, typer.Option(help="A site whose patients they see (repeat for more)")] = None,
) -> None:
    """Add a web user (the password from standard input, or asked for)."""
    a = app_of(ctx)
    password = read_password()
    with a.session() as s:
        user = users.add_user(s, email, password, role=role, sites=site or [], by=a.actor, now=a.now())
        s.commit()
        unknown = worklists.unknown_sites(s, user.sites)
    where = "every site" if user.all_sites else ", ".join(user.sites)
    out.print(f"user {user.email} added: {user.role.value}, {where}", markup=False)
    if unknown:
        err.print(f"monitor: warning: no enrollment names the site {', '.join(map(repr, unknown))} yet: check the "
                  "spelling (`monitor overdue` lists each patient's site); they see no patient there until one does",
                  markup=False)


@users_app.command("list")
def users_list(ctx: typer.Context, fmt: FormatOpt = "table") -> None:
    """Every web user, with role, sites and whether disabled."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    with a.session() as s:
        rows = users.list_users(s)
    if fmt == "json":
        emit_json(rows)
        return
    table(f"Users ({len(rows)})", ["email", "role", "sites", "disabled", "created"],
          [[u["email"], u["role"], ", ".join(u["sites"]) or "every site", "yes" if u["disabled"] else "",  # type: ignore[arg-type]
            u["created_at"]] for u in rows])


@users_app.command("disable")
def users_disable(ctx: typer.Context, email: str) -> None:
    """Disable a user: their sessions and API tokens end now."""
    a = app_of(ctx)
    with a.session() as s:
        users.disable_user(s, email, by=a.actor, now=a.now())
        s.commit()
    out.print(f"user {email.strip().lower()} disabled; their sessions and tokens no longer work", markup=False)


@users_app.command("reset-password")
def users_reset(ctx: typer.Context, email: str) -> None:
    """Set a new password (from standard input, or asked for); it enables a disabled user and ends
    their sessions."""
    a = app_of(ctx)
    password = read_password()
    with a.session() as s:
        users.reset_password(s, email, password, by=a.actor, now=a.now())
        s.commit()
    out.print(f"password of {email.strip().lower()} changed; their other sessions ended", markup=False)


@tokens_app.command("add")
def tokens_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--user", help="The user the token acts as (role and sites)")],
    name: Annotated[str, typer.Option(help="What it is for, e.g. 'lab interface'")],
) -> None:
    """A new API token; it is printed once (keep it secret) and only its hash is stored."""
    a = app_of(ctx)
    with a.session() as s:
        secret = users.add_token(s, email, name=name, by=a.actor, now=a.now())
        s.commit()
    print(secret)  # noqa: T201  (alone on stdout, for scripts)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, fmt: FormatOpt = "table") -> None:
    """API tokens: id, name, user, when last used, revoked (never the secret)."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    with a.session() as s:
        rows = users.list_tokens(s)
    if fmt == "json":
        emit_json(rows)
        return
    table(f"API tokens ({len(rows)})", ["id", "name", "user", "created", "last used", "revoked"],
          [[t["id"], t["name"], t["user"], t["created_at"], t["last_used_at"] or "never",
            "yes" if t["revoked"] else ""] for t in rows])


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke an API token by id (`monitor tokens list`)."""
    a = app_of(ctx)
    with a.session() as s:
        users.revoke_token(s, token_id, by=a.actor, now=a.now())
        s.commit()
    out.print(f"token {token_id} revoked", markup=False)
