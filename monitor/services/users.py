"""Web users and API tokens: who may log in, with which role and sites, and the login rate limit.

Passwords are stored as Argon2id hashes (pwdlib); API tokens as their SHA-256 (a token is a
random 256-bit secret, so a fast hash is enough). Nothing here logs an address, e-mail or secret.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from monitor.db.tables import ApiToken, LoginAttempt, WebSession, WebUser
from monitor.domain.errors import NotFound, UserError
from monitor.services.audit import audit

HASHER = PasswordHash((Argon2Hasher(),))
MIN_PASSWORD = 12
# A hash to verify against when the account does not exist, so that a wrong e-mail takes as long
# as a wrong password (no account discovery by timing).
_DUMMY = HASHER.hash("not a password of anyone")


class Role(StrEnum):
    ADMIN = "admin"  # every site; quarantine replay
    COORDINATOR = "coordinator"  # their sites; works flags, records doses and results
    VIEWER = "viewer"  # their sites; reads only


@dataclass(frozen=True)
class User:
    """A logged-in user as the web app and API see them."""

    id: int
    email: str
    role: Role
    sites: tuple[str, ...]

    @property
    def all_sites(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def may_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.COORDINATOR)


@dataclass(frozen=True)
class Limits:
    """The login rate limit: this many failures in the window lock the account or the address."""

    per_account: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)


class LoginRefused(Exception):
    """A login that did not succeed; the message is safe to show (it names no account)."""


def _user(row: WebUser) -> User:
    return User(row.id or 0, row.email, Role(row.role), tuple(row.sites or ()))


def _email(email: str) -> str:
    e = email.strip().lower()
    if "@" not in e or len(e) > 200 or any(c.isspace() or ord(c) < 32 for c in e):
        raise UserError(f"{email!r} is not an e-mail address; give the address the user logs in with")
    return e


def _password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("the password is too long: at most 1,024 characters")
    return password


def _role_sites(role: str, sites: list[str]) -> tuple[Role, list[str]]:
    try:
        r = Role(role)
    except ValueError:
        raise UserError(f"--role {role!r} must be admin, coordinator or viewer") from None
    clean = sorted({s.strip() for s in sites if s.strip()})
    if r != Role.ADMIN and not clean:
        raise UserError(f"a {r.value} sees only their sites' patients: give at least one --site")
    return r, clean


def add_user(session: Session, email: str, password: str, *, role: str, sites: list[str], by: str,
             now: datetime) -> User:
    e = _email(email)
    r, clean = _role_sites(role, sites)
    if session.exec(select(WebUser).where(WebUser.email == e)).first() is not None:
        raise UserError(f"a user {e} exists already; change their password with `monitor users reset-password`")
    row = WebUser(email=e, password_hash=HASHER.hash(_password(password)), role=r.value, sites=clean, created_at=now)
    session.add(row)
    session.flush()
    audit(session, actor=by, action="user-add", entity="web_user", entity_id=row.id, now=now,
          after={"role": r.value, "sites": clean})
    return _user(row)


def find_user(session: Session, email: str) -> WebUser:
    row = session.exec(select(WebUser).where(WebUser.email == email.strip().lower())).first()
    if row is None:
        raise NotFound(f"no user {email.strip().lower()!r}; list them with `monitor users list`")
    return row


def list_users(session: Session) -> list[dict[str, object]]:
    return [{"email": u.email, "role": u.role, "sites": list(u.sites or ()), "disabled": u.disabled,
             "created_at": u.created_at.isoformat(timespec="seconds")}
            for u in session.exec(select(WebUser).order_by(col(WebUser.email))).all()]


def disable_user(session: Session, email: str, *, by: str, now: datetime) -> None:
    row = find_user(session, email)
    row.disabled = True
    end_sessions(session, row.id or 0, now=now)
    for token in session.exec(select(ApiToken).where(ApiToken.user_id == row.id,
                                                     col(ApiToken.revoked_at).is_(None))).all():
        token.revoked_at = now
    audit(session, actor=by, action="user-disable", entity="web_user", entity_id=row.id, now=now)


def reset_password(session: Session, email: str, password: str, *, by: str, now: datetime) -> None:
    row = find_user(session, email)
    row.password_hash = HASHER.hash(_password(password))
    row.disabled = False
    end_sessions(session, row.id or 0, now=now)
    audit(session, actor=by, action="user-password", entity="web_user", entity_id=row.id, now=now)


def start_session(session: Session, user: User, *, now: datetime) -> str:
    """A new login's token (for the cookie); only its hash is kept."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=_digest(token), user_id=user.id, created_at=now))
    return token


def session_user(session: Session, token: str, *, now: datetime, lasts: timedelta) -> User | None:
    """The user of a login, while it lasts and was not ended (logout, password reset, disable)."""
    found = session.exec(select(WebSession, WebUser).join(WebUser, col(WebUser.id) == WebSession.user_id)
                         .where(WebSession.id == _digest(token))).first()
    if found is None:
        return None
    login, row = found
    if login.ended_at is not None or now - login.created_at > lasts or row.disabled:
        return None
    return _user(row)


