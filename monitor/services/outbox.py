"""The outbox: every e-mail monitor sends is first a row, written in the transaction of what caused
it under a natural key (a digest: coordinator and date; an alert: flag and kind), so nothing is
lost and nothing is queued twice. Delivery comes later, from any process:

- claim: due rows are marked `sending` by one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
  SQLite's write lock on its own), held for `claim_seconds` by this delivery call (a sender of
  its own, even beside another thread of the same process);
- renew the claim (committed), send, then mark `sent` and commit, one message at a time, each
  write only while the claim stands: a sender whose claim lapsed and was taken over sends
  nothing more, and a crash between the server's acceptance and the commit resends at most that
  message, with the same Message-ID;
- an alert whose flag was acknowledged or resolved before it could be sent is `cancelled`, with why;
- a temporary failure (4xx, the server down) waits `retry_seconds` doubled per attempt, with
  jitter; after `max_attempts` it is dead, as is a permanent failure (5xx, a malformed address),
  with the reason. Every attempt is a row (`outbox_attempt`). `retry` gives a dead one another go.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from monitor.db.tables import FlagRow, OutboxAttempt, OutboxMessage
from monitor.db.upsert import insert_ignore
from monitor.domain.errors import NotFound, UserError
from monitor.domain.items import FlagStatus
from monitor.notify.render import message, message_id
from monitor.notify.transport import Failed, Permanent, Transport, Unreachable

PENDING, SENDING, SENT, DEAD, CANCELLED = "pending", "sending", "sent", "dead", "cancelled"
STATUSES = (PENDING, SENDING, SENT, DEAD, CANCELLED)
LONGEST_WAIT = timedelta(hours=6)
CLAIM = 50  # messages claimed at once


@dataclass(frozen=True)
class Policy:
    """How delivery retries (the [outbox] settings)."""

    max_attempts: int = 10
    retry_seconds: int = 60
    claim_seconds: int = 300

    def wait(self, attempts: int, rng: random.Random) -> timedelta:
        """Before attempt `attempts + 1`: exponential, capped at LONGEST_WAIT, with "equal jitter"
        (half fixed, half random) so that many waiting messages do not return together."""
        full = min(timedelta(seconds=self.retry_seconds * 2 ** min(max(attempts - 1, 0), 20)), LONGEST_WAIT)
        return full / 2 + full / 2 * rng.random()


@dataclass(frozen=True)
class Letter:
    """A message to queue: its natural key says what it is about (one per key, ever)."""

    key: str
    kind: str  # digest, alert, escalation
    recipient: str
    subject: str
    text: str
    html: str | None = None
    flag_id: int | None = None


def enqueue(session: Session, letters: Sequence[Letter], *, sender: str, now: datetime) -> int:
    """Queue the letters whose key is new, in the caller's transaction; how many were."""
    rows = [{"key": x.key, "kind": x.kind, "recipient": x.recipient, "subject": x.subject, "text_body": x.text,
             "html_body": x.html, "message_id": message_id(x.key, sender), "flag_id": x.flag_id,
             "created_at": now, "status": PENDING, "attempts": 0, "next_attempt_at": now} for x in letters]
    return len(insert_ignore(session, OutboxMessage, rows, ["key"]))


@dataclass
class Delivery:
    """What one delivery pass did."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    unreachable: str | None = None  # why the pass stopped early: the server could not be used

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retried": self.retried, "dead": self.dead, "unreachable": self.unreachable}


def _due(now: datetime, *, any_time: bool) -> Any:
    waiting = col(OutboxMessage.status) == PENDING
    if not any_time:
        waiting = waiting & (col(OutboxMessage.next_attempt_at) <= now)
    lapsed = (col(OutboxMessage.status) == SENDING) & (col(OutboxMessage.claimed_until) < now)
    return or_(waiting, lapsed)


def claim(session: Session, *, now: datetime, by: str, policy: Policy, limit: int = CLAIM,
          any_time: bool = False, ids: Sequence[int] | None = None, skip: Collection[int] = ()) -> list[int]:
    """Mark up to `limit` due messages (not in `skip`) as this sender's (committed); their ids,
    oldest first."""
    pick = select(OutboxMessage.id).where(_due(now, any_time=any_time)).order_by(col(OutboxMessage.id)).limit(limit)
    if ids is not None:
        pick = pick.where(col(OutboxMessage.id).in_(ids))
    if skip:
        pick = pick.where(col(OutboxMessage.id).not_in(list(skip)))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed = session.execute(
        update(OutboxMessage).where(col(OutboxMessage.id).in_(pick.scalar_subquery()))
        .values(status=SENDING, claimed_by=by, claimed_until=now + timedelta(seconds=policy.claim_seconds))
        .returning(col(OutboxMessage.id))).scalars().all()
    session.commit()
    return sorted(claimed)


def _ours(mid: int, by: str) -> Any:
    """The message, while this sender's claim on it stands (nobody took it over)."""
    return (col(OutboxMessage.id) == mid) & (col(OutboxMessage.claimed_by) == by) & (
        col(OutboxMessage.status) == SENDING)


def _changed(session: Session, statement: Any) -> bool:
    """Run an UPDATE of one row; whether it matched."""
    return session.connection().execute(statement).rowcount == 1


def _settle(session: Session, mid: int, by: str, at: datetime, outcome: str, detail: str | None,
            **values: Any) -> bool:
    """Write a claimed message's outcome and its attempt, committed, if the claim still stands;
    whether it did (if not, the sender that took it over records its own)."""
    won = _changed(session, update(OutboxMessage).where(_ours(mid, by))
                   .values(claimed_by=None, claimed_until=None, **values))
    if won:
        session.add(OutboxAttempt(message_id=mid, at=at, by=by, outcome=outcome, detail=detail))
    session.commit()
    return won


