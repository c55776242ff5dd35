"""a job's wall-time limit is named apart from a pilot's allocation

``jobs.wall_time_min`` (the job's limit, 0 = none) becomes ``jobs.wall_time_limit_min``;
``batch_jobs.wall_time_min`` (the pilot's allocation) keeps its name.

Revision ID: 0008_job_wall_time_limit
Revises: 0007_beamline
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008_job_wall_time_limit"
down_revision = "0007_beamline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain rename on both dialects (SQLite >= 3.25): no table rebuild, no copy of the rows
    op.execute("ALTER TABLE jobs RENAME COLUMN wall_time_min TO wall_time_limit_min")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs RENAME COLUMN wall_time_limit_min TO wall_time_min")
