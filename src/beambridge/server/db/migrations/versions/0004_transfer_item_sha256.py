"""declared SHA-256 of a stage-in

A job may declare the SHA-256 of an input (the beamline computed it when it wrote the file); the site's
transfer backend then accepts the arrived file only when it hashes to that value.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfer_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transfer_items", schema=None) as batch_op:
        batch_op.drop_column("sha256")
