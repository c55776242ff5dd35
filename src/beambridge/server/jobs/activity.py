"""Per-minute counts of job state changes, kept with the event log.

``activity_minutes`` holds, for each owner, new state, minute, site, app and experiment (the job's
``experiment`` tag, ``""`` without one), how many state changes the event log has. The two places that
write state changes (job creation, :mod:`beambridge.server.jobs.create`, and every later change,
``lifecycle._write``) add their counts here in the same transaction as the events, so the counts are
exactly as committed as the events. The console's throughput chart, failure counts and site cards sum a
few rows a minute here instead of reading every event of their window.

Each write is one ``INSERT … ON CONFLICT DO UPDATE`` of the transaction's counts in key order; the rows it
touches stay locked until the transaction commits, so it runs as late as the transaction allows (a cascade
of changes, children released by a finished parent, adds to its caller's tally instead of writing its own).

Counts are history: deleting jobs leaves them (the throughput of last week stays what it was); deleting a
site, an app or a user removes theirs (foreign keys, ``ON DELETE CASCADE``). Events whose state does not
change (placement decisions, notes after a run) are not counted.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from beambridge.server.db.tables import activity_minutes, jobs

EXPERIMENT_TAG = "experiment"
"""The tag that names a job's experiment: the console's overview of one experiment reads its counts."""
MAX_EXPERIMENT = 256

Key = tuple[int, str, datetime, int, int, str]
"""(owner_id, to_state, minute, site_id, app_id, experiment)"""


def experiment_column() -> sa.ColumnElement[Any]:
    """The job's experiment tag, for selects of ``jobs`` (``NULL`` without one)."""
    return jobs.c.tags[EXPERIMENT_TAG].as_string().label("experiment")


def experiment_is(value: str, dialect: str) -> sa.ColumnElement[bool]:
    """Jobs whose experiment tag is ``value`` (on PostgreSQL, in the form ``ix_jobs_experiment`` indexes)."""
    if dialect == "postgresql":
        tag = jobs.c.tags.op("->>", return_type=sa.String)(sa.literal_column(f"'{EXPERIMENT_TAG}'"))
        return sa.and_(tag == value)
    return sa.and_(sa.func.json_extract(jobs.c.tags, f'$."{EXPERIMENT_TAG}"') == value)


def experiment_of(tags: dict[str, Any] | None) -> str:
    """The experiment of a job with these tags (``""`` without one)."""
    value = (tags or {}).get(EXPERIMENT_TAG)
    return value[:MAX_EXPERIMENT] if isinstance(value, str) else ""


def minute_of(at: datetime) -> datetime:
    """The minute (UTC) a change at ``at`` counts in."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(second=0, microsecond=0)


class Tally(Counter[Key]):
    """State changes of one transaction, counted by key."""

    def change(
        self, owner_id: int, site_id: int, app_id: int, experiment: str | None, to_state: str, at: datetime
    ) -> None:
        """Count one change (a job moving to ``to_state`` at ``at``)."""
        self[(owner_id, to_state, minute_of(at), site_id, app_id, (experiment or "")[:MAX_EXPERIMENT])] += 1


_CHUNK = 500


def record(conn: Connection, tally: Tally) -> None:
    """Add ``tally`` to ``activity_minutes`` (in key order, so two transactions never wait on each other's
    rows crosswise)."""
    if not tally:
        return
    rows = [
        {"owner_id": k[0], "to_state": k[1], "minute": k[2], "site_id": k[3], "app_id": k[4],
         "experiment": k[5], "count": n}
        for k, n in sorted(tally.items())
    ]  # fmt: skip
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    keys = ["owner_id", "to_state", "minute", "site_id", "app_id", "experiment"]
    for start in range(0, len(rows), _CHUNK):
        statement = insert(activity_minutes).values(rows[start : start + _CHUNK])
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=keys, set_={"count": activity_minutes.c.count + statement.excluded.count}
            )
        )
