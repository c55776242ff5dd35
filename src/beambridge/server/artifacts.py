"""Result artifacts in the database: stored (replacing one of the same name), listed, read.

Who may store one: the job's owner at any time; a site token of the job's site only while the job runs
or waits for its post-processing (the launcher uploads before it reports the run done), so a stale
launcher cannot overwrite the results of a later run that has ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from beambridge.schemas.artifacts import MAX_ARTIFACT_BYTES, MAX_ARTIFACTS_PER_JOB, XpcsG2, XpcsTwoTime
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import job_artifacts, jobs
from beambridge.server.errors import ConflictError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from beambridge.states import RUNNABLE_STATES, JobState

SITE_UPLOAD_STATES = frozenset(
    {JobState.RUNNING.value, JobState.RUN_DONE.value, JobState.POSTPROCESSED.value}
)
HELD_STATES = frozenset(state.value for state in RUNNABLE_STATES)
"""Acquired by a launcher session and not yet reported RUNNING: the launcher's reports go out in batches
off its main loop, so a quick run's upload (made just before its RUN_DONE) can overtake its RUNNING."""
_INFO = (
    job_artifacts.c.job_id,
    job_artifacts.c.name,
    job_artifacts.c.kind,
    job_artifacts.c.size_bytes,
    job_artifacts.c.created_at,
    job_artifacts.c.updated_at,
)


def _job_for(conn: Connection, principal: Principal, job_id: int, *, lock: bool = False) -> Any:
    query = sa.select(jobs.c.id, jobs.c.state, jobs.c.owner_id, jobs.c.session_id).where(
        jobs.c.id == job_id, jobs.c.owner_id == principal.user_id
    )
    if principal.site_id is not None:
        query = query.where(jobs.c.site_id == principal.site_id, jobs.c.awaiting_placement.is_(False))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"job {job_id} not found")
    return row


def put_artifact(
    conn: Connection,
    principal: Principal,
    job_id: int,
    name: str,
    body: XpcsG2 | XpcsTwoTime,
    now: datetime,
) -> dict[str, Any]:
    """Store (or replace) one artifact of a job; its listing entry."""
    content = body.model_dump(mode="json", exclude_none=True)
    size = len(orjson.dumps(content))
    if size > MAX_ARTIFACT_BYTES:
        raise PayloadTooLargeError(
            f"artifact {name!r} is {size:,} bytes of JSON; at most {MAX_ARTIFACT_BYTES:,} are kept "
            "(reduce it: fewer q bins or delays, a binned two-time map)"
        )
    job = _job_for(conn, principal, job_id, lock=True)
    held = job.state in HELD_STATES and job.session_id is not None
    if principal.site_id is not None and not (job.state in SITE_UPLOAD_STATES or held):
        raise ConflictError(
            f"job {job_id} is {job.state}: a site uploads artifacts only while the job runs or is being "
            "post-processed"
        )
    existing = set(
        conn.execute(sa.select(job_artifacts.c.name).where(job_artifacts.c.job_id == job_id)).scalars()
    )
    if name not in existing and len(existing) >= MAX_ARTIFACTS_PER_JOB:
        raise InvalidRequestError(
            f"job {job_id} already has {len(existing)} artifacts, the most a job may have; "
            "replace one by uploading under its name"
        )
    values = {
        "job_id": job_id, "owner_id": job.owner_id, "name": name, "kind": body.kind, "content": content,
        "size_bytes": size, "created_at": now, "updated_at": now,
    }  # fmt: skip
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(job_artifacts).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[job_artifacts.c.job_id, job_artifacts.c.name],
        set_={
            "kind": statement.excluded.kind,
            "content": statement.excluded.content,
            "size_bytes": statement.excluded.size_bytes,
            "updated_at": statement.excluded.updated_at,
        },
    ).returning(*_INFO)
    return dict(conn.execute(statement).one()._mapping)


def list_artifacts(conn: Connection, principal: Principal, job_id: int) -> list[dict[str, Any]]:
    """A job's artifacts (without their content), by name."""
    _job_for(conn, principal, job_id)
    rows = conn.execute(
        sa.select(*_INFO).where(job_artifacts.c.job_id == job_id).order_by(job_artifacts.c.name)
    )
    return [dict(r._mapping) for r in rows]


def get_artifact(conn: Connection, principal: Principal, job_id: int, name: str) -> dict[str, Any]:
    """One artifact with its content."""
    _job_for(conn, principal, job_id)
    row = conn.execute(
        sa.select(*_INFO, job_artifacts.c.content).where(
            job_artifacts.c.job_id == job_id, job_artifacts.c.name == name
        )
    ).first()
    if row is None:
        raise NotFoundError(f"job {job_id} has no artifact {name!r}")
    return dict(row._mapping)


def artifacts_of(conn: Connection, owner_id: int, job_id: int) -> list[dict[str, Any]]:
    """Every artifact of a job the caller already may see, with content (the console's job page)."""
    rows = conn.execute(
        sa.select(*_INFO, job_artifacts.c.content)
        .where(job_artifacts.c.job_id == job_id, job_artifacts.c.owner_id == owner_id)
        .order_by(job_artifacts.c.name)
    )
    return [dict(r._mapping) for r in rows]
