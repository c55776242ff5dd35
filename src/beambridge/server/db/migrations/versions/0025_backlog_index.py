"""ix_jobs_backlog: the placement snapshot counts each site's backlog from an index alone

A bulk create by app name counts its owner's backlog (jobs placed at a site, waiting, unclaimed) per
(site, app, priority) on every request; from the table that read every waiting job's row (~100 ms at
80,000 waiting jobs on SQLite). This partial index holds exactly those jobs with the columns counted.

Revision ID: 0025_backlog_index
Revises: 0024_shared_placements
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_backlog_index"
down_revision = "0024_shared_placements"
branch_labels = None
depends_on = None

STATES = "state IN ('READY', 'STAGED_IN', 'PREPROCESSED', 'RESTART_READY') AND session_id IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_backlog",
        "jobs",
        ["owner_id", "site_id", "app_id", "priority"],
        postgresql_where=sa.text(f"{STATES} AND awaiting_placement IS false"),
        sqlite_where=sa.text(f"{STATES} AND awaiting_placement IS 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_backlog", table_name="jobs")
