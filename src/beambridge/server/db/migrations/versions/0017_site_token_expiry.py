"""site tokens expire and rotate

``site_tokens.expires_at``: when the token stops working (null for tokens made before this revision: they
never expire; revoke and replace them to give them an end). ``site_tokens.replaced_by``: the token that a
rotation made in its place (the old one works until its ``expires_at``, the end of its grace period).

Revision ID: 0017_site_token_expiry
Revises: 0016_audit_trail
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_site_token_expiry"
down_revision = "0016_audit_trail"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (a batch rebuild on SQLite would drop the table's AUTOINCREMENT).
    op.add_column("site_tokens", sa.Column("expires_at", Time))
    op.add_column("site_tokens", sa.Column("replaced_by", ID))


def downgrade() -> None:
    op.drop_column("site_tokens", "replaced_by")  # SQLite 3.35+ drops a column in place
    op.drop_column("site_tokens", "expires_at")
