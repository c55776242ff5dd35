"""runs a launcher must stop although their job lives on

A hedged job whose copy finished its run first adopts that run and leaves the session that was running
it; ``run_stops`` tells that session's launcher (through its heartbeat, with its cancelled jobs) to stop
the run. Rows are deleted when their session ends.

Revision ID: 0019_run_stops
Revises: 0018_shared_limits
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_run_stops"
down_revision = "0018_shared_limits"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "run_stops",
        sa.Column("session_id", ID, nullable=False),  # no foreign key: see the table's comment
        sa.Column("job_id", ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "job_id", name="pk_run_stops"),
    )


def downgrade() -> None:
    op.drop_table("run_stops")
