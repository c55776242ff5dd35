"""placement across facilities

Jobs that name an app and a set of sites are bound to one site by the placement service. ``jobs`` gets
``awaiting_placement`` (the job waits to be bound: late binding of children, jobs no site takes now; sites
never see such a job); ``job_placements`` keeps what the submitter asked for (app name, eligible sites or a
site group, policy, hedge, parameters as given) and the last decision; ``site_groups`` are named sets of
sites a user defines; ``sites`` gets the owner's drain (planned maintenance: no new work).

Revision ID: 0009_placement
Revises: 0008_job_wall_time_limit
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009_placement"
down_revision = "0008_job_wall_time_limit"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (a batch rebuild on SQLite would drop the tables' AUTOINCREMENT).
    op.add_column(
        "jobs", sa.Column("awaiting_placement", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("sites", sa.Column("drained_at", Time))
    op.add_column("sites", sa.Column("drain_reason", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "site_groups",
        sa.Column("id", ID, primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("sites", JSON, nullable=False),
        sa.Column("policy", sa.String(32)),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_site_groups"),
        sa.UniqueConstraint("owner_id", "name", name="uq_site_groups_owner_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "job_placements",
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("app_name", sa.String(100), nullable=False),
        sa.Column("sites", JSON, nullable=False),
        sa.Column("site_group", sa.String(100)),
        sa.Column("policy", sa.String(32)),
        sa.Column("hedge", sa.Boolean, nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("decided_at", Time),
        sa.Column("finish_p95_s", sa.Float),
        sa.Column("placements", sa.Integer, nullable=False),
        sa.Column("hedge_job_id", ID),
        sa.PrimaryKeyConstraint("job_id", name="pk_job_placements"),
        sa.Index("ix_job_placements_owner_id", "owner_id"),
    )


def downgrade() -> None:
    op.drop_table("job_placements")
    op.drop_table("site_groups")
    keep = {"sqlite_autoincrement": True}
    with op.batch_alter_table("sites", schema=None, table_kwargs=keep) as batch_op:
        batch_op.drop_column("drain_reason")
        batch_op.drop_column("drained_at")
    with op.batch_alter_table("jobs", schema=None, table_kwargs=keep) as batch_op:
        batch_op.drop_column("awaiting_placement")
