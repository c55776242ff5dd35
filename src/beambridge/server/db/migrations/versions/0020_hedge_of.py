"""jobs.hedge_of: a hedged copy names its original

A copy made by hedging is a job of its own; listings mark it (``hedge_of``) and can leave copies out
(``GET /jobs?copies=false``). Copies made before this revision keep a null ``hedge_of`` (their tag
``hedge_copy_of`` still names the original).

Revision ID: 0020_hedge_of
Revises: 0019_run_stops
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_hedge_of"
down_revision = "0019_run_stops"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COPIES = "hedge_of IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("hedge_of", ID, nullable=True))
    op.create_index(
        "ix_jobs_hedge_of",
        "jobs",
        ["hedge_of"],
        postgresql_where=sa.text(COPIES),
        sqlite_where=sa.text(COPIES),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_hedge_of", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("hedge_of")
