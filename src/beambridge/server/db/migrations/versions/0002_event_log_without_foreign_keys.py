"""event log without foreign keys

Checking ``events.job_id`` and ``events.owner_id`` on every inserted row cost about a quarter of a bulk
job creation. Events are an append-only log; the code that deletes jobs, apps and sites deletes their
events too. An index on ``site_id`` serves that deletion.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_job_id_jobs", type_="foreignkey")
        batch_op.drop_constraint("fk_events_owner_id_users", type_="foreignkey")
        batch_op.create_index(batch_op.f("ix_events_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    # Events of jobs deleted meanwhile would break the restored constraint: drop them first.
    op.execute("DELETE FROM events WHERE job_id NOT IN (SELECT id FROM jobs)")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_site_id"))
        batch_op.create_foreign_key(
            "fk_events_owner_id_users", "users", ["owner_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key("fk_events_job_id_jobs", "jobs", ["job_id"], ["id"], ondelete="CASCADE")
