"""the audit trail: who caused every event, and a log of access and ownership changes

``events.actor`` names who caused each job event ("user:alice", "launcher:polaris (session 12)",
"placement", "system"…; "" for events written before this revision). ``audit_log`` records the actions
that are not a job's state change (site tokens made, rotated or revoked; sites, apps and jobs deleted;
users disabled…), with their actor. See beambridge.server.audit.

Revision ID: 0016_audit_trail
Revises: 0015_job_runs
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016_audit_trail"
down_revision = "0015_job_runs"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (a batch rebuild on SQLite would drop the table's AUTOINCREMENT).
    op.add_column("events", sa.Column("actor", sa.String(200), nullable=False, server_default=""))
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("timestamp", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_owner_id_id", "audit_log", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_owner_id_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_column("events", "actor")  # SQLite 3.35+ drops a column in place
