"""Review marks: which enrollments the daily cycle must evaluate, and when.

Each enrollment has a review date (`next_review_on`, the earliest day its plan can change without
new input) and a revision, bumped by every new input about it (a result, a dose, a phase, an
acknowledgement). New input lowers the review date to the day it matters from. The cycle writes
a new review date only if the revision is still the one it read before loading the patient's
data (`settle`), so input that arrives while the cycle evaluates — the MLLP listener beside the
daemon — is never overwritten: its enrollment stays due and is evaluated again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Date, bindparam, case, update
from sqlmodel import Session, col, select

from monitor.db.tables import Enrollment

_DAY = bindparam("day", type_=Date)

#: Built once (a batch's thousands of patient ids are one expanding parameter). The enrollments are
#: locked in id order, as the daily cycle writes them, so the two never deadlock on PostgreSQL.
#: `synchronize_session=False`: the session's loaded objects are not searched for the rows changed
#: (with thousands loaded, that search cost more than the daily cycle's evaluation).
_BY_PATIENT = (update(Enrollment)
               .where(col(Enrollment.id).in_(
                   select(col(Enrollment.id))
                   .where(col(Enrollment.patient_id).in_(bindparam("ids", expanding=True)),
                          col(Enrollment.status) == "active")
                   .order_by(col(Enrollment.id)).with_for_update()))
               .values(next_review_on=case((col(Enrollment.next_review_on) > _DAY, _DAY),
                                           else_=col(Enrollment.next_review_on)),
                       revision=col(Enrollment.revision) + 1)
               .execution_options(synchronize_session=False))

_ONE = (update(Enrollment).where(col(Enrollment.id) == bindparam("eid"))
        .values(next_review_on=case((col(Enrollment.next_review_on) > _DAY, _DAY),
                                    else_=col(Enrollment.next_review_on)),
                revision=col(Enrollment.revision) + 1)
        .execution_options(synchronize_session=False))

_SETTLE = (update(Enrollment)
           .where(col(Enrollment.id) == bindparam("eid"), col(Enrollment.revision) == bindparam("seen"))
           .values(next_review_on=bindparam("next_review_on", type_=Date),
                   last_evaluated_on=bindparam("evaluated_on", type_=Date), claimed_by=None, claimed_until=None)
           .execution_options(synchronize_session=False))  # no ORM object is read after it


def mark_patients(session: Session, changed_from: dict[int, date]) -> None:
    """New input about these patients (patient id -> from which day): their active enrollments are
    evaluated by the first daily cycle on or after that day."""
    by_day: dict[date, list[int]] = {}
    for patient_id, day in changed_from.items():
        by_day.setdefault(day, []).append(patient_id)
    for day, ids in sorted(by_day.items()):
        session.execute(_BY_PATIENT, {"ids": sorted(ids), "day": day})


def mark_enrollment(session: Session, enrollment_id: int, day: date) -> None:
    """New input about one enrollment, from `day` on."""
    session.execute(_ONE, {"eid": enrollment_id, "day": day})


def settle(session: Session, plans: Sequence[dict[str, Any]]) -> int:
    """Write the review dates plans computed (`eid`, `seen`: the revision read, `next_review_on`,
    `evaluated_on`), and end the daily cycle's claims on their enrollments, all in one statement,
    except where new input arrived since the revision was read (that enrollment stays due, and
    claimed, for the next pass). Returns how many were settled."""
    if not plans:
        return 0
    done = session.connection().execute(_SETTLE, list(plans))
    return int(done.rowcount)