def _release(session: Session, ids: Sequence[int], by: str) -> None:
    """Claimed messages not tried in this pass go back to waiting, as they were."""
    if ids:
        session.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids),
                                                    col(OutboxMessage.claimed_by) == by,
                                                    col(OutboxMessage.status) == SENDING)
                        .values(status=PENDING, claimed_by=None, claimed_until=None))
        session.commit()


def deliver(session: Session, transport: Transport, *, sender: str, clock: Callable[[], datetime], by: str,
            policy: Policy, rng: random.Random | None = None, any_time: bool = False,
            ids: Sequence[int] | None = None, stop: Callable[[], bool] = lambda: False) -> Delivery:
    """Send what is due (`any_time`: every waiting message, whatever its retry time; `ids`: only
    these), a claimed batch at a time, each message at most once a pass, until none is left, the
    server cannot be reached, or `stop()`. Each outcome is committed as it happens. `by` must be
    this call's own (two threads of one process are two senders)."""
    rng = rng or random.Random()
    done = Delivery()
    tried: set[int] = set()
    try:
        while not stop() and done.unreachable is None:
            claimed = claim(session, now=clock(), by=by, policy=policy, any_time=any_time, ids=ids, skip=tried)
            if not claimed:
                break
            for n, mid in enumerate(claimed):
                if stop():
                    _release(session, claimed[n:], by)
                    break
                tried.add(mid)
                if not _send_one(session, transport, mid, sender=sender, clock=clock, by=by, policy=policy,
                                 rng=rng, done=done):
                    _release(session, claimed[n + 1:], by)
                    break
    finally:
        transport.close()
    return done


def _send_one(session: Session, transport: Transport, mid: int, *, sender: str, clock: Callable[[], datetime],
              by: str, policy: Policy, rng: random.Random, done: Delivery) -> bool:
    """Send one claimed message and commit its outcome; False when the server cannot be used.
    The claim is renewed first (committed): a message whose claim lapsed and was taken over is
    left to the sender that took it."""
    now = clock()
    renewed = _changed(session, update(OutboxMessage).where(_ours(mid, by)).values(
        claimed_until=now + timedelta(seconds=policy.claim_seconds), attempts=col(OutboxMessage.attempts) + 1))
    session.commit()
    if not renewed:
        return True
    row = session.get(OutboxMessage, mid, populate_existing=True)
    assert row is not None
    if (why := _moot(session, row)) is not None:
        _settle(session, mid, by, now, CANCELLED, why, status=CANCELLED, last_error=why)
        return True
    msg = message(sender=sender, to=row.recipient, subject=row.subject, text=row.text_body, html=row.html_body,
                  key=row.key, msgid=row.message_id, at=row.created_at)
    try:
        transport.send(msg)
    except Failed as e:
        at, detail = clock(), str(e)
        if isinstance(e, Permanent) or row.attempts >= policy.max_attempts:
            why = detail if isinstance(e, Permanent) else f"gave up after {row.attempts} attempts; the last: {detail}"
            _settle(session, mid, by, at, DEAD, detail, status=DEAD, last_error=why)
            done.dead += 1
        else:
            _settle(session, mid, by, at, "retry", detail, status=PENDING, last_error=detail,
                    next_attempt_at=at + policy.wait(row.attempts, rng))
            done.retried += 1
        if isinstance(e, Unreachable):
            done.unreachable = detail
            return False
        return True
    at = clock()
    _settle(session, mid, by, at, SENT, None, status=SENT, sent_at=at, last_error=None)
    done.sent += 1
    return True


def _moot(session: Session, row: OutboxMessage) -> str | None:
    """Why an alert need not go (its flag acknowledged or resolved before it could); None: it must."""
    if row.flag_id is None:
        return None
    flag = session.get(FlagRow, row.flag_id)
    if flag is None or flag.status == FlagStatus.OPEN:
        return None
    return f"not sent: flag {row.flag_id} was {flag.status} before the alert could be sent"


def retry(session: Session, message: int, *, now: datetime) -> OutboxMessage:
    """A dead (or waiting) message due again now, its attempts counted afresh."""
    row = session.get(OutboxMessage, message)
    if row is None:
        raise NotFound(f"no outbox message with id {message}; list them with `monitor outbox list`")
    if row.status == SENT:
        sent = row.sent_at.isoformat(timespec="seconds") if row.sent_at else "?"
        raise UserError(f"outbox message {message} was sent at {sent} (UTC); it is not sent twice")
    if row.status == SENDING and row.claimed_until is not None and row.claimed_until >= now:
        raise UserError(f"outbox message {message} is being sent by {row.claimed_by}")
    row.status, row.attempts, row.next_attempt_at, row.claimed_by, row.claimed_until = PENDING, 0, now, None, None
    session.commit()
    return row


def counts(session: Session) -> dict[str, int]:
    """Messages by status (every status, zero when none)."""
    found = dict(session.exec(select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))).all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def by_keys(session: Session, keys: Sequence[str]) -> list[OutboxMessage]:
    return list(session.exec(select(OutboxMessage).where(col(OutboxMessage.key).in_(list(keys)))).all())


def listing(session: Session, *, status: str | None = None, limit: int = 100) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    if status is not None:
        query = query.where(col(OutboxMessage.status) == status)
    return list(session.exec(query).all())
