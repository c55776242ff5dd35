"""Batch jobs: pilot allocations a site submits to its scheduler."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from beambridge.schemas.common import InputModel, OutputModel, PositiveId, Tags, UtcDatetime


class BatchJobState(StrEnum):
    """Where a pilot allocation is in its scheduler's life."""

    PENDING_SUBMISSION = "pending_submission"
    SUBMIT_FAILED = "submit_failed"
    QUEUED = "queued"
    RUNNING = "running"
    PENDING_DELETION = "pending_deletion"
    FINISHED = "finished"


BATCH_JOB_FINAL_STATES = frozenset({BatchJobState.SUBMIT_FAILED, BatchJobState.FINISHED})


class JobMode(StrEnum):
    """How the pilot's launcher runs jobs."""

    SERIAL = "serial"
    MPI = "mpi"


class BatchJobCreate(InputModel):
    """Ask a site to submit a pilot allocation."""

    site_id: PositiveId
    project: str = Field(default="", max_length=255)
    queue: str = Field(default="", max_length=255)
    num_nodes: int = Field(ge=1, le=100_000)
    wall_time_min: int = Field(ge=1, le=60 * 24 * 30)
    job_mode: JobMode = JobMode.SERIAL
    filter_tags: Tags = Field(default_factory=dict)
    optional_params: dict[str, str] = Field(default_factory=dict)


class BatchJobUpdate(InputModel):
    """What a site reports about a pilot (or a user's request to delete it)."""

    state: BatchJobState | None = None
    scheduler_id: str | None = Field(default=None, max_length=255)
    status_info: dict[str, Any] | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None


class BatchJob(OutputModel):
    """A pilot allocation as the service sees it."""

    id: int
    site_id: int
    scheduler_id: str | None
    project: str
    queue: str
    num_nodes: int
    wall_time_min: int
    job_mode: JobMode
    filter_tags: dict[str, str]
    optional_params: dict[str, str]
    state: BatchJobState
    status_info: dict[str, Any]
    start_time: UtcDatetime | None
    end_time: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
