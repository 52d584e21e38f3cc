"""Who is asking: the session's user (pages), the bearer token's (API), the CSRF token of every
form, and the role a route needs. The session cookie (signed) holds the login's random token,
whose hash is a `web_session` row (logout, a password reset or a disable ends it there), and the
CSRF token; nothing else."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session

from monitor.app import App
from monitor.domain.errors import UserError
from monitor.services.users import User, user_of_token
from monitor.services.users import session_user as session_user_of

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class LoginNeeded(Exception):
    """A page asked for without a valid session: the app redirects to /login."""


def app_of(request: Request) -> App:
    a: App = request.app.state.monitor
    return a


def db(request: Request) -> Iterator[Session]:
    with app_of(request).session() as s:
        yield s


DB = Annotated[Session, Depends(db)]


def no_control(value: str, name: str) -> str:
    """A query, path or form value without control characters (a NUL cannot be stored in PostgreSQL)."""
    if any((ord(c) < 32 and c not in "\t\r\n") or ord(c) == 127 for c in value):
        raise UserError(f"{name} holds a control character; type it again")
    return value


def clean_request(request: Request) -> None:
    """No control character in the path or query (every API route)."""
    for name, value in [*request.query_params.items(), *request.path_params.items()]:
        no_control(str(value), name)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form has one too)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Every form post and HTMX request carries the session's token (a form field or a header)."""
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise HTTPException(403, "the form has expired or did not come from this site: reload the page and try again")


def session_user(request: Request, s: DB) -> User:
    a = app_of(request)
    token = request.session.get("sid")
    user = session_user_of(s, token, now=a.now(), lasts=timedelta(hours=a.settings.web.session_hours)) \
        if isinstance(token, str) else None
    if user is None:
        request.session.clear()
        raise LoginNeeded()
    request.state.user = user
    return user


def token_user(request: Request, s: DB) -> User:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    user = user_of_token(s, secret.strip(), now=app_of(request).now()) if scheme.lower() == "bearer" else None
    if user is None:
        raise HTTPException(401, "a valid API token is needed: Authorization: Bearer <token> (`monitor tokens add`)",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def writer(user: Annotated[User, Depends(session_user)]) -> User:
    if not user.may_write:
        raise HTTPException(403, "a viewer cannot change anything; ask an admin for the coordinator role")
    return user


def admin(user: Annotated[User, Depends(session_user)]) -> User:
    if user.role != "admin":
        raise HTTPException(403, "only an admin may do this")
    return user


def api_admin(user: Annotated[User, Depends(token_user)]) -> User:
    if user.role != "admin":
        raise HTTPException(403, "only an admin's token may ingest results")
    return user


PageUser = Annotated[User, Depends(session_user)]
Writer = Annotated[User, Depends(writer)]
Admin = Annotated[User, Depends(admin)]
ApiUser = Annotated[User, Depends(token_user)]
ApiAdmin = Annotated[User, Depends(api_admin)]
Csrf = Depends(check_csrf)


def sites_of(user: User) -> tuple[str, ...] | None:
    return None if user.all_sites else user.sites
