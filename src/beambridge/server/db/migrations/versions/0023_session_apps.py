"""sessions remember the apps their launcher named

A launcher names the apps it can run in each acquire; the session keeps the last list so that ``job ls``
can tell a job waiting for a free slot from one no running pilot can run (its app was added after the
pilot started). Null: the launcher named none (it takes every app).

Revision ID: 0023_session_apps
Revises: 0022_events_by_job_with_state
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0023_session_apps"
down_revision = "0022_events_by_job_with_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("apps", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "apps")  # SQLite 3.35+ drops a column in place
