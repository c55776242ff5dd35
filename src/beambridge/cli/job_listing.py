"""How ``beambridge job ls`` shows jobs: names instead of ids, a short reason for each job that failed,
was killed or waits for a retry, and an age — in a table that stays readable at 80 columns."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

import typer
from rich.table import Table

from beambridge.client import Client
from beambridge.client.names import Names
from beambridge.schemas.batch_jobs import BatchJobState as B
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import Job
from beambridge.states import JobState

S = JobState
EXPLAINED_STATES = frozenset({S.FAILED, S.KILLED, S.RESTART_READY, S.RUN_ERROR, S.RUN_TIMEOUT})
"""States whose reason the table shows (read from the event that led there and the job's error)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``'90s'``, ``'15m'``, ``'2h'``, ``'3d'``, ``'1w'`` ago, or an ISO date/time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (90s, 15m, 2h, 3d, 1w) nor a date/time (2026-12-03T14:00)",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def age(moment: datetime, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that keeps it short: ``12s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0.0, ((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def last_line(text: str | None) -> str:
    """The last non-empty line of an error (for a traceback: the exception and its message)."""
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _event_reason(event: Event | None) -> str:
    if event is None:
        return ""
    data = event.data
    for key in ("reason", "auto"):
        value = data.get(key)
        if isinstance(value, str) and value:
            retry = data.get("retry")
            return f"{value} ({retry})" if isinstance(retry, str) else value
    return ""


def reason(job: Job, event: Event | None) -> str:
    """One line on why ``job`` is where it is: the run's exit and error, else the event's reason."""
    if job.state not in EXPLAINED_STATES:
        return ""
    parts = []
    if job.return_code not in (None, 0):
        parts.append(f"exit {job.return_code}")
    error = last_line(job.error)
    said = _event_reason(event)
    if error:
        parts.append(error)
    if said and (not error or job.state is not S.FAILED or "parent" in said):
        parts.append(said)
    return "; ".join(parts)


WAITING_STATES = frozenset({S.PREPROCESSED, S.RESTART_READY})
"""Runnable states in which a job waits for a launcher: the table says what it waits for."""


def waiting_reasons(client: Client, jobs: Iterable[Job]) -> dict[int, str]:
    """Why each runnable job not yet taken by a launcher waits: no pilot yet, a pilot queued since when,
    pilots running but busy, or running pilots none of which can run its app (one request per site)."""
    waiting = [job for job in jobs if job.state in WAITING_STATES and job.session_id is None]
    live = [B.PENDING_SUBMISSION, B.QUEUED, B.RUNNING]
    now = datetime.now(UTC)
    by_site: dict[int, str] = {}
    apps_by_site: dict[int, list[list[str] | None]] = {}
    for site_id in sorted({job.site_id for job in waiting}):
        pilots = list(client.batch_jobs.filter(site_id=site_id, state=live))
        running = [p for p in pilots if p.state == B.RUNNING]
        queued = sorted((p for p in pilots if p.state != B.RUNNING), key=lambda p: p.created_at)
        if running:
            by_site[site_id] = f"waiting for a free slot ({len(running)} pilot(s) running)"
            apps_by_site[site_id] = [s.apps for s in client.sessions.filter(site_id=site_id, active=True)]
        elif queued:
            first = queued[0]
            by_site[site_id] = (
                f"waiting for pilot {first.id}, {first.state.value} for {age(first.created_at, now)}"
            )
        else:
            by_site[site_id] = "waiting for a pilot (none requested yet; is the site's agent running?)"
    out = {}
    for job in waiting:
        out[job.id] = by_site[job.site_id]
        named = apps_by_site.get(job.site_id)
        if named and all(apps is not None for apps in named):
            app = client.names.app_name(job.app_id)
            if not any(app in apps for apps in named if apps is not None):
                out[job.id] = (
                    f"no running pilot has app {app} ({len(named)} launcher(s) without it; is its file "
                    "in the site's apps folder? pilots load a new file there)"
                )
    return out


def reasons(client: Client, jobs: Iterable[Job]) -> dict[int, str]:
    """The reason of each job in an :data:`EXPLAINED_STATES` state (one request for all of them), and
    what each runnable job waits for."""
    jobs = list(jobs)
    explained = {job.id: job for job in jobs if job.state in EXPLAINED_STATES}
    latest: dict[int, Event] = {}
    if explained:
        query = client.events.filter(
            job_id=sorted(explained), to_state=sorted({j.state for j in explained.values()})
        )
        for event in query.page_size(5000):
            if event.to_state == explained[event.job_id].state:
                latest[event.job_id] = event  # events come oldest first: the last one wins
    said = {job_id: reason(job, latest.get(job_id)) for job_id, job in explained.items()}
    for job_id, why in waiting_reasons(client, jobs).items():
        said[job_id] = f"{said[job_id]}; {why}" if said.get(job_id) else why
    return said


_FLEX_MIN = {"app": 6, "site": 5, "workdir": 8, "tags": 6, "reason": 12}
"""The narrowest a shrinking column gets (an ellipsis marks what it cut)."""
_DROP_ORDER = ("tags", "site", "app", "workdir")
"""Columns left out, in this order, when even the narrowest widths do not fit."""


def fit_widths(natural: dict[str, int], fixed: set[str], width: int) -> dict[str, int]:
    """Column widths that fit ``width`` (two spaces between columns): the ``fixed`` ones whole, the others
    shrunk widest-first down to their minimum (the reason last), and columns dropped in
    :data:`_DROP_ORDER` if that is not enough."""
    columns = dict(natural)
    for drop in (None, *_DROP_ORDER):
        if drop is not None:
            columns.pop(drop, None)
        room = width - 2 * (len(columns) - 1)
        sizes = dict(columns)
        excess = sum(sizes.values()) - room
        for last in (False, True):  # the reason keeps its width until the others are at their minimum
            while excess > 0:
                shrinkable = [
                    n
                    for n in sizes
                    if n not in fixed and sizes[n] > _FLEX_MIN.get(n, 4) and (last or n != "reason")
                ]
                if not shrinkable:
                    break
                widest = max(shrinkable, key=lambda n: sizes[n])
                sizes[widest] -= 1
                excess -= 1
        if excess <= 0:
            return sizes
    return sizes


def jobs_table(jobs: list[Job], names: Names, why: dict[int, str], *, title: str, width: int) -> Table:
    """The table of ``job ls``, ``width`` columns wide at most: id, state and age stay whole; names,
    workdir and tags shrink with an ellipsis (tags, site, app and workdir go, in that order, at very narrow widths); a long reason
    wraps onto more lines."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": str(job.id),
            "state": job.state.value,
            "app": names.app_name(job.app_id),
            "site": names.site_name(job.site_id),
            "workdir": job.workdir,
            "tags": ",".join(f"{key}={value}" for key, value in job.tags.items()),
            "reason": why.get(job.id, ""),
            "age": age(job.updated_at, now),
        }
        for job in jobs
    ]
    natural = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in rows[0]} if rows else {}
    if not any(row["reason"] for row in rows):
        natural.pop("reason", None)
    widths = fit_widths(natural, {"id", "state", "age"}, width)
    table = Table(title=title, header_style="bold", box=None, pad_edge=False, padding=(0, 1))
    for name, size in widths.items():
        justify: Literal["left", "right"] = "right" if name in ("id", "age") else "left"
        if name == "reason":  # wrapped, never cut: it is what the user came for
            table.add_column(name, overflow="fold", width=size)
        else:
            table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", width=size)
    for row in rows:
        table.add_row(*(row[name] for name in widths))
    return table
