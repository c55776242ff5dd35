"""apps carry the version of their code the site registered

A launcher says which apps it can run and which copy of each; acquire hands it only those, so a pilot
started before an app was added (or changed) never takes a job it cannot run. Apps registered before
have no version: any copy runs them.

Revision ID: 0014_app_versions
Revises: 0013_job_artifacts
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_app_versions"
down_revision = "0013_job_artifacts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("apps", sa.Column("version", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("apps", "version")  # SQLite 3.35+ drops a column in place
