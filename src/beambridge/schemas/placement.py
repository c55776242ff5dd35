"""Placement decisions as the API shows them: the data of a job's placement event.

The placement code (``beambridge.placement``) builds these as plain objects for speed and serialises them
with ``Decision.to_dict()``; these models read that JSON back in the SDK and the CLI (a test keeps the
two shapes equal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from beambridge.schemas.common import InputModel, Name, OutputModel, UtcDatetime

SiteStatusName = Literal["chosen", "candidate", "unavailable", "ineligible"]
HealthName = Literal["up", "degraded", "down", "draining", "unknown"]
WaitBasisName = Literal["free_slot", "backlog", "queued_pilot", "new_pilot"]
RunBasisName = Literal["history", "history_scaled", "prior"]
PolicyName = Literal["round_robin", "shortest_backlog", "fastest_finish"]


class PlacementEstimate(OutputModel):
    """One site's figures in a placement decision (seconds from the decision; null where not computed).

    ``finish_s = (max(stage_in_s, wait_s) + run_s + stage_out_s) × penalty``.
    """

    site: str
    status: SiteStatusName
    health: HealthName
    reasons: list[str] = Field(default_factory=list, description="Why the site is ineligible or unavailable")
    backlog: int = Field(description="Jobs waiting at the site when the decision was made")
    stage_in_s: float | None = None
    wait_s: float | None = None
    wait_basis: WaitBasisName | None = None
    run_s: float | None = None
    run_basis: RunBasisName | None = None
    stage_out_s: float | None = None
    finish_s: float | None = None
    finish_p95_s: float | None = None
    penalty: float = Field(default=1.0, description="Multiplier on a degraded site's finish")


class PlacementDecision(OutputModel):
    """Where a job was placed (or why not), by which policy, with every site's estimate."""

    job: int | str
    policy: PolicyName
    outcome: Literal["placed", "deferred", "refused"]
    site: str | None
    reason: str
    at: float = Field(description="When the decision was made (POSIX seconds)")
    explored: bool = Field(default=False, description="Sent to a site with no history, to measure it")
    estimates: list[PlacementEstimate]


class SiteAppOutlook(OutputModel):
    """What a typical job of one app would meet at a site now."""

    app: str
    run_s: float = Field(description="Predicted run time (median)")
    run_basis: RunBasisName
    wait_s: float | None = Field(description="Predicted wait for a slot; null when no capacity will come")
    wait_basis: WaitBasisName | None
    finish_s: float | None = Field(description="Predicted finish of a typical job placed now")


class SitePlacement(OutputModel):
    """A site as placement sees it now: health, capacity, backlog, rates and predicted finish."""

    site_id: int
    name: str
    health: HealthName
    reasons: list[str] = Field(default_factory=list, description="Why the site is not up")
    accepts_work: bool
    drained: bool
    heartbeat_age_s: float | None
    running_slots: int
    free_slots: int
    queued_pilots: int
    backlog: int = Field(description="Jobs placed here and not running yet")
    running: int
    finished_per_min: float = Field(description="Jobs finished here over the last 15 minutes, per minute")
    apps: list[SiteAppOutlook]


class SiteDrain(InputModel):
    """Stop sending new work to a site (planned maintenance); its unclaimed jobs are re-placed."""

    reason: str = Field(default="", max_length=500)


class SiteGroupCreate(InputModel):
    """A named set of your sites that jobs can be submitted to, with an optional placement policy."""

    name: Name
    sites: list[Name] = Field(min_length=1, max_length=100)
    policy: PolicyName | None = None


class SiteGroup(OutputModel):
    """A named set of sites."""

    id: int
    name: str
    sites: list[str]
    policy: PolicyName | None
    created_at: UtcDatetime
