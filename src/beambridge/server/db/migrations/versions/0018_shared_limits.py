"""per-user quotas and the login throttle, shared by every server process

``quota_usage``: jobs created per user and minute (the per-minute creation quota, counted in the creating
transaction). ``login_failures``: failed logins per user name and per client address with their lock-out
(epoch seconds), so that several server workers enforce one limit, not one each.

Revision ID: 0018_shared_limits
Revises: 0017_site_token_expiry
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_shared_limits"
down_revision = "0017_site_token_expiry"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("jobs_created", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "minute", name="pk_quota_usage"),
    )
    op.create_table(
        "login_failures",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False),
        sa.Column("last_failure", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_last_failure", "login_failures", ["last_failure"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_last_failure", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_table("quota_usage")
