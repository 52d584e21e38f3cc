"""CSV source keys lead with the collection time

A CSV row without a source_id is keyed by its patient, code and collection time. The time now
comes first (`csv:{time}|{mrn}|{code}`, was `csv:{mrn}|{code}|{time}`) so that feeds, which
arrive roughly in time order, append to the unique index instead of writing all over it. Keys
already stored are rewritten, so a file ingested before the upgrade is still a duplicate after it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:40:00
"""
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORMATS = ("csv", "synthea-csv")
PAGE = 10_000

LAB = sa.text("SELECT r.id, r.source_key, r.code, p.mrn FROM lab_result r JOIN patient p ON p.id = r.patient_id "
              "WHERE r.source = 'csv' AND r.id > :after ORDER BY r.id LIMIT :page")
HELD = sa.text("SELECT id, source_key, code, mrn FROM held_result "
               "WHERE source = 'csv' AND id > :after ORDER BY id LIMIT :page")


def _time_first(key: str, code: str, mrn: str) -> str | None:
    for fmt in FORMATS:
        head = f"{fmt}:{mrn}|{code}|"
        if key.startswith(head):
            return f"{fmt}:{key[len(head):]}|{mrn}|{code}"
    return None  # a source_id key, or not one the reader derived


def _patient_first(key: str, code: str, mrn: str) -> str | None:
    tail = f"|{mrn}|{code}"
    for fmt in FORMATS:
        if key.startswith(f"{fmt}:") and key.endswith(tail) and len(key) > len(fmt) + 1 + len(tail):
            return f"{fmt}:{mrn}|{code}|{key[len(fmt) + 1:-len(tail)]}"
    return None


def _rewrite(change: Callable[[str, str, str], str | None]) -> None:
    conn = op.get_bind()
    for table, query in (("lab_result", LAB), ("held_result", HELD)):
        update = sa.text(f"UPDATE {table} SET source_key = :key WHERE id = :id")
        after = 0
        while rows := conn.execute(query, {"after": after, "page": PAGE}).all():
            changed = [{"id": i, "key": new} for i, key, code, mrn in rows if (new := change(key, code, mrn))]
            if changed:
                conn.execute(update, changed)
            after = rows[-1][0]


def upgrade() -> None:
    _rewrite(_time_first)


def downgrade() -> None:
    _rewrite(_patient_first)
