"""Transfer items: one file or directory to move in or out for a job."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.common import InputModel, OutputModel, PositiveId, UtcDatetime
from beambridge.schemas.freejson import FreeJsonObject, free_json_field


class TransferState(StrEnum):
    """Where a transfer item is."""

    AWAITING_JOB = "awaiting_job"
    PENDING = "pending"
    ACTIVE = "active"
    DONE = "done"
    ERROR = "error"


_T = TransferState
TRANSFER_NEXT: dict[TransferState, frozenset[TransferState]] = {
    _T.AWAITING_JOB: frozenset({_T.AWAITING_JOB, _T.PENDING, _T.ACTIVE, _T.DONE, _T.ERROR}),
    _T.PENDING: frozenset({_T.PENDING, _T.ACTIVE, _T.DONE, _T.ERROR}),
    _T.ACTIVE: frozenset({_T.ACTIVE, _T.PENDING, _T.DONE, _T.ERROR}),
    _T.ERROR: frozenset({_T.ERROR, _T.PENDING}),
    _T.DONE: frozenset({_T.DONE}),
}
"""The states a transfer item may be set to from each state: ``done`` is final, nothing returns to
``awaiting_job``, a failed item may only be tried again (``pending``)."""


class TransferItem(OutputModel):
    """A transfer item as the service sees it."""

    id: int
    job_id: int
    site_id: int
    direction: TransferDirection
    slot: str
    location: str
    remote_path: str
    local_path: str
    recursive: bool
    sha256: str | None = None
    """The SHA-256 the submitter declared for an input: the arrived file must match it."""
    state: TransferState
    task_id: str | None
    info: dict[str, Any]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class TransferItemUpdate(InputModel):
    """What the site's transfer service reports about an item."""

    id: PositiveId
    state: TransferState | None = None
    task_id: str | None = Field(default=None, max_length=255)
    info: FreeJsonObject | None = free_json_field("What the transfer backend reported.", default=None)
