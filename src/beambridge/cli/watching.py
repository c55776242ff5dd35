"""``beambridge job watch`` and ``job wait``: follow a campaign until every job has ended.

``watch`` shows a progress bar of ended jobs and the counts by state, refreshed as events arrive (the
service's long-poll wakes it; nothing sleeps on a timer); both exit 0 if every job finished, 1 if any
failed or was killed, so a script can chain on them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from beambridge.cli.output import console
from beambridge.client import Client
from beambridge.client.query import Query
from beambridge.schemas.jobs import Job
from beambridge.states import TERMINAL_STATES, JobState

S = JobState
_ORDER = list(JobState)


def counts_line(counts: Counter[JobState]) -> str:
    """``'RUNNING 3 · JOB_FINISHED 20 · FAILED 1'`` in lifecycle order."""
    return " · ".join(f"{state.value} {counts[state]}" for state in _ORDER if counts[state])


def ended_badly(jobs: Iterable[Job]) -> list[Job]:
    """The jobs that failed or were killed."""
    return [job for job in jobs if job.state in (S.FAILED, S.KILLED)]


def watch(client: Client, query: Query[Job], *, refresh_s: float = 0.5) -> list[Job]:
    """Show progress until every job of ``query`` has ended; the jobs as they ended."""
    with Progress(
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        task = progress.add_task("", total=None)
        while True:
            cursor = client.events.latest_id()  # before reading: a change after the read wakes us
            shown = time.monotonic()
            jobs = list(query.page_size(5000))
            counts = Counter(job.state for job in jobs)
            ended = sum(counts[state] for state in TERMINAL_STATES)
            progress.update(task, total=len(jobs), completed=ended, description=counts_line(counts))
            if ended == len(jobs):
                return jobs
            client.events.next(after=cursor, wait_s=10)
            time.sleep(max(0.0, refresh_s - (time.monotonic() - shown)))  # at most two reads a second
