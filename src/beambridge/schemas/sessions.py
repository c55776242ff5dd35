"""Launcher sessions: how a pilot acquires jobs and reports on them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from beambridge.schemas.apps import AppVersion
from beambridge.schemas.common import InputModel, Int32, Name, OutputModel, PositiveId, Tags, UtcDatetime
from beambridge.schemas.freejson import FreeJson, FreeJsonObject, free_json_field
from beambridge.states import SESSION_REPORTED_STATES, JobState


class SessionCreate(InputModel):
    """Open a session for a launcher on a site."""

    site_id: PositiveId
    batch_job_id: PositiveId | None = None


class Session(OutputModel):
    """A launcher session."""

    id: int
    site_id: int
    batch_job_id: int | None
    created_at: UtcDatetime
    heartbeat_at: UtcDatetime
    expired_at: UtcDatetime | None
    apps: list[str] | None = Field(
        default=None,
        description="The apps its launcher last said it can run (null: it named none and takes every app)",
    )


class Heartbeat(OutputModel):
    """The answer to a heartbeat: the session's jobs that were cancelled meanwhile, to be killed."""

    session_id: int
    killed_job_ids: list[int]


class AcquireRequest(InputModel):
    """A launcher's free resources; the answer holds runnable jobs that fit them, best priority first."""

    max_jobs: int = Field(default=100, ge=1, le=10_000)
    free_nodes: list[float] | None = Field(
        default=None,
        max_length=100_000,
        description=(
            "Free fraction (0-1) of each node. A multi-node job needs that many wholly free nodes; a "
            "single-node job needs 1/node_packing_count of one node. Null: do not match resources."
        ),
    )
    time_left_min: float | None = Field(
        default=None,
        ge=0,
        description="What is left of the launcher's allocation: skip jobs whose wall-time limit exceeds it",
    )
    unlimited_jobs: bool = Field(
        default=True,
        description="Also jobs with no wall-time limit (a launcher near the end of its allocation says no)",
    )
    serial_only: bool = Field(default=False, description="Only single-node, single-rank jobs")
    filter_tags: Tags = Field(default_factory=dict)
    apps: dict[Name, AppVersion | None] | None = Field(
        default=None,
        max_length=10_000,
        description=(
            "The apps this launcher can run, by name, each with the version of its code it has (null: "
            "unknown). Only jobs of these apps are handed out, and of an app registered with a version "
            "only if the versions agree. Null (launchers that do not say): jobs of every app."
        ),
    )
    wait_s: float = Field(default=0, ge=0, le=60, description="Long-poll: wait this long for work")


class JobReport(InputModel):
    """One state change a launcher observed."""

    id: PositiveId
    state: JobState
    at: datetime | None = Field(default=None, description="When the launcher saw it (UTC)")
    return_code: Int32 | None = None
    result: FreeJson = free_json_field("The run's result.", default=None)
    error: str | None = Field(default=None, max_length=100_000)
    state_data: FreeJsonObject = free_json_field("Stored with the transition's event.", default_factory=dict)

    @field_validator("state")
    @classmethod
    def _launcher_state(cls, state: JobState) -> JobState:
        if state not in SESSION_REPORTED_STATES:
            allowed = ", ".join(sorted(SESSION_REPORTED_STATES))
            raise ValueError(f"a launcher may report only {allowed}, not {state}")
        return state


class SessionReport(InputModel):
    """A batch of state changes from one launcher session."""

    reports: list[JobReport] = Field(min_length=1, max_length=50_000)
    batch_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description=(
            "The launcher's id for this batch. A batch sent again with the same id (its answer was lost) "
            "is answered as before and not applied twice; the service remembers each session's last one."
        ),
    )
