"""Quarantine rows: what records share is stored once, and a record that fails again keeps its row.

A quarantined record's raw text is its parts (`QuarantinePart`: an HL7 message's MSH, PID and OBR
segments, the times a FHIR report's members inherit; see ingest/shared_parts.py), then its own text.
The same record quarantined again (a replay, a re-delivery: the same format and raw text) updates
its row — attempts, last reason, last tried — and opens it again: it never adds a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from monitor.db.tables import Quarantine, QuarantinePart
from monitor.db.upsert import insert_ignore, select_in


def keep(session: Session, rejected: Sequence[dict[str, Any]], parts: Mapping[str, str]) -> int:
    """Quarantine `rejected` rows (as `Prepared.reject` makes them: "parts" are digests of `parts`,
    "at" when the record failed). Returns how many of them were quarantined already."""
    if not rejected:
        return 0
    ids = _part_ids(session, {digest for row in rejected for digest in row["parts"]}, parts)
    rows: dict[str, dict[str, Any]] = {}  # by record key: the same record twice in a batch is one row
    for r in rejected:
        if (row := rows.get(r["record_key"])) is not None:
            row.update(attempts=row["attempts"] + 1, reason=r["reason"], last_tried_at=r["at"])
            continue
        rows[r["record_key"]] = {
            "record_key": r["record_key"], "format": r["format"], "origin": r["origin"],
            "parts": [ids[digest] for digest in r["parts"]] or None, "raw": r["raw"], "reason": r["reason"],
            "status": "open", "created_at": r["at"], "attempts": 1, "last_tried_at": r["at"]}
    there = len(select_in(session, Quarantine, ("id",), "record_key", list(rows)))
    _upsert(session, list(rows.values()))
    return len(rejected) - (len(rows) - there)


def _part_ids(session: Session, digests: set[str], texts: Mapping[str, str]) -> dict[str, int]:
    if not digests:
        return {}
    insert_ignore(session, QuarantinePart, [{"digest": d, "text": texts[d]} for d in sorted(digests)], ["digest"])
    return dict(select_in(session, QuarantinePart, ("digest", "id"), "digest", digests))


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert each row, or update the row already there under its record key."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = Quarantine.__table__  # type: ignore[attr-defined]
    stmt = insert(table)
    session.execute(stmt.on_conflict_do_update(index_elements=["record_key"], set_={
        "reason": stmt.excluded.reason, "last_tried_at": stmt.excluded.last_tried_at,
        "attempts": table.c.attempts + stmt.excluded.attempts, "status": "open", "resolved_at": None,
    }), rows)


def raw_texts(session: Session, rows: Sequence[Quarantine]) -> list[str]:
    """Each quarantined record's whole raw text: its parts, then its own text."""
    wanted = {part for q in rows for part in q.parts or ()}
    texts: dict[int, str] = dict(select_in(session, QuarantinePart, ("id", "text"), "id", wanted)) if wanted else {}
    return ["".join(texts[part] for part in q.parts or ()) + q.raw for q in rows]
