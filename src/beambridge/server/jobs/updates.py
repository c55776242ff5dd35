"""Users' changes to jobs: fields, and state changes validated by the state machine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from beambridge.schemas.jobs import JobUpdate
from beambridge.server.auth.tokens import Principal
from beambridge.server.errors import InvalidRequestError
from beambridge.server.jobs.lifecycle import Outcome, TransitionRequest, apply_transitions
from beambridge.states import SESSION_REPORTED_STATES


def update_jobs(
    conn: Connection, principal: Principal, updates: Sequence[tuple[int, JobUpdate]], now: datetime
) -> Outcome:
    """Apply each ``(job id, changes)``, all or none; a state change is recorded as an event.

    The states a launcher observes (RUNNING, RUN_DONE…) are refused (422): only the session holding the
    job may report them.
    """
    requests = []
    for job_id, changes in updates:
        if changes.state in SESSION_REPORTED_STATES:
            raise InvalidRequestError(
                f"job {job_id}: {changes.state} is reported by the launcher session holding the job "
                "(POST /sessions/{id}/report), not set by an update"
            )
        fields = changes.model_dump(exclude_unset=True, exclude={"id", "state", "state_data"})
        requests.append(TransitionRequest(job_id, changes.state, dict(changes.state_data), None, fields))
    return apply_transitions(
        conn, requests, now=now, owner_id=principal.user_id, actor=principal.actor, site_id=principal.site_id
    )
