"""The database schema as SQLAlchemy Core tables (the migrations in ``migrations/`` create it)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    # Every table with an id also says ``sqlite_autoincrement=True``: SQLite would otherwise hand the id of
    # a deleted newest row to the next insert (another user's job, an event a cursor has passed).
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _fk(name: str, target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> sa.Column[int]:
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey(target, ondelete=ondelete),
        nullable=nullable,
    )


users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("tokens_valid_after", Time),
    sa.Column("disabled_at", Time),
    sqlite_autoincrement=True,
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    _id(),
    _fk("user_id", "users.id"),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("revoked_at", Time),
    sa.Column("created_at", Time, nullable=False),
    sqlite_autoincrement=True,
)

sites = sa.Table(
    "sites",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("hostname", sa.String(255), nullable=False, server_default=""),
    sa.Column("path", sa.String(1024), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", JSON, nullable=False),
    sa.Column("locations", JSON, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("last_heartbeat", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("drained_at", Time),
    sa.Column("drain_reason", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("owner_id", "name"),
    sqlite_autoincrement=True,
)

site_tokens = sa.Table(
    "site_tokens",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    _fk("owner_id", "users.id"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time),
    # null: made before tokens expired (they never do); a rotated-out token ends its grace period here
    sa.Column("expires_at", Time),
    sa.Column("replaced_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sqlite_autoincrement=True,
)

apps = sa.Table(
    "apps",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    _fk("site_id", "sites.id"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("transfer_slots", JSON, nullable=False),
    sa.Column("hooks", JSON, nullable=False),
    sa.Column("retry_on_error", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("version", sa.String(64)),
    sa.UniqueConstraint("site_id", "name"),
    sqlite_autoincrement=True,
)

batch_jobs = sa.Table(
    "batch_jobs",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    _fk("site_id", "sites.id"),
    sa.Column("scheduler_id", sa.String(255)),
    sa.Column("project", sa.String(255), nullable=False, server_default=""),
    sa.Column("queue", sa.String(255), nullable=False, server_default=""),
    sa.Column("num_nodes", sa.Integer, nullable=False),
    sa.Column("wall_time_min", sa.Integer, nullable=False),
    sa.Column("job_mode", sa.String(16), nullable=False),
    sa.Column("filter_tags", JSON, nullable=False),
    sa.Column("optional_params", JSON, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("status_info", JSON, nullable=False),
    sa.Column("start_time", Time),
    sa.Column("end_time", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index(None, "site_id", "state"),
    sqlite_autoincrement=True,
)

sessions = sa.Table(
    "sessions",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    _fk("site_id", "sites.id"),
    _fk("batch_job_id", "batch_jobs.id", nullable=True, ondelete="SET NULL"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("heartbeat_at", Time, nullable=False),
    sa.Column("expired_at", Time),
    sa.Column("last_report_batch", sa.String(64)),
    sa.Column("apps", JSON),  # the app names its launcher last said it can run; null: every app
    sa.Index(None, "expired_at", "heartbeat_at"),
    sqlite_autoincrement=True,
)

_BACKLOG_STATES = "state IN ('READY', 'STAGED_IN', 'PREPROCESSED', 'RESTART_READY') AND session_id IS NULL"
BACKLOG_SQL = {
    "postgresql": f"{_BACKLOG_STATES} AND awaiting_placement IS false",
    "sqlite": f"{_BACKLOG_STATES} AND awaiting_placement IS 0",
}
"""A site's backlog (placed jobs waiting for a launcher, unclaimed), as the partial index ix_jobs_backlog
spells it: a query that spells it the same way can be answered from that index."""

jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    _fk("site_id", "sites.id"),
    _fk("app_id", "apps.id"),
    sa.Column("workdir", sa.String(512), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("tags", JSON, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("launch_params", JSON, nullable=False),
    sa.Column("num_nodes", sa.Integer, nullable=False),
    sa.Column("ranks_per_node", sa.Integer, nullable=False),
    sa.Column("threads_per_rank", sa.Integer, nullable=False),
    sa.Column("gpus_per_rank", sa.Float, nullable=False),
    sa.Column("node_packing_count", sa.Integer, nullable=False),
    sa.Column("wall_time_limit_min", sa.Float, nullable=False),
    sa.Column("parent_ids", JSON, nullable=False),
    sa.Column("transfers", JSON, nullable=False),
    sa.Column("has_stage_ins", sa.Boolean, nullable=False),
    sa.Column("has_stage_outs", sa.Boolean, nullable=False),
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("retry_limit", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    _fk("session_id", "sessions.id", nullable=True, ondelete="SET NULL"),
    _fk("batch_job_id", "batch_jobs.id", nullable=True, ondelete="SET NULL"),
    sa.Column("return_code", sa.Integer),
    sa.Column("result", JSON),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # Waiting for the placement service to bind it to a site (late binding, or no site takes work now):
    # its site_id is provisional, and no site sees it.
    sa.Column("awaiting_placement", sa.Boolean, nullable=False, server_default=sa.false()),
    # A hedged copy names the job it is a copy of (placement/hedges.py); null for every other job.
    sa.Column("hedge_of", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    # Placed at creation with alike jobs of its request: the group's first job, whose `job_placements`
    # row and decision event are the whole group's (server/placement/shared.py); null for every other job.
    sa.Column("placed_with", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    # Acquire: runnable jobs of one site, best priority first.
    sa.Index("ix_jobs_acquire", "site_id", "state", "priority", "id"),
    sa.Index(None, "owner_id", "state"),
    sa.Index(None, "session_id"),
    sa.Index(None, "app_id"),
    sa.Index(None, "created_at"),
    sa.Index(None, "updated_at"),
    # The jobs waiting to be placed only: the placement cycle finds them without reading the backlog.
    sa.Index(
        "ix_jobs_awaiting_placement",
        "owner_id",
        postgresql_where=sa.text("awaiting_placement IS true"),
        sqlite_where=sa.text("awaiting_placement IS 1"),
    ),
    # The backlog (placed, waiting, unclaimed) with what the placement snapshot counts it by: counted
    # from the index alone (server/placement/snapshot.py, BACKLOG_SQL).
    sa.Index(
        "ix_jobs_backlog",
        "owner_id",
        "site_id",
        "app_id",
        "priority",
        postgresql_where=sa.text(BACKLOG_SQL["postgresql"]),
        sqlite_where=sa.text(BACKLOG_SQL["sqlite"]),
    ),
    # The few copies only (a bulk create of ordinary jobs adds nothing to it).
    sa.Index(
        "ix_jobs_hedge_of",
        "hedge_of",
        postgresql_where=sa.text("hedge_of IS NOT NULL"),
        sqlite_where=sa.text("hedge_of IS NOT NULL"),
    ),
    sa.Index(
        "ix_jobs_tags_gin",
        "tags",
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql"),
    # One experiment's jobs, newest first (the console's overview of an experiment; jobs/activity.py).
    sa.Index("ix_jobs_experiment", "owner_id", sa.text("(tags ->> 'experiment')"), "id").ddl_if(
        dialect="postgresql"
    ),
    sqlite_autoincrement=True,
)

RUNNABLE_UNCLAIMED = (
    "state IN ('PREPROCESSED', 'RESTART_READY') AND session_id IS NULL AND awaiting_placement IS false"
)
# Acquire takes a site's runnable, unclaimed jobs best priority first: this index holds them in that order,
# so the first is one index step away however many wait (ix_jobs_acquire needs a sort of all of them).
sa.Index(
    "ix_jobs_runnable", jobs.c.site_id, jobs.c.priority.desc(), jobs.c.id,
    postgresql_where=sa.text(RUNNABLE_UNCLAIMED), sqlite_where=sa.text(RUNNABLE_UNCLAIMED),
)  # fmt: skip

job_parents = sa.Table(
    "job_parents",
    metadata,
    _fk("child_id", "jobs.id"),
    _fk("parent_id", "jobs.id"),
    sa.PrimaryKeyConstraint("child_id", "parent_id"),
    sa.Index(None, "parent_id"),
)

FAILED_EVENT = "to_state IN ('FAILED', 'RUN_ERROR', 'RUN_TIMEOUT')"

# The event log has no foreign keys: checking two per row cost a quarter of a bulk create. Its rows are
# removed with their jobs by the code that deletes jobs, apps and sites (see server/jobs/removal.py).
events = sa.Table(
    "events",
    metadata,
    _id(),
    sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("from_state", sa.String(32), nullable=False),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("timestamp", Time, nullable=False),
    sa.Column("data", JSON, nullable=False),
    # Who caused it (server/audit.py): "user:alice", "launcher:polaris (session 12)", "system"…; "" only
    # for events written before the audit trail existed.
    sa.Column("actor", sa.String(200), nullable=False, server_default=""),
    # A job's events in time order; with the new state at hand (PostgreSQL), so the console's stage times
    # read a job's first arrival in each state from the index alone.
    sa.Index(None, "job_id", "timestamp", postgresql_include=["to_state"]),
    sa.Index(None, "owner_id", "id"),
    sa.Index(None, "site_id"),
    # Time indexes of the two kinds of event the console counts over windows (throughput, failures,
    # site cards); partial, so no other event pays for them.
    sa.Index("ix_events_finished", "owner_id", "timestamp", postgresql_include=["site_id"],
             postgresql_where=sa.text("to_state = 'JOB_FINISHED'"), sqlite_where=sa.text("to_state = 'JOB_FINISHED'")),
    sa.Index("ix_events_failed", "owner_id", "timestamp", postgresql_where=sa.text(FAILED_EVENT),
             sqlite_where=sa.text(FAILED_EVENT)),
    sqlite_autoincrement=True,
)  # fmt: skip

# One row per run of a job (→ RUNNING until it leaves RUNNING), written with the events by
# jobs/lifecycle.py: the weather plot reads the runs of a window here instead of pairing events.
job_runs = sa.Table(
    "job_runs",
    metadata,
    _id(),
    _fk("job_id", "jobs.id"),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("app_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("batch_job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sa.Column("node", sa.String(255), nullable=False, server_default=""),
    sa.Column("slot", sa.Integer),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("ended_at", Time),
    sa.Column("end_state", sa.String(32)),
    # Runs that ended in a window (bounded on both sides by the longest run drawn).
    sa.Index(None, "owner_id", "ended_at"),
    # Runs still open: by owner (the plot) and by job (closing a run).
    sa.Index("ix_job_runs_open_owner", "owner_id", "started_at", postgresql_where=sa.text("ended_at IS NULL"),
             sqlite_where=sa.text("ended_at IS NULL")),
    sa.Index("ix_job_runs_open_job", "job_id", postgresql_where=sa.text("ended_at IS NULL"),
             sqlite_where=sa.text("ended_at IS NULL")),
    sqlite_autoincrement=True,
)  # fmt: skip

# Per-minute counts of job state changes (jobs/activity.py), written in the transaction that writes their
# events: the console's throughput, failure counts and site cards read a few rows a minute here instead of
# every event of a window.
activity_minutes = sa.Table(
    "activity_minutes",
    metadata,
    _fk("owner_id", "users.id"),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("minute", Time, nullable=False),
    _fk("site_id", "sites.id"),
    _fk("app_id", "apps.id"),
    sa.Column("experiment", sa.String(256), nullable=False),  # the job's "experiment" tag, "" without one
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("owner_id", "to_state", "minute", "site_id", "app_id", "experiment"),
    sa.Index(None, "owner_id", "experiment", "to_state", "minute"),
    sa.Index(None, "site_id"),
    sa.Index(None, "app_id"),
)

# Result artifacts (schemas/artifacts.py): small typed summaries of a job's results, one row per (job, name).
job_artifacts = sa.Table(
    "job_artifacts",
    metadata,
    _id(),
    _fk("job_id", "jobs.id"),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("content", JSON, nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("job_id", "name"),
    sa.Index(None, "owner_id", "id"),
    sqlite_autoincrement=True,
)

# Actions that change access or ownership rather than a job's state (server/audit.py).
audit_log = sa.Table(
    "audit_log",
    metadata,
    _id(),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("timestamp", Time, nullable=False),
    sa.Index(None, "owner_id", "id"),
    sqlite_autoincrement=True,
)

# Per-user quotas shared by every server process (server/quotas.py): jobs created per user and minute.
quota_usage = sa.Table(
    "quota_usage",
    metadata,
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("minute", sa.BigInteger, nullable=False),
    sa.Column("jobs_created", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("owner_id", "minute"),
)

# Failed logins per user name and per client address, shared by every server process (auth/throttle.py).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.Float, nullable=False),
    sa.Column("last_failure", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("kind", "key"),
    sa.Index(None, "last_failure"),
)

transfer_items = sa.Table(
    "transfer_items",
    metadata,
    _id(),
    _fk("job_id", "jobs.id"),
    _fk("owner_id", "users.id"),
    sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("slot", sa.String(100), nullable=False),
    sa.Column("location", sa.String(255), nullable=False),
    sa.Column("remote_path", sa.String(2048), nullable=False),
    sa.Column("local_path", sa.String(1024), nullable=False),
    sa.Column("recursive", sa.Boolean, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("task_id", sa.String(255)),
    sa.Column("info", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index(None, "job_id"),
    sa.Index(None, "site_id", "state"),
    sqlite_autoincrement=True,
)

# Browser sessions of the console (server/console/sessions.py): the cookie's secret is stored hashed.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    _id(),
    _fk("user_id", "users.id"),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("revoked_at", Time),
    sa.Index(None, "expires_at"),
    sqlite_autoincrement=True,
)

# The beamline end: workflows stored by name, one submission per (user, idempotency key), and the events
# of the beamline itself (runs aborted, changes detected, alerts sent).
workflows = sa.Table(
    "workflows",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("owner_id", "name"),
    sqlite_autoincrement=True,
)

submissions = sa.Table(
    "submissions",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    sa.Column("workflow", sa.String(100), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("dataset", sa.String(2048), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("context", JSON, nullable=False),
    sa.Column("steps", JSON, nullable=False),
    sa.Column("job_ids", JSON, nullable=False),
    sa.Column("closed_at", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("owner_id", "key"),
    sa.Index(None, "owner_id", "workflow", "id"),
    sqlite_autoincrement=True,
)

beamline_events = sa.Table(
    "beamline_events",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(2048), nullable=False),
    sa.Column("workflow", sa.String(100), nullable=False),
    sa.Column("submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sa.Column("data", JSON, nullable=False),
    sa.Column("timestamp", Time, nullable=False),
    sa.Index(None, "owner_id", "id"),
    sqlite_autoincrement=True,
)

site_groups = sa.Table(
    "site_groups",
    metadata,
    _id(),
    _fk("owner_id", "users.id"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("sites", JSON, nullable=False),
    sa.Column("policy", sa.String(32)),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("owner_id", "name"),
    sqlite_autoincrement=True,
)

# What a job placed by the service asked for, and its last decision (one row per such job). A hedged pair
# links both ways through ``hedge_job_id``: the original (``hedge`` true) names its copy, the copy (``hedge``
# false: a copy is never hedged itself) names its original.
job_placements = sa.Table(
    "job_placements",
    metadata,
    _fk("job_id", "jobs.id"),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("app_name", sa.String(100), nullable=False),
    sa.Column("sites", JSON, nullable=False),
    sa.Column("site_group", sa.String(100)),
    sa.Column("policy", sa.String(32)),
    sa.Column("hedge", sa.Boolean, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("decided_at", Time),
    sa.Column("finish_p95_s", sa.Float),
    sa.Column("placements", sa.Integer, nullable=False),
    sa.Column("hedge_job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sa.PrimaryKeyConstraint("job_id"),
    sa.Index(None, "owner_id"),
)

# Runs a launcher session must stop although their job lives on (a hedged job whose copy's run finished
# first: the job adopted that run and left this session). The session's heartbeat returns them with its
# cancelled jobs; the rows go when the session ends. No foreign key: the check would take a share lock on
# the session row while the jobs are locked, and a report of that session holds the session row while it
# waits for the jobs (a deadlock the race test found).
run_stops = sa.Table(
    "run_stops",
    metadata,
    sa.Column("session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.PrimaryKeyConstraint("session_id", "job_id"),
)
