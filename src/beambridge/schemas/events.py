"""Events: one row per job state transition."""

from __future__ import annotations

from pydantic import Field, JsonValue

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
    actor: str = Field(
        default="",
        description="Who caused it: 'user:NAME', 'site:SITE (token N)', 'launcher:SITE (session N)', "
        "'placement', 'system' (the service by its own rules), or '' for events older than the audit trail",
    )
