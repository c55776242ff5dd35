"""The filters of the list routes: one model per resource, read by the server from the query string and
used by the SDK to know its filter keywords.

A list field matches any of its values and is sent as a repeated parameter (``?state=READY&state=RUNNING``);
every given field must match. Adding a filter is one field here: a field named as a column of the
resource's table needs nothing more (the server matches it by equality, ``IN`` for a list); any other
needs its SQL condition in the server's module for the resource, which refuses to ignore it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.schemas.common import Name, PositiveId, check_tags
from beambridge.schemas.transfers import TransferState
from beambridge.states import JobState

MAX_FILTER_IDS = 5000
"""Most values one id-list filter may carry in one request (the SDK sends longer lists in parts)."""
MAX_TAG_FILTERS = 64


class QueryModel(BaseModel):
    """Filters read from a query string; parameters the model does not know (``after``, ``limit``) are
    left to the route."""


def parse_tag_filter(value: str) -> tuple[str, str]:
    """``'key:value'`` as ``(key, value)``; the value may itself hold colons."""
    key, sep, tag = value.partition(":")
    if not sep or not key:
        raise ValueError(f"tag filter {value!r} must look like 'key:value'")
    return key, tag


def _check_tag_filter(value: str) -> str:
    parse_tag_filter(value)
    return value


TagFilter = Annotated[str, AfterValidator(_check_tag_filter)]
"""One ``tag`` filter, ``'key:value'``."""


class JobQuery(QueryModel):
    """Filters of ``GET /jobs`` and ``GET /jobs/count``."""

    id: list[PositiveId] = Field(default=[], max_length=MAX_FILTER_IDS, description="Job ids")
    state: list[JobState] = []
    site_id: list[PositiveId] = []
    app_id: list[PositiveId] = []
    tag: list[TagFilter] = Field(
        default=[], max_length=MAX_TAG_FILTERS, description="'key:value'; every one must match"
    )
    parent_id: PositiveId | None = Field(default=None, description="Children of this job")
    session_id: PositiveId | None = None
    workdir_prefix: str | None = Field(default=None, max_length=512)
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    hedge_of: PositiveId | None = Field(default=None, description="The hedged copies of this job")
    copies: bool | None = Field(
        default=None, description="false: leave hedged copies out; true: only hedged copies"
    )

    @field_validator("tag")
    @classmethod
    def _valid_tags(cls, value: list[str]) -> list[str]:
        check_tags(dict(parse_tag_filter(item) for item in value))
        return value

    @property
    def tags(self) -> dict[str, str]:
        """The ``tag`` filters as the dict of tags a job must carry."""
        return dict(parse_tag_filter(item) for item in self.tag)


class EventQuery(QueryModel):
    """Filters of ``GET /events``."""

    job_id: list[PositiveId] = Field(default=[], max_length=MAX_FILTER_IDS)
    site_id: PositiveId | None = None
    from_state: list[JobState] = []
    to_state: list[JobState] = []
    since: datetime | None = None
    until: datetime | None = None
    tag: list[TagFilter] = Field(
        default=[],
        max_length=MAX_TAG_FILTERS,
        description="'key:value' the event's job carries; every one must match",
    )
    actor: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Events whose actor starts with this: 'user:alice', 'launcher:', 'system'",
    )

    @field_validator("tag")
    @classmethod
    def _valid_tags(cls, value: list[str]) -> list[str]:
        check_tags(dict(parse_tag_filter(item) for item in value))
        return value

    @property
    def tags(self) -> dict[str, str]:
        """The ``tag`` filters as the dict of tags the event's job must carry."""
        return dict(parse_tag_filter(item) for item in self.tag)


class AuditQuery(QueryModel):
    """Filters of ``GET /audit``."""

    action: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z_.]+$",
        description="An action ('site_token.revoke') or a family of them ('site_token')",
    )
    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description="Entries whose actor starts with this"
    )
    since: datetime | None = None


class SiteQuery(QueryModel):
    """Filters of ``GET /sites``."""

    name: Name | None = None


class AppQuery(QueryModel):
    """Filters of ``GET /apps``."""

    site_id: PositiveId | None = None
    name: Name | None = None


class BatchJobQuery(QueryModel):
    """Filters of ``GET /batch-jobs``."""

    site_id: PositiveId | None = None
    state: list[BatchJobState] = []


class TransferQuery(QueryModel):
    """Filters of ``GET /transfers``."""

    job_id: list[PositiveId] = Field(default=[], max_length=MAX_FILTER_IDS)
    site_id: PositiveId | None = None
    state: list[TransferState] = []
    direction: TransferDirection | None = None
    location: str | None = Field(default=None, max_length=255)


class SessionQuery(QueryModel):
    """Filters of ``GET /sessions``."""

    site_id: PositiveId | None = None
    active: bool | None = None


class WorkflowQuery(QueryModel):
    """Filters of ``GET /workflows``."""

    name: Name | None = None


class SubmissionQuery(QueryModel):
    """Filters of ``GET /submissions``."""

    workflow: Name | None = None
    key: str | None = Field(default=None, min_length=1, max_length=512)


class BeamlineEventQuery(QueryModel):
    """Filters of ``GET /beamline-events``."""

    kind: str | None = Field(default=None, max_length=64)
    workflow: Name | None = None
