"""apps say whether a failed run is retried

``retry_limit`` covers a run that fails (non-zero exit, a Python app that raises) as well as one that times
out, unless the app registers ``retry_on_error = False``. Apps registered before keep retrying.

Revision ID: 0012_app_retry_on_error
Revises: 0011_token_revocation
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_app_retry_on_error"
down_revision = "0011_token_revocation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On SQLite a plain ADD COLUMN with a literal default: Alembic would rebuild the table for the
    # portable ``true()`` default, and a rebuild drops the AUTOINCREMENT that 0005 gave it.
    sqlite = op.get_bind().dialect.name == "sqlite"
    default = sa.text("1") if sqlite else sa.true()
    op.add_column("apps", sa.Column("retry_on_error", sa.Boolean(), nullable=False, server_default=default))


def downgrade() -> None:
    op.drop_column("apps", "retry_on_error")  # SQLite 3.35+ drops a column in place
