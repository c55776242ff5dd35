"""job runs

One row per run of a job (from its move to RUNNING until it leaves RUNNING: the node and worker slot the
launcher reported, the end state), written with the events. The console's weather plot reads the runs of
a window from here with an index instead of pairing every event of the window's jobs (4.9 s for 200,000
runs). Existing history is carried over from the events. Two partial time indexes on events (finished,
failed) serve the overview's throughput and failures banner and the site cards.

Revision ID: 0015_job_runs
Revises: 0014_app_versions
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015_job_runs"
down_revision = "0014_app_versions"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN = sa.text("ended_at IS NULL")
FAILED_EVENT = "to_state IN ('FAILED', 'RUN_ERROR', 'RUN_TIMEOUT')"


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "job_id",
            BigId,
            sa.ForeignKey("jobs.id", name="fk_job_runs_job_id_jobs", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner_id", BigId, nullable=False),
        sa.Column("site_id", BigId, nullable=False),
        sa.Column("app_id", BigId, nullable=False),
        sa.Column("batch_job_id", BigId),
        sa.Column("node", sa.String(255), nullable=False, server_default=""),
        sa.Column("slot", sa.Integer()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("end_state", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        sqlite_autoincrement=True,
    )
    _carry_over_history()
    op.create_index("ix_job_runs_owner_id_ended_at", "job_runs", ["owner_id", "ended_at"])
    op.create_index(
        "ix_job_runs_open_owner",
        "job_runs",
        ["owner_id", "started_at"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index("ix_job_runs_open_job", "job_runs", ["job_id"], postgresql_where=OPEN, sqlite_where=OPEN)
    finished = sa.text("to_state = 'JOB_FINISHED'")
    op.create_index(
        "ix_events_finished", "events", ["owner_id", "timestamp"], postgresql_include=["site_id"],
        postgresql_where=finished, sqlite_where=finished,
    )  # fmt: skip
    failed = sa.text(FAILED_EVENT)
    op.create_index(
        "ix_events_failed", "events", ["owner_id", "timestamp"], postgresql_where=failed, sqlite_where=failed
    )


def _carry_over_history() -> None:
    """A run for every → RUNNING event, ended by the job's next event (as the plot paired them before)."""
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    events = sa.table(
        "events",
        sa.column("id", BigId), sa.column("job_id", BigId), sa.column("owner_id", BigId),
        sa.column("site_id", BigId), sa.column("to_state", sa.String), sa.column("timestamp", sa.DateTime(True)),
        sa.column("data", json),
    )  # fmt: skip
    jobs = sa.table(
        "jobs", sa.column("id", BigId), sa.column("app_id", BigId), sa.column("batch_job_id", BigId)
    )
    paired = sa.select(
        events.c.job_id,
        events.c.owner_id,
        events.c.site_id,
        events.c.to_state,
        sa.func.coalesce(events.c.data["node"].as_string(), "").label("node"),
        events.c.timestamp.label("started_at"),
        sa.func.lead(events.c.timestamp).over(partition_by=events.c.job_id, order_by=events.c.id).label("ended_at"),
        sa.func.lead(events.c.to_state).over(partition_by=events.c.job_id, order_by=events.c.id).label("end_state"),
    ).subquery()  # fmt: skip
    select = (
        sa.select(
            paired.c.job_id,
            paired.c.owner_id,
            paired.c.site_id,
            jobs.c.app_id,
            jobs.c.batch_job_id,
            sa.func.substr(paired.c.node, 1, 255),
            paired.c.started_at,
            paired.c.ended_at,
            paired.c.end_state,
        )
        .join(jobs, jobs.c.id == paired.c.job_id)
        .where(paired.c.to_state == "RUNNING")
    )
    runs = sa.table(
        "job_runs",
        *(sa.column(name) for name in (
            "job_id", "owner_id", "site_id", "app_id", "batch_job_id", "node", "started_at", "ended_at", "end_state",
        )),
    )  # fmt: skip
    op.execute(runs.insert().from_select(list(runs.c.keys()), select))


def downgrade() -> None:
    op.drop_index("ix_events_failed", table_name="events")
    op.drop_index("ix_events_finished", table_name="events")
    op.drop_index("ix_job_runs_open_job", table_name="job_runs")
    op.drop_index("ix_job_runs_open_owner", table_name="job_runs")
    op.drop_index("ix_job_runs_owner_id_ended_at", table_name="job_runs")
    op.drop_table("job_runs")
