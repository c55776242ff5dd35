"""beamline: workflows, idempotent submissions, beamline events

A workflow is stored per user by name; a submission is one dataset through one workflow, unique per
(user, idempotency key) so that a repeat is answered with the jobs already made; beamline events record
what the beamline end saw (runs aborted, changes detected, alerts sent).

Revision ID: 0007_beamline
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007_beamline"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _owner(table: str) -> sa.Column[int]:
    return sa.Column(
        "owner_id",
        ID,
        sa.ForeignKey("users.id", name=f"fk_{table}_owner_id_users", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", ID, nullable=False),
        _owner("workflows"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("owner_id", "name", name="uq_workflows_owner_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "submissions",
        sa.Column("id", ID, nullable=False),
        _owner("submissions"),
        sa.Column("workflow", sa.String(100), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("dataset", sa.String(2048), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("job_ids", JSON, nullable=False),
        sa.Column("closed_at", TIME),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.UniqueConstraint("owner_id", "key", name="uq_submissions_owner_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_submissions_owner_id_workflow_id", "submissions", ["owner_id", "workflow", "id"])
    op.create_table(
        "beamline_events",
        sa.Column("id", ID, nullable=False),
        _owner("beamline_events"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(2048), nullable=False),
        sa.Column("workflow", sa.String(100), nullable=False),
        sa.Column("submission_id", ID),
        sa.Column("data", JSON, nullable=False),
        sa.Column("timestamp", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_beamline_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_beamline_events_owner_id_id", "beamline_events", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_table("beamline_events")
    op.drop_index("ix_submissions_owner_id_workflow_id", table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("workflows")
