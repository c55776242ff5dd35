"""ids never reused on SQLite

Without ``AUTOINCREMENT`` SQLite gives a new row the largest id in use plus one: delete the newest job and
the next one (perhaps another user's) gets its id, and a client following events from a cursor misses the
events that reuse numbers it has passed. Every table with an id is rebuilt with ``AUTOINCREMENT`` (SQLite
then remembers the largest id ever used in ``sqlite_sequence``). PostgreSQL's sequences never repeat: no
change there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = [
    "users",
    "refresh_tokens",
    "sites",
    "site_tokens",
    "apps",
    "batch_jobs",
    "sessions",
    "jobs",
    "events",
    "transfer_items",
]


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The migration environment turns foreign keys off on SQLite while tables are rebuilt, so dropping
    # the old copy of ``jobs`` does not cascade into ``job_parents`` and ``transfer_items``.
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
