"""Waiting for jobs to end, as they end: a state read, then a long-poll on the event stream.

::

    GET /jobs?id=…  (≤ 1,000 ids a request)    ──▶ jobs already ended are yielded at once
    GET /events?to_state=JOB_FINISHED&to_state=FAILED&to_state=KILLED&after=<cursor>&wait_s=…
        └─ the service answers the moment a matching event is written ──▶ the job is fetched and yielded

No sleep loop: each request waits inside the service until something ends. A job's terminal event is
written once (nothing leaves a terminal state), so with few jobs still pending the long-poll is filtered
by their ids from the start of the stream, which cannot miss an event. With many pending (too many ids
for a URL) it reads every terminal event of yours since shortly before the state read, by the
service's own clock (its ``Date`` header), and keeps those of the jobs it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from beambridge.client.errors import NotFound, WaitTimeout
from beambridge.client.transport import Transport
from beambridge.schemas.common import MAX_PAGE_SIZE
from beambridge.schemas.jobs import Job
from beambridge.states import TERMINAL_STATES

READ_CHUNK = 1000
"""Job ids per ``GET /jobs?id=…`` request (keeps the URL short)."""
FILTERED_POLL_MAX = 500
"""Up to this many pending jobs, the long-poll names them; above it, it filters on our side."""
LONG_POLL_S = 30.0
CLOCK_MARGIN = timedelta(seconds=5)
_TERMINAL = sorted(str(state) for state in TERMINAL_STATES)


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()


def read_jobs(transport: Transport, ids: list[int]) -> tuple[list[Job], datetime | None]:
    """The jobs with these ids (NotFound if any is missing), and the service's clock at the first read."""
    found: list[Job] = []
    server_time: datetime | None = None
    for chunk in _chunks(ids, READ_CHUNK):
        params = [("id", job_id) for job_id in chunk] + [("limit", len(chunk))]
        response = transport.send("GET", "/jobs", params=params)
        if server_time is None and "date" in response.headers:
            server_time = parsedate_to_datetime(response.headers["date"])
        found.extend(Job.model_validate(item) for item in response.json()["items"])
    missing = sorted(set(ids) - {job.id for job in found})
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise NotFound(404, f"{len(missing)} job(s) not found: {shown}", {"ids": missing[:1000]})
    return found, server_time


def iter_completed(transport: Transport, ids: Iterable[int], timeout: float | None = None) -> Iterator[Job]:
    """Yield each job once it has ended (JOB_FINISHED, FAILED or KILLED), in the order they end.

    Raises :class:`WaitTimeout` if ``timeout`` seconds pass first (its ``pending_ids`` name the rest).
    """
    wanted = list(dict.fromkeys(int(i) for i in ids))
    deadline = _Deadline(timeout)
    finished: dict[int, Job] = {}
    jobs, server_time = read_jobs(transport, wanted)
    pending: set[int] = set()
    for job in jobs:
        if job.state in TERMINAL_STATES:
            finished[job.id] = job
            yield job
        else:
            pending.add(job.id)
    since = (server_time - CLOCK_MARGIN) if server_time is not None else None
    after: int | None = None
    while pending:
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(
                f"{len(pending)} of {len(wanted)} job(s) had not ended after {timeout} s",
                finished=finished,
                pending_ids=sorted(pending),
            )
        wait_s = LONG_POLL_S if remaining is None else max(0.0, min(LONG_POLL_S, remaining))
        params: list[tuple[str, object]] = [("to_state", state) for state in _TERMINAL]
        if len(pending) <= FILTERED_POLL_MAX:
            params += [("job_id", job_id) for job_id in sorted(pending)]
        elif since is not None:
            params.append(("since", since.isoformat()))
        if after is not None:
            params.append(("after", after))
        params += [("limit", MAX_PAGE_SIZE), ("wait_s", round(wait_s, 3))]
        body = transport.request("GET", "/events", params=params, timeout=wait_s + 30)
        ended = []
        for event in body["items"]:
            after = int(event["id"])
            if event["job_id"] in pending:
                pending.discard(event["job_id"])
                ended.append(int(event["job_id"]))
        if ended:
            for job in read_jobs(transport, ended)[0]:
                finished[job.id] = job
                yield job


def wait_all(transport: Transport, ids: Iterable[int], timeout: float | None = None) -> list[Job]:
    """Every job once all have ended, in the order of ``ids``; :class:`WaitTimeout` if time runs out."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    done = {job.id: job for job in iter_completed(transport, wanted, timeout)}
    return [done[job_id] for job_id in wanted]
