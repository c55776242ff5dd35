"""Jobs: one run of an app with its parameters, resources, parents and transfers."""

from __future__ import annotations

import posixpath
from typing import Annotated, Any

from pydantic import AfterValidator, Field, JsonValue, field_validator, model_validator

from beambridge.schemas.common import InputModel, Name, OutputModel, PositiveId, Tags, UtcDatetime
from beambridge.schemas.freejson import FreeJson, FreeJsonObject, free_json_field
from beambridge.schemas.placement import PolicyName
from beambridge.states import RETRYABLE_STATES, JobState


def _check_workdir(value: str) -> str:
    if value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError("must be a relative POSIX path inside the site's data directory")
    normal = posixpath.normpath(value)
    if normal in (".", "..") or normal.startswith("../"):
        raise ValueError("must name a directory below the site's data directory (no '..')")
    return normal


Workdir = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_check_workdir)]


def _check_transfer(value: str) -> str:
    alias, sep, path = value.partition(":")
    if not sep or not alias or not path:
        raise ValueError(f"{value!r} must look like 'location:/path/on/location'")
    if "\x00" in path:
        raise ValueError(f"{value!r:.80}: the path contains a NUL byte")
    if ".." in path.split("/"):
        raise ValueError(
            f"{value!r:.80}: the path may not contain '..' (it is relative to the location's base)"
        )
    return value


TransferRef = Annotated[str, Field(max_length=2048), AfterValidator(_check_transfer)]


class VerifiedTransfer(InputModel):
    """A stage-in whose content the submitter knows: the arrived file must hash to ``sha256``."""

    ref: TransferRef = Field(description="'location:/path/on/location'")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file, 64 lower-case hex digits"
    )


TransferValue = TransferRef | VerifiedTransfer
"""A slot's transfer: ``'location:/path'``, or ``{"ref": 'location:/path', "sha256": '…'}`` for an input
whose checksum the beamline recorded when it wrote the file."""


def transfer_ref(value: TransferValue) -> str:
    """The ``'location:/path'`` of a slot's transfer."""
    return value if isinstance(value, str) else value.ref


def transfer_sha256(value: TransferValue) -> str | None:
    """The SHA-256 the submitter declared for a slot's transfer, if any."""
    return None if isinstance(value, str) else value.sha256


class JobResources(InputModel):
    """What one job needs from the allocation."""

    num_nodes: int = Field(default=1, ge=1, le=100_000)
    ranks_per_node: int = Field(default=1, ge=1, le=4096)
    threads_per_rank: int = Field(default=1, ge=1, le=4096)
    gpus_per_rank: float = Field(default=0, ge=0, le=64)
    node_packing_count: int = Field(
        default=1, ge=1, le=1024, description="How many such single-node jobs may share one node"
    )
    wall_time_limit_min: float = Field(
        default=0,
        ge=0,
        le=60 * 24 * 30,
        description="The longest the job may run, in minutes; 0 means no limit",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "wall_time_min" in data:
            raise ValueError(
                "wall_time_min is now wall_time_limit_min (the job's limit in minutes, 0 = none); "
                "wall_time_min names a pilot's allocation"
            )
        return data


class JobCreate(JobResources):
    """A new job: of one app (``app_id``), or of an app by name placed by the service on one of ``sites``.

    With ``app`` (a name) the service binds the job to the site that will finish it soonest among the
    eligible ``sites`` (names), the sites of ``site_group``, or else all of the caller's sites; ``policy``
    overrides the group's or the server's placement policy; ``hedge`` asks for a copy on the second-best
    site when the job runs late. A job with unfinished parents is placed when it becomes runnable.
    """

    app_id: PositiveId | None = None
    app: Name | None = Field(default=None, description="An app by name, placed by the service")
    sites: list[Name] | None = Field(
        default=None, min_length=1, max_length=100, description="Eligible sites, by name (with app)"
    )
    site_group: Name | None = Field(default=None, description="A site group of yours, by name (with app)")
    policy: PolicyName | None = Field(default=None, description="Placement policy for this job (with app)")
    hedge: bool = Field(default=False, description="Copy to the second-best site when late (with app)")
    workdir: Workdir
    parameters: FreeJsonObject = free_json_field("The app's parameters.", default_factory=dict)
    tags: Tags = Field(default_factory=dict)
    data: FreeJsonObject = free_json_field("Free-form user data.", default_factory=dict)
    launch_params: dict[str, str] = Field(default_factory=dict, description="Extra launcher options")
    parent_ids: list[PositiveId] = Field(default_factory=list, max_length=10_000)
    transfers: dict[str, TransferValue] = Field(
        default_factory=dict,
        description="Transfer slot name → 'location:/path' (or {ref, sha256} for a checked input)",
    )
    retry_limit: int = Field(default=3, ge=0, le=1000)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)

    @model_validator(mode="after")
    def _one_app(self) -> JobCreate:
        if (self.app_id is None) == (self.app is None):
            raise ValueError("give either app_id (one site's app) or app (an app by name, placed on a site)")
        if self.app is None and (
            self.sites is not None or self.site_group is not None or self.policy is not None or self.hedge
        ):
            raise ValueError("sites, site_group, policy and hedge go with app (by name), not with app_id")
        if self.sites is not None and self.site_group is not None:
            raise ValueError("give sites or site_group, not both")
        if self.sites is not None and len(set(self.sites)) != len(self.sites):
            raise ValueError("sites lists a site twice")
        return self

    @property
    def placed_by_service(self) -> bool:
        """Whether the service chooses the site (an app by name)."""
        return self.app is not None

    @field_validator("parent_ids")
    @classmethod
    def _unique_parents(cls, parent_ids: list[int]) -> list[int]:
        if len(set(parent_ids)) != len(parent_ids):
            raise ValueError("lists a job twice")
        return parent_ids


