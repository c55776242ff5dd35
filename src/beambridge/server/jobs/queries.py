"""Finding jobs: the filters of ``GET /jobs``, shared by listing, counting and bulk actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import Response
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import JobQuery
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.conditions import column_conditions, time_window
from beambridge.server.db.tables import job_parents, jobs
from beambridge.states import JobState

JOB_COLUMNS = [
    c for c in jobs.c if c.name not in ("owner_id", "has_stage_ins", "has_stage_outs", "placed_with")
]
_JOB_FIELDS = [str(c.name) for c in JOB_COLUMNS]


_JOB_QUERY_OWN_SQL = frozenset(
    {
        "tag",
        "parent_id",
        "workdir_prefix",
        "created_after",
        "created_before",
        "updated_after",
        "updated_before",
        "copies",
    }
)


def job_conditions(query: JobQuery, principal: Principal, dialect: str) -> list[sa.ColumnElement[bool]]:
    """SQL conditions of a job query, always including the caller's ownership (and site scope)."""
    where: list[sa.ColumnElement[bool]] = [jobs.c.owner_id == principal.user_id]
    if principal.site_id is not None:  # a site never sees a job the service has not bound to it yet
        where += [jobs.c.site_id == principal.site_id, jobs.c.awaiting_placement.is_(False)]
    where.extend(column_conditions(jobs, query, handled=_JOB_QUERY_OWN_SQL))
    if query.tag:
        where.append(tags_contain(query.tags, dialect))
    if query.parent_id is not None:
        children = sa.select(job_parents.c.child_id).where(job_parents.c.parent_id == query.parent_id)
        where.append(jobs.c.id.in_(children))
    if query.workdir_prefix:
        where.append(jobs.c.workdir.startswith(query.workdir_prefix, autoescape=True))
    where.extend(time_window(jobs.c.created_at, query.created_after, query.created_before))
    where.extend(time_window(jobs.c.updated_at, query.updated_after, query.updated_before))
    if query.copies is not None:
        where.append(jobs.c.hedge_of.is_not(None) if query.copies else jobs.c.hedge_of.is_(None))
    return where


def tags_contain(tags: dict[str, str], dialect: str) -> sa.ColumnElement[bool]:
    """``jobs.tags`` contains every key/value of ``tags`` (JSONB ``@>`` on PostgreSQL, GIN-indexed)."""
    if dialect == "postgresql":
        return sa.type_coerce(jobs.c.tags, JSONB).contains(tags)
    # Keys are validated ([A-Za-z0-9_.-]), so quoting them in the JSON path is safe.
    return sa.and_(*(sa.func.json_extract(jobs.c.tags, f'$."{key}"') == value for key, value in tags.items()))


def list_jobs_query(
    principal: Principal,
    query: JobQuery,
    dialect: str,
    *,
    after: int | None,
    limit: int,
    newest_first: bool = False,
) -> sa.Select[Any]:
    """The statement for one page of jobs in id order (descending if ``newest_first``), after ``after``."""
    statement = sa.select(*JOB_COLUMNS).where(*job_conditions(query, principal, dialect))
    if after is not None:
        statement = statement.where(jobs.c.id < after if newest_first else jobs.c.id > after)
    return statement.order_by(jobs.c.id.desc() if newest_first else jobs.c.id).limit(limit)


def list_jobs(
    conn: Connection,
    principal: Principal,
    query: JobQuery,
    *,
    after: int | None,
    limit: int,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """One page of jobs in id order (descending if ``newest_first``), starting after the id ``after``."""
    statement = list_jobs_query(
        principal, query, conn.dialect.name, after=after, limit=limit, newest_first=newest_first
    )
    return [dict(row._mapping) for row in conn.execute(statement)]


_GET_JOB = sa.select(*JOB_COLUMNS).where(
    jobs.c.id == sa.bindparam("job_id"), jobs.c.owner_id == sa.bindparam("owner_id")
)
_GET_SITE_JOB = _GET_JOB.where(
    jobs.c.site_id == sa.bindparam("site_id"), jobs.c.awaiting_placement.is_(False)
)


def get_job_statement(principal: Principal, job_id: int) -> tuple[sa.Select[Any], dict[str, Any]]:
    """A constant statement reading one job the caller may see, and its parameters (for the async reader)."""
    params = {"job_id": job_id, "owner_id": principal.user_id}
    if principal.site_id is None:
        return _GET_JOB, params
    return _GET_SITE_JOB, {**params, "site_id": principal.site_id}


def count_jobs(conn: Connection, principal: Principal, query: JobQuery) -> int:
    """How many jobs match."""
    where = job_conditions(query, principal, conn.dialect.name)
    return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(*where)).scalar_one())


