"""job result artifacts

Small typed summaries of a job's results (g2 curves, a two-time map) that the launcher uploads when a run
ends and the console draws; one row per (job, name), removed with the job.

Revision ID: 0013_job_artifacts
Revises: 0012_app_retry_on_error
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013_job_artifacts"
down_revision = "0012_app_retry_on_error"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_artifacts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "job_id",
            BigId,
            sa.ForeignKey("jobs.id", name="fk_job_artifacts_job_id_jobs", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner_id", BigId, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("content", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_artifacts"),
        sa.UniqueConstraint("job_id", "name", name="uq_job_artifacts_job_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_artifacts_owner_id_id", "job_artifacts", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_artifacts_owner_id_id", table_name="job_artifacts")
    op.drop_table("job_artifacts")