class JobUpdate(InputModel):
    """Changes to one job. Setting ``state`` asks for a validated transition."""

    state: JobState | None = None
    state_data: FreeJsonObject = free_json_field(
        "Stored with the transition's event (a reason, a message…).", default_factory=dict
    )
    tags: Tags | None = None
    data: FreeJsonObject | None = free_json_field("Free-form user data.", default=None)
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    retry_limit: int | None = Field(default=None, ge=0, le=1000)
    result: FreeJson = free_json_field("The run's result.", default=None)
    error: str | None = Field(default=None, max_length=100_000)


class JobBulkUpdate(JobUpdate):
    """Changes to one job inside a bulk update."""

    id: PositiveId


class JobIds(InputModel):
    """A set of jobs to act on."""

    ids: list[PositiveId] = Field(min_length=1, max_length=50_000)


class JobRetry(InputModel):
    """Send ended jobs back to run: the ``ids`` given and/or every job with all of ``tags``, among those in
    ``state`` (``FAILED`` and ``KILLED`` unless narrowed). At least one of the three must be given.

    Each goes back to where a new job starts (waiting for its parents, for its stage-ins, or runnable at
    once) with its retry count at zero; children that failed because it failed go back with it. The event
    of each retry names who asked.
    """

    ids: list[PositiveId] = Field(default_factory=list, max_length=50_000)
    tags: Tags = Field(default_factory=dict, description="Jobs carrying every one of these tags")
    state: list[JobState] = Field(
        default_factory=list, description="Only jobs in these states (FAILED, KILLED; default both)"
    )

    @field_validator("state")
    @classmethod
    def _retryable(cls, states: list[JobState]) -> list[JobState]:
        wrong = [str(state) for state in states if state not in RETRYABLE_STATES]
        if wrong:
            raise ValueError(f"only FAILED and KILLED jobs can be retried, not {', '.join(wrong)}")
        return states

    @model_validator(mode="after")
    def _selects_something(self) -> JobRetry:
        if not (self.ids or self.tags or self.state):
            raise ValueError("name the jobs to retry: ids, tags or state")
        return self


class RetrySkipped(OutputModel):
    """A job named by id that was not retried, and why."""

    id: int
    state: JobState
    reason: str


class RetryResult(OutputModel):
    """What a retry sent back to run: ``ids`` (with the failed children that followed their parents),
    and the jobs named by id that were left alone."""

    count: int
    ids: list[int]
    skipped: list[RetrySkipped] = Field(default_factory=list)


TAG_KEY_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class JobSummaryGroup(OutputModel):
    """The jobs of one value of the tag (or all the jobs, when not grouped), counted by state."""

    value: str | None = Field(description="The tag's value; null: jobs without the tag (or not grouped)")
    counts: dict[JobState, int] = Field(description="Jobs by state (states with none left out)")
    total: int


class JobSummary(OutputModel):
    """Counts by state of the jobs matching the filters, per value of one tag if asked."""

    by_tag: str | None
    total: int
    groups: list[JobSummaryGroup] = Field(description="Newest first: by the newest job of each group")
    groups_left_out: int = Field(default=0, description="Groups beyond max_groups (their jobs not counted)")


class Job(OutputModel):
    """A job as the service sees it."""

    id: int
    app_id: int
    site_id: int
    workdir: str
    state: JobState
    parameters: dict[str, JsonValue]
    tags: dict[str, str]
    data: dict[str, JsonValue]
    launch_params: dict[str, str]
    num_nodes: int
    ranks_per_node: int
    threads_per_rank: int
    gpus_per_rank: float
    node_packing_count: int
    wall_time_limit_min: float
    parent_ids: list[int]
    transfers: dict[str, str | dict[str, str]]
    retry_count: int
    retry_limit: int
    priority: int
    session_id: int | None
    batch_job_id: int | None
    return_code: int | None
    result: JsonValue
    error: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    awaiting_placement: bool = Field(
        default=False, description="Waiting for the service to bind it to a site (site_id is provisional)"
    )
    hedge_of: int | None = Field(
        default=None, description="Set on a hedged copy: the job it is a copy of (its run may be adopted)"
    )


class BulkResult(OutputModel):
    """How many objects a bulk operation touched."""

    count: int
    ids: list[int]
