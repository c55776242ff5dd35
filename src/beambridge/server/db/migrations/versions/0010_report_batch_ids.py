"""launcher report batches are idempotent

``sessions.last_report_batch`` keeps the id of the last report batch the session applied: the launcher
sends its batches one at a time, in order, so a batch sent again (its answer was lost) is recognised and
answered without being applied twice.

Revision ID: 0010_report_batch_ids
Revises: 0009_placement
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_report_batch_ids"
down_revision = "0009_placement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (a batch rebuild on SQLite would drop the table's AUTOINCREMENT).
    op.add_column("sessions", sa.Column("last_report_batch", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_report_batch")