def tag_value(key: str, dialect: str) -> sa.ColumnElement[Any]:
    """A job's value of tag ``key`` as text (NULL when it has no such tag)."""
    if dialect == "postgresql":
        return sa.type_coerce(jobs.c.tags, JSONB)[key].astext
    return sa.func.json_extract(jobs.c.tags, f'$."{key}"')  # keys are validated: quoting them is safe


def summarize_jobs(
    conn: Connection, principal: Principal, query: JobQuery, *, by_tag: str | None, max_groups: int
) -> dict[str, Any]:
    """Counts by state of the matching jobs, per value of tag ``by_tag`` if given: one grouped query.

    Groups come newest first (by their newest job, so the latest run of a campaign leads); beyond
    ``max_groups`` they are left out and counted in ``groups_left_out``.
    """
    where = job_conditions(query, principal, conn.dialect.name)
    value = tag_value(by_tag, conn.dialect.name) if by_tag is not None else sa.literal(None, sa.String)
    statement = (
        sa.select(value.label("value"), jobs.c.state, sa.func.count(), sa.func.max(jobs.c.id))
        .where(*where)
        .group_by(value, jobs.c.state)
    )
    groups: dict[str | None, dict[str, Any]] = {}
    for group_value, state, count, newest in conn.execute(statement):
        group = groups.setdefault(group_value, {"value": group_value, "counts": {}, "total": 0, "newest": 0})
        group["counts"][state] = int(count)
        group["total"] += int(count)
        group["newest"] = max(group["newest"], int(newest))
    ordered = sorted(groups.values(), key=lambda group: -group["newest"])
    kept = ordered[:max_groups]
    for group in kept:
        del group["newest"]
        group["counts"] = dict(sorted(group["counts"].items(), key=lambda item: _STATE_ORDER[item[0]]))
    return {
        "by_tag": by_tag,
        "total": sum(group["total"] for group in kept),
        "groups": kept,
        "groups_left_out": len(ordered) - len(kept),
    }


_STATE_ORDER = {state.value: index for index, state in enumerate(JobState)}


def get_job(conn: Connection, principal: Principal, job_id: int) -> dict[str, Any] | None:
    """One job, if the caller may see it."""
    statement, params = get_job_statement(principal, job_id)
    row = conn.execute(statement, params).first()
    return dict(row._mapping) if row is not None else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _job_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in _JOB_FIELDS}
    out["created_at"] = _utc(row["created_at"])
    out["updated_at"] = _utc(row["updated_at"])
    return out


def jobs_response(rows: list[dict[str, Any]], status_code: int = 200) -> Response:
    """A JSON list of jobs (the ``Job`` schema's fields) straight from rows, without re-validating them.

    The rows come from validated input or from the database, so checking them again as ``Job`` models
    would only cost time (more than the database work, for thousands of jobs).
    """
    body = orjson.dumps([_job_json(row) for row in rows])
    return Response(body, status_code=status_code, media_type="application/json")


def job_response(row: dict[str, Any]) -> Response:
    """One job, built like :func:`jobs_response`."""
    return Response(orjson.dumps(_job_json(row)), media_type="application/json")


def jobs_page_response(rows: list[dict[str, Any]], limit: int) -> Response:
    """A ``Page[Job]`` body built like :func:`jobs_response`."""
    next_after = rows[-1]["id"] if len(rows) == limit else None
    body = orjson.dumps({"items": [_job_json(row) for row in rows], "next_after": next_after})
    return Response(body, media_type="application/json")
