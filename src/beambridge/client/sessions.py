"""Launcher sessions (``client.sessions``): open, heartbeat, acquire (long-poll), report, close."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from beambridge.client.query import FilterField, Query, filter_fields
from beambridge.client.resources import Manager, as_body
from beambridge.schemas.jobs import BulkResult, Job
from beambridge.schemas.queries import SessionQuery
from beambridge.schemas.sessions import Heartbeat, JobReport, Session


class SessionManager(Manager[Session]):
    """How a pilot's launcher gets work and reports on it."""

    path, model, noun = "/sessions", Session, "session"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(SessionQuery)

    def filter(self, *, site_id: int | None = None, active: bool | None = None) -> Query[Session]:
        """Your sessions, optionally of one site and only active (or only expired) ones."""
        return self._query(site_id=site_id, active=active)

    def open(self, site_id: int, batch_job_id: int | None = None) -> Session:
        """Open a session for a launcher on ``site_id`` (tied to its batch job, if any)."""
        return self._post(self.path, {"site_id": site_id, "batch_job_id": batch_job_id})

    create = open

    def heartbeat(self, session_id: int) -> Heartbeat:
        """Keep the session alive; the answer lists its jobs cancelled meanwhile (kill them)."""
        body = self._transport.request("POST", f"{self.path}/{int(session_id)}/heartbeat", retry=True)
        return Heartbeat.model_validate(body)

    def acquire(
        self,
        session_id: int,
        max_jobs: int = 100,
        free_nodes: Sequence[float] | None = None,
        wait_s: float = 0,
        *,
        time_left_min: float | None = None,
        unlimited_jobs: bool = True,
        serial_only: bool = False,
        filter_tags: Mapping[str, str] | None = None,
        apps: Mapping[str, str | None] | None = None,
    ) -> list[Job]:
        """Runnable jobs that fit ``free_nodes`` (free fraction of each node), locked to this session.

        With ``wait_s`` > 0 and nothing runnable, the service holds the request until a job becomes
        runnable or the time is up (an empty list). ``time_left_min``: only jobs whose wall-time limit fits
        in it; ``unlimited_jobs`` False: none without a limit (what a launcher near its end asks for).
        ``apps``: the apps this launcher can run, name → version of its code (None: unknown); only their
        jobs are handed out (without it, jobs of every app).
        """
        body: dict[str, Any] = {
            "max_jobs": max_jobs,
            "free_nodes": None if free_nodes is None else list(free_nodes),
            "wait_s": wait_s,
            "time_left_min": time_left_min,
            "unlimited_jobs": unlimited_jobs,
            "serial_only": serial_only,
            "filter_tags": dict(filter_tags or {}),
        }
        if apps is not None:
            body["apps"] = dict(apps)
        answer = self._transport.request(
            "POST", f"{self.path}/{int(session_id)}/acquire", json=body, timeout=wait_s + 60
        )
        return [Job.model_validate(item) for item in answer]

    def report(
        self,
        session_id: int,
        reports: Iterable[JobReport | Mapping[str, Any]],
        batch_id: str | None = None,
    ) -> BulkResult:
        """Report observed state changes (RUNNING, RUN_DONE, RUN_ERROR, RUN_TIMEOUT), all or none.

        Send a batch again with the same ``batch_id`` when its answer was lost: it is applied once."""
        body: dict[str, Any] = {"reports": [as_body(item) for item in reports]}
        if batch_id is not None:
            body["batch_id"] = batch_id
        return BulkResult.model_validate(
            self._transport.request("POST", f"{self.path}/{int(session_id)}/report", json=body)
        )

    def close(self, session_id: int, *, unreported: bool = False) -> None:
        """End the session: unstarted jobs return to the pool; running ones time out. ``unreported``: some
        reports never reached the service, so each job the session held may have started (its history
        shows that possible run)."""
        params = {"unreported": "true"} if unreported else None
        # Safe to repeat: a close whose answer was lost is answered 409 (already ended) the second time.
        self._transport.request("DELETE", f"{self.path}/{int(session_id)}", params=params, retry=True)
