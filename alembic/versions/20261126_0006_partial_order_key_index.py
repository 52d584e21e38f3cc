"""order-key indexes hold only the results that have one

Only HL7 results carry an order key. The index on it held a NULL entry for every CSV and FHIR
result too, written with each insert and never read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 20:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('held_result', 'lab_result')
HAS_KEY = sa.text('order_key IS NOT NULL')


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f'ix_{table}_order_key', table_name=table)
        op.create_index(f'ix_{table}_order_key', table, ['order_key'], sqlite_where=HAS_KEY,
                        postgresql_where=HAS_KEY)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f'ix_{table}_order_key', table_name=table)
        op.create_index(f'ix_{table}_order_key', table, ['order_key'])
