"""Placement decisions as the API shows them: the data of a job's placement event.

The placement code (``beambridge.placement``) builds these as plain objects for speed and serialises them
with ``Decision.to_dict()``; these models read that JSON back in the SDK and the CLI (a test keeps the
two shapes equal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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
    marginal_s: float | None = Field(
        default=None,
        description="The delay the job would impose on later jobs there (null: none, it finds an idle "
        "slot); fastest_finish ranks by finish_s + marginal_s",
    )


class PlacementGroupSite(OutputModel):
    """The jobs of a shared group one site got, and its estimates for the first and the last of them."""

    site: str
    jobs: int = Field(description="Jobs of the group placed at this site")
    ids: list[list[int]] = Field(description="Their ids, as [first, last] runs")
    first: PlacementEstimate | None = Field(description="The site's estimate for the first of them")
    last: PlacementEstimate | None = Field(description="The site's estimate for the last of them")
    explored: list[int] = Field(default_factory=list, description="Jobs sent here to measure the site")


class PlacementGroup(OutputModel):
    """Alike jobs of one request placed together: the sites were surveyed once for the group, and the
    group's first job's event carries every site's estimate at the start. Either each other job has an
    event of its own carrying its chosen site, the runner-up and the sites that could not take it, naming
    the rest (``omitted``); or the group shares one event (``ids`` and ``sites`` set), which a job's
    history shows as that job's: its site chosen with the site's estimate for the group's first job
    there, and the group's spread over the sites."""

    jobs: int = Field(description="Jobs in the group")
    first_job: int | str = Field(description="The job whose placement event has every site's estimate")
    omitted: list[str] = Field(
        default_factory=list, description="Candidate sites left out of this event (see first_job's)"
    )
    ids: list[list[int]] = Field(
        default_factory=list, description="A shared group's jobs, as [first, last] runs"
    )
    sites: list[PlacementGroupSite] = Field(
        default_factory=list, description="A shared group's jobs per site, with the site's estimates"
    )


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
    group: PlacementGroup | None = Field(
        default=None, description="Set when the job was placed with alike jobs of the same request"
    )


class SiteAppOutlook(OutputModel):
    """What a typical job of one app would meet at a site now."""

    app: str
    run_s: float = Field(description="Predicted run time (median)")
    run_basis: RunBasisName
    wait_s: float | None = Field(description="Predicted wait for a slot; null when no capacity will come")
    wait_basis: WaitBasisName | None
    finish_s: float | None = Field(description="Predicted finish of a typical job placed now")


class RouteOutlook(OutputModel):
    """One transfer route (a location alias ↔ the site) as placement predicts it."""

    location: str
    rate_bps: float = Field(description="Bytes per second")
    overhead_s: float = Field(description="Seconds per transfer task, whatever its size")
    basis: Literal["history", "prior"] = Field(
        description="Measured from the agent's timed tasks, or configured"
    )
    samples: int = Field(description="Timed tasks behind a measured rate")
    failure_rate: float = Field(description="Share of the route's recent tasks that failed")


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
    new_pilot_slots: int = Field(default=0, description="Nodes a new pilot would bring (0: none will come)")
    turnaround_s: float = Field(
        default=0.0, description="Measured seconds a busy slot spends between runs while work waits"
    )
    routes: list[RouteOutlook] = Field(default_factory=list, description="Transfer rate per location alias")
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


class TransferMeasurement(InputModel):
    """One finished transfer task as the agent timed it."""

    bytes: float = Field(ge=0, le=1e18)
    seconds: float = Field(ge=0, le=1e7)
    at: float = Field(description="When it ended (POSIX seconds)")
    ok: bool = True


class SitePriors(InputModel):
    """What a site's configuration says to expect before there is history (``placement:`` in site.yml).

    Each figure left out keeps the service's default.
    """

    run_time_s: dict[Name, float] = Field(
        default_factory=dict, max_length=1000, description="Expected run time per app (seconds)"
    )
    default_run_time_s: float | None = Field(default=None, ge=0, le=1e7)
    run_time_spread: float | None = Field(default=None, ge=1, le=100, description="p95 / median of run times")
    queue_wait_s: float | None = Field(default=None, ge=0, le=1e7, description="Expected wait of a new pilot")
    transfer_rate_bps: float | None = Field(default=None, gt=0, le=1e13)
    transfer_overhead_s: float | None = Field(default=None, ge=0, le=1e5)
    dispatch_s: float | None = Field(default=None, ge=0, le=1e5)

    @field_validator("run_time_s")
    @classmethod
    def _times(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(app for app, seconds in value.items() if not 0 <= seconds <= 1e7)
        if bad:
            raise ValueError(f"run_time_s[{bad[0]!r}] must be within [0, 1e7] seconds")
        return value


class SiteFigures(InputModel):
    """What a site's agent measures for placement, sent with its heartbeat status (``status.placement``).

    ``scheduler_failures`` counts its scheduler commands (``sbatch``, ``squeue``…) that failed in a row
    (0 after one succeeds); ``transfers`` holds, per location alias, its newest timed transfer tasks.
    """

    scheduler_failures: int = Field(default=0, ge=0, le=10**9)
    scheduler_error: str = Field(default="", max_length=1000, description="The last failure's message")
    max_total_nodes: int | None = Field(
        default=None,
        ge=0,
        le=10**7,
        description="Nodes its elastic queue may hold, queued and running (0: it submits no pilots)",
    )
    max_pilot_nodes: int | None = Field(default=None, ge=1, le=10**7, description="Its largest pilot")
    transfers: dict[Name, list[TransferMeasurement]] = Field(default_factory=dict, max_length=1000)
    priors: SitePriors = Field(default_factory=SitePriors)

    @field_validator("transfers")
    @classmethod
    def _bounded(cls, value: dict[str, list[TransferMeasurement]]) -> dict[str, list[TransferMeasurement]]:
        return {location: samples[-MAX_TRANSFER_SAMPLES:] for location, samples in value.items()}


MAX_TRANSFER_SAMPLES = 64
"""Newest transfer tasks per location an agent reports (older ones are dropped)."""
