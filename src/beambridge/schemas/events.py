"""Events: one row per job state transition."""

from __future__ import annotations

from pydantic import JsonValue

from beambridge.schemas.common import OutputModel, UtcDatetime
from beambridge.states import JobState


class Event(OutputModel):
    """A job moved from one state to another."""

    id: int
    job_id: int
    site_id: int
    from_state: JobState
    to_state: JobState
    timestamp: UtcDatetime
    data: dict[str, JsonValue]
