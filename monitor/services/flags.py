"""What a clinician does about a flag."""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlmodel import Session, col, select

from monitor.db.tables import FlagRow
from monitor.domain.digest import problem
from monitor.domain.errors import NotFound, UserError
from monitor.domain.items import FlagStatus
from monitor.domain.protocol import Severity
from monitor.services.audit import audit
from monitor.services.checks import ACTOR_CHARS, check_text
from monitor.services.review import mark_enrollment

WITH_FLAG = "with flag "  # the reason of a flag acknowledged with its problem's


def acknowledge(session: Session, flag_id: int, *, reason: str, by: str, today: date, now: datetime) -> FlagRow:
    """A clinician acknowledges a flag, saying what was done: it leaves the worklist, with the
    earlier open flags of the same problem (kind and analyte) no worse than it and not critical,
    and releases any hold they caused (the enrollment is evaluated again today)."""
    if not reason.strip():
        raise UserError("--reason is required: say what was done about the flag")
    check_text(by, "--by", ACTOR_CHARS)
    flag = session.get(FlagRow, flag_id)
    if flag is None:
        raise NotFound(f"no flag with id {flag_id}; list them with `monitor flags`")
    if flag.status == FlagStatus.ACKNOWLEDGED and not (flag.ack_reason or "").startswith(WITH_FLAG):
        # (one acknowledged with its problem's may be acknowledged for itself, with its own reason)
        raise UserError(f"flag {flag_id} was already acknowledged by {flag.acknowledged_by}")
    before = {"status": flag.status}
    flag.status, flag.acknowledged_at, flag.acknowledged_by, flag.ack_reason = FlagStatus.ACKNOWLEDGED, now, by, reason
    # One problem, one acknowledgement: the problem's earlier open flags no worse than this one go with
    # it; never another critical one (each is acknowledged for itself), never a later result.
    rank = Severity(flag.severity).rank
    same = problem(flag.kind, flag.analyte, flag.rule_id)
    covered: list[int | None] = []
    for other in session.exec(select(FlagRow).where(col(FlagRow.enrollment_id) == flag.enrollment_id,
                                                    col(FlagRow.status) == FlagStatus.OPEN,
                                                    col(FlagRow.id) != flag_id)).all():
        if (problem(other.kind, other.analyte, other.rule_id) == same and Severity(other.severity).rank <= rank
                and other.observed_on <= flag.observed_on and other.severity != Severity.CRITICAL):
            other.status, other.acknowledged_at, other.acknowledged_by = FlagStatus.ACKNOWLEDGED, now, by
            other.ack_reason = f"{WITH_FLAG}{flag_id}: {reason}"
            covered.append(other.id)
    # An acknowledged flag may release a hold (critical, or of a rule that withholds): look again today.
    mark_enrollment(session, flag.enrollment_id, today)
    # The reason's code (the web app's coded reasons: "repeat-ordered: ..."), never its free text.
    code = reason.partition(":")[0].strip()
    audit(session, actor=by, action="ack", entity="flag", entity_id=flag_id, now=now, before=before,
          after={"status": flag.status, "reason_code": code if re.fullmatch(r"[a-z-]{1,40}", code) else "text",
                 "reason_chars": len(reason)}, with_flags=covered)
    return flag
