"""The SQL behind the console's job pages, scoped to the caller exactly as the API's queries are."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import JobQuery
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import apps, events, job_artifacts, jobs, sites
from beambridge.server.jobs.queries import get_job, job_conditions
from beambridge.states import JobState

FAILURE_STATES = (JobState.FAILED, JobState.RUN_ERROR, JobState.RUN_TIMEOUT, JobState.KILLED)
REASON_KEYS = ("reason", "error", "message")
REASON_CHARS = 300

_LIST_COLUMNS = (
    jobs.c.id,
    jobs.c.state,
    jobs.c.app_id,
    jobs.c.site_id,
    jobs.c.tags,
    jobs.c.workdir,
    jobs.c.error,
    jobs.c.retry_count,
    jobs.c.created_at,
    jobs.c.updated_at,
)


def jobs_newest_first(
    conn: Connection, principal: Principal, query: JobQuery, *, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of jobs, newest first, older than the id ``before``; and the cursor of the next page."""
    where = job_conditions(query, principal, conn.dialect.name)
    if before is not None:
        where.append(jobs.c.id < before)
    statement = sa.select(*_LIST_COLUMNS).where(*where).order_by(jobs.c.id.desc()).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(statement)]
    more = len(rows) > limit
    rows = rows[:limit]
    _attach_reasons(conn, rows)
    return rows, (rows[-1]["id"] if more else None)


def reason_of(data: Any) -> str | None:
    """The human reason an event's data gives, if any."""
    if isinstance(data, dict):
        for key in REASON_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= REASON_CHARS else "…" + text[-REASON_CHARS:]


def _attach_reasons(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Each failed job's reason: its error text, else the reason its failing event gave."""
    need = [r["id"] for r in rows if r["state"] in FAILURE_STATES and not r["error"]]
    found: dict[int, str] = {}
    if need:
        statement = (
            sa.select(events.c.job_id, events.c.data)
            .where(events.c.job_id.in_(need), events.c.to_state.in_([s.value for s in FAILURE_STATES]))
            .order_by(events.c.id)
        )
        for job_id, data in conn.execute(statement):
            reason = reason_of(data)
            if reason:
                found[job_id] = reason
    for row in rows:
        text = row.pop("error") or found.get(row["id"])
        row["reason"] = _short(text) if text and row["state"] in FAILURE_STATES else None


def names(conn: Connection, principal: Principal) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """The caller's site names and app names by id, and each app's "name @ site" label (small tables,
    read whole)."""
    site_names = {
        r.id: r.name
        for r in conn.execute(
            sa.select(sites.c.id, sites.c.name).where(sites.c.owner_id == principal.user_id)
        )
    }
    statement = sa.select(apps.c.id, apps.c.name, apps.c.site_id).where(apps.c.owner_id == principal.user_id)
    app_rows = list(conn.execute(statement))
    app_names = {r.id: r.name for r in app_rows}
    app_labels = {r.id: f"{r.name} @ {site_names.get(r.site_id, r.site_id)}" for r in app_rows}
    return site_names, app_names, app_labels


def job_with_history(
    conn: Connection, principal: Principal, job_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]] | None:
    """One of the caller's jobs, its events (oldest first) and its result artifacts (without content);
    None if the job is not theirs."""
    job = get_job(conn, principal, job_id)
    if job is None:
        return None
    results = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(job_artifacts.c.name, job_artifacts.c.kind, job_artifacts.c.size_bytes,
                      job_artifacts.c.updated_at)
            .where(job_artifacts.c.job_id == job_id)
            .order_by(job_artifacts.c.name)
        )
    ]  # fmt: skip
    history = [
        dict(r._mapping)
        for r in conn.execute(sa.select(events).where(events.c.job_id == job_id).order_by(events.c.id))
    ]
    previous = None
    for event in history:
        stamp = event["timestamp"]
        event["since_previous"] = (stamp - previous).total_seconds() if previous is not None else None
        event["reason"] = reason_of(event["data"])
        data = dict(event["data"]) if isinstance(event["data"], dict) else {}
        logs = data.pop("logs", None)
        event["logs"] = logs if isinstance(logs, dict) else None
        event["shown_data"] = data  # the tails are shown under the timeline, not in it
        previous = stamp
    return job, history, results


def run_logs(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stdout/stderr tails each run sent with its end (newest run first): number, end state, time."""
    runs = [
        {"number": n, "state": e["to_state"], "at": e["timestamp"],
         "stdout": str(e["logs"].get("stdout") or ""), "stderr": str(e["logs"].get("stderr") or "")}
        for n, e in enumerate((e for e in history if e.get("logs")), start=1)
    ]  # fmt: skip
    return runs[::-1]


def artifact_content(conn: Connection, principal: Principal, job_id: int, name: str) -> dict[str, Any] | None:
    """The content of one artifact of one of the caller's jobs, or None."""
    statement = sa.select(job_artifacts.c.content).where(
        job_artifacts.c.job_id == job_id,
        job_artifacts.c.name == name,
        job_artifacts.c.owner_id == principal.user_id,
    )
    content = conn.execute(statement).scalar_one_or_none()
    return content if isinstance(content, dict) else None