def end_session(session: Session, token: str, *, now: datetime) -> None:
    """Logout: the login ends here, whatever copy of its cookie is left anywhere."""
    found = session.exec(select(WebSession, WebUser.email).join(WebUser, col(WebUser.id) == WebSession.user_id)
                         .where(WebSession.id == _digest(token))).first()
    if found is not None and found[0].ended_at is None:
        found[0].ended_at = now
        audit(session, actor=found[1], action="logout", entity="web_user", entity_id=found[0].user_id, now=now)


def end_sessions(session: Session, user_id: int, *, now: datetime) -> None:
    """Every login of the user ends now (a password reset, a disable)."""
    session.execute(update(WebSession).where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
                    .values(ended_at=now))


def _failures(session: Session, column: object, value: str, since: datetime) -> int:
    return session.exec(select(func.count()).select_from(LoginAttempt).where(
        column == value, col(LoginAttempt.at) >= since, col(LoginAttempt.ok).is_(False))).one()


def log_in(session: Session, email: str, password: str, *, address: str, now: datetime,
           limits: Limits = Limits()) -> User:
    """The user whose e-mail and password these are; LoginRefused otherwise, also while the account
    or the address has had `limits` failures in the window (then even the right password waits).

    The attempt is written, as a failure, and committed before any count or check, so that
    attempts sent in parallel each see the others: no more than the limit are ever checked. One
    refused for the limit is then removed (a lockout ends a window after the last checked
    failure, however often someone keeps trying)."""
    e = email.strip().lower()[:200]
    if any(ord(c) < 32 or ord(c) == 127 for c in e + address):
        raise LoginRefused("wrong e-mail or password")
    address = address[:64]
    since = now - limits.window
    attempt = LoginAttempt(at=now, email=e, address=address, ok=False)
    session.add(attempt)
    # An old account's attempts outside the window are not needed any more.
    session.execute(delete(LoginAttempt).where(col(LoginAttempt.email) == e, col(LoginAttempt.at) < since))
    session.commit()
    if (_failures(session, LoginAttempt.email, e, since) > limits.per_account
            or _failures(session, LoginAttempt.address, address, since) > limits.per_address):
        session.delete(attempt)
        session.commit()
        minutes = int(limits.window.total_seconds() // 60)
        raise LoginRefused(f"too many failed logins: try again in {minutes} minutes")
    row = session.exec(select(WebUser).where(WebUser.email == e)).first()
    ok, new_hash = HASHER.verify_and_update(password[:1024], row.password_hash if row else _DUMMY)
    if not ok or row is None or row.disabled:
        raise LoginRefused("wrong e-mail or password")  # the attempt stays a failure
    attempt.ok = True
    if new_hash:  # the hashing parameters changed since: store the password with the current ones
        row.password_hash = new_hash
    audit(session, actor=row.email, action="login", entity="web_user", entity_id=row.id, now=now)
    session.commit()
    return _user(row)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(session: Session, email: str, *, name: str, by: str, now: datetime) -> str:
    """A new API token acting as the user; the secret is returned once and only its hash kept."""
    row = find_user(session, email)
    if row.disabled:
        raise UserError(f"user {row.email} is disabled; reset their password first")
    if not name.strip() or len(name) > 100:
        raise UserError("--name must say what the token is for (at most 100 characters)")
    secret = "mon_" + secrets.token_urlsafe(32)
    token = ApiToken(name=name.strip(), token_hash=_digest(secret), user_id=row.id or 0, created_at=now)
    session.add(token)
    session.flush()
    audit(session, actor=by, action="token-add", entity="api_token", entity_id=token.id, now=now, user=row.id)
    return secret


def list_tokens(session: Session) -> list[dict[str, object]]:
    rows = session.exec(select(ApiToken, WebUser.email).join(WebUser, col(WebUser.id) == ApiToken.user_id)
                        .order_by(col(ApiToken.id))).all()
    return [{"id": t.id, "name": t.name, "user": email, "created_at": t.created_at.isoformat(timespec="seconds"),
             "last_used_at": None if t.last_used_at is None else t.last_used_at.isoformat(timespec="seconds"),
             "revoked": t.revoked_at is not None} for t, email in rows]


def revoke_token(session: Session, token_id: int, *, by: str, now: datetime) -> None:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token with id {token_id}; list them with `monitor tokens list`")
    token.revoked_at = token.revoked_at or now
    audit(session, actor=by, action="token-revoke", entity="api_token", entity_id=token_id, now=now)


def user_of_token(session: Session, secret: str, *, now: datetime) -> User | None:
    """The user a bearer token acts as; None for an unknown or revoked token or a disabled user."""
    found = session.exec(select(ApiToken, WebUser).join(WebUser, col(WebUser.id) == ApiToken.user_id)
                         .where(ApiToken.token_hash == _digest(secret))).first()
    if found is None:
        return None
    token, row = found
    if token.revoked_at is not None or row.disabled:
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=5):
        token.last_used_at = now  # at most one write per token every 5 minutes
        session.commit()
    return _user(row)
