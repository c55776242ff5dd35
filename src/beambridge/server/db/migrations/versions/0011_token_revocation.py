"""revocation at once: a user's tokens can be ended, and a user disabled

``users.tokens_valid_after``: access tokens issued before it are refused (logout, disabling a user);
``users.disabled_at``: a disabled user cannot log in, refresh, or use any token, site tokens included.

Revision ID: 0011_token_revocation
Revises: 0010_report_batch_ids
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_token_revocation"
down_revision = "0010_report_batch_ids"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (a batch rebuild on SQLite would drop the table's AUTOINCREMENT).
    op.add_column("users", sa.Column("tokens_valid_after", Time))
    op.add_column("users", sa.Column("disabled_at", Time))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("tokens_valid_after")
