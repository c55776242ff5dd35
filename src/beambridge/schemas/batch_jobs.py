"""Batch jobs: pilot allocations a site submits to its scheduler."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from beambridge.schemas.common import InputModel, OutputModel, PositiveId, Tags, UtcDatetime
from beambridge.schemas.freejson import FreeJsonObject, free_json_field


class BatchJobState(StrEnum):
    """Where a pilot allocation is in its scheduler's life."""

    PENDING_SUBMISSION = "pending_submission"
    SUBMIT_FAILED = "submit_failed"
    QUEUED = "queued"
    RUNNING = "running"
    PENDING_DELETION = "pending_deletion"
    FINISHED = "finished"


_B = BatchJobState

BATCH_JOB_TRANSITIONS: dict[BatchJobState, frozenset[BatchJobState]] = {
    _B.PENDING_SUBMISSION: frozenset({_B.QUEUED, _B.SUBMIT_FAILED, _B.PENDING_DELETION}),
    _B.QUEUED: frozenset({_B.RUNNING, _B.FINISHED, _B.PENDING_DELETION}),
    _B.RUNNING: frozenset({_B.QUEUED, _B.FINISHED, _B.PENDING_DELETION}),  # queued again: a requeue
    _B.PENDING_DELETION: frozenset({_B.FINISHED}),
    _B.SUBMIT_FAILED: frozenset(),
    _B.FINISHED: frozenset(),
}
"""For each batch-job state, the states it may move to next; staying in a state is always allowed.

The site submits a pilot (``queued``, or ``submit_failed``), the scheduler runs it (and may requeue it)
and it ends (``finished``); a user or the elastic queue may ask for its deletion at any point before the
end. Nothing goes back to ``pending_submission`` (the site would submit a second allocation), and a pilot
whose deletion was asked for can only finish: a late report of the scheduler cannot revive it.
"""

BATCH_JOB_FINAL_STATES = frozenset(state for state, nexts in BATCH_JOB_TRANSITIONS.items() if not nexts)
"""States nothing leaves."""


def can_change_batch_job(current: BatchJobState, requested: BatchJobState) -> bool:
    """Whether a batch job in ``current`` may be set to ``requested``."""
    return requested == current or requested in BATCH_JOB_TRANSITIONS[current]


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
    status_info: FreeJsonObject | None = free_json_field("What the scheduler reported.", default=None)
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
