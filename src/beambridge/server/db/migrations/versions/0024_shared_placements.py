"""jobs.placed_with: alike jobs of one request share one placement row and one decision event

A bulk create by app name places alike jobs as one group; the group's first job keeps the group's
``job_placements`` row and its one decision event, and each job of the group names that job in
``placed_with`` (null: the job has its own row and events, as every job placed before this revision).
A partial index finds the jobs waiting to be placed without reading the backlog of placed ones.

Revision ID: 0024_shared_placements
Revises: 0023_session_apps
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_shared_placements"
down_revision = "0023_session_apps"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("placed_with", ID, nullable=True))
    op.create_index(
        "ix_jobs_awaiting_placement",
        "jobs",
        ["owner_id"],
        postgresql_where=sa.text("awaiting_placement IS true"),
        sqlite_where=sa.text("awaiting_placement IS 1"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_awaiting_placement", table_name="jobs")
    op.drop_column("jobs", "placed_with")  # SQLite 3.35+ drops a column in place
