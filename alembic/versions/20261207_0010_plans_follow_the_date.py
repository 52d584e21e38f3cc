"""plans follow the date: draw statuses and panel lapses derived when read

- `due_draw`: `status` dropped; `opens_on`, `closes_on`, `missed_on`, `shown_on`, `gone_on` added.
  A draw's status on a day (upcoming, due, overdue, missed) and whether it is listed are functions
  of the date (services/plans.py), so the daily cycle no longer evaluates an enrollment only
  because a date passed.
- `overdue_panel`: `from_on`, `until_on` added (a panel's lapse over the days it holds); unique on
  (enrollment, panel, from_on).

The rows stored before cannot say those dates: they are deleted and every active enrollment is
made due, so the next daily cycle (`monitor run`, or the daemon's next day) writes them again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replan() -> None:
    """Forget the stored draws and lapses; every enrollment evaluated since is due again."""
    op.execute("DELETE FROM due_draw")
    op.execute("DELETE FROM overdue_panel")
    op.execute("UPDATE enrollment SET next_review_on = last_evaluated_on "
               "WHERE last_evaluated_on IS NOT NULL AND last_evaluated_on < next_review_on")


def upgrade() -> None:
    _replan()
    with op.batch_alter_table('due_draw', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_due_draw_status'))
        batch_op.drop_column('status')
        batch_op.add_column(sa.Column('opens_on', sa.Date(), nullable=False))
        batch_op.add_column(sa.Column('closes_on', sa.Date(), nullable=False))
        batch_op.add_column(sa.Column('missed_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('shown_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('gone_on', sa.Date(), nullable=True))
        batch_op.create_index(batch_op.f('ix_due_draw_opens_on'), ['opens_on'], unique=False)
    with op.batch_alter_table('overdue_panel', schema=None) as batch_op:
        batch_op.drop_constraint('uq_overdue_panel_enrollment_id', type_='unique')
        batch_op.add_column(sa.Column('from_on', sa.Date(), nullable=False))
        batch_op.add_column(sa.Column('until_on', sa.Date(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_overdue_panel_enrollment_id'),
                                          ['enrollment_id', 'panel', 'from_on'])


def downgrade() -> None:
    _replan()
    with op.batch_alter_table('overdue_panel', schema=None) as batch_op:
        batch_op.drop_constraint('uq_overdue_panel_enrollment_id', type_='unique')
        batch_op.drop_column('until_on')
        batch_op.drop_column('from_on')
        batch_op.create_unique_constraint(batch_op.f('uq_overdue_panel_enrollment_id'), ['enrollment_id', 'panel'])
    with op.batch_alter_table('due_draw', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_due_draw_opens_on'))
        batch_op.drop_column('gone_on')
        batch_op.drop_column('shown_on')
        batch_op.drop_column('missed_on')
        batch_op.drop_column('closes_on')
        batch_op.drop_column('opens_on')
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False))
        batch_op.create_index(batch_op.f('ix_due_draw_status'), ['status'], unique=False)
