"""Scenario files: modelled sites, an arrival trace, outages and drains (YAML, validated with pydantic).

A wrong field is named with its place in the file (``sites.2.apps.XpcsEigen.median_s: Input should be
greater than 0``). See the two scenarios shipped in this folder for complete examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from beambridge.placement.health import HealthThresholds
from beambridge.placement.snapshot import PlacementOptions

SCENARIOS = Path(__file__).with_name("scenarios")
"""Where the shipped scenarios live."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Model):
    """A log-normal quantity: its median and the sigma of its logarithm (0: always the median)."""

    median_s: float = Field(gt=0)
    sigma: float = Field(default=0.0, ge=0, le=3)


class AppModel(Distribution):
    """How long an app runs at a site; ``size_exponent`` scales it by (input / reference_mb)."""

    reference_mb: float = Field(default=1000.0, gt=0)
    size_exponent: float = Field(default=1.0, ge=0, le=3)
    prior_s: float | None = Field(default=None, gt=0, description="What the site's config believes")


class RouteModel(_Model):
    """Transfers between a location and a site: per-task rate (log-normal from mean and sd) and overhead."""

    rate_mbps: float = Field(gt=0, description="Mean rate of one task, MB/s")
    rate_sd_mbps: float = Field(default=0.0, ge=0)
    overhead_in_s: float = Field(default=5.0, ge=0)
    overhead_out_s: float = Field(default=5.0, ge=0)
    max_tasks: int = Field(default=5, ge=1, description="Concurrent tasks per direction (Balsam: 5)")
    files_per_task: int = Field(default=16, ge=1, description="Jobs batched into one task")


class SiteModel(_Model):
    """A modelled facility: pilots of ``slots_per_pilot`` job slots, an elastic queue, apps and routes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    slots_per_pilot: int = Field(ge=1)
    max_pilots: int = Field(default=4, ge=1, description="Queued + running")
    min_pilots: int = Field(default=0, ge=0, description="Kept queued or running even when idle")
    start_pilots: int = Field(default=0, ge=0, description="Running at time 0")
    pilot_wall_time_s: float = Field(default=6 * 3600.0, gt=0)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    queue_wait: Distribution = Distribution(median_s=600.0, sigma=0.8)
    dispatch_s: float = Field(default=1.0, ge=0)
    max_backlog: int | None = Field(default=None, ge=1)
    apps: dict[str, AppModel] = Field(min_length=1)
    routes: dict[str, RouteModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _pilots(self) -> SiteModel:
        if self.min_pilots > self.max_pilots or self.start_pilots > self.max_pilots:
            raise ValueError("min_pilots and start_pilots must not exceed max_pilots")
        return self


class Arrivals(_Model):
    """A stream of jobs: ``count`` every ``every_s`` (regular), or ``rate_per_s`` (Poisson), from
    ``start_s`` to ``until_s``; sizes log-normal around ``input_mb``; ``hedge_share`` of them hedged."""

    app: str
    source: str
    sites: list[str] = Field(default_factory=list, description="Eligible sites (empty: all)")
    start_s: float = Field(default=0.0, ge=0)
    until_s: float = Field(gt=0)
    every_s: float | None = Field(default=None, gt=0)
    count: int = Field(default=1, ge=1)
    rate_per_s: float | None = Field(default=None, gt=0)
    input_mb: float = Field(default=1000.0, ge=0)
    input_sigma: float = Field(default=0.0, ge=0, le=3)
    output_mb: float = Field(default=50.0, ge=0)
    priority: int = 0
    hedge_share: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _one_process(self) -> Arrivals:
        if (self.every_s is None) == (self.rate_per_s is None):
            raise ValueError("give exactly one of every_s (regular batches) or rate_per_s (Poisson)")
        if self.until_s <= self.start_s:
            raise ValueError("until_s must be after start_s")
        return self


class Outage(_Model):
    """A site failing from ``start_s`` to ``end_s``: ``site`` (agent and pilots gone), ``scheduler``
    (its commands fail: no new pilots) or ``transfers`` (every transfer task fails)."""

    site: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    kind: Literal["site", "scheduler", "transfers"] = "site"


class Drain(_Model):
    """The owner drains a site from ``start_s`` to ``end_s`` (planned maintenance)."""

    site: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


class HealthModel(_Model):
    """Health thresholds and the agent's periods (defaults: the service's)."""

    heartbeat_s: float = Field(default=30.0, gt=0)
    heartbeat_degraded_s: float = Field(default=90.0, gt=0)
    heartbeat_down_s: float = Field(default=180.0, gt=0)
    scheduler_failures_degraded: int = Field(default=3, ge=1)
    scheduler_failures_down: int = Field(default=10, ge=1)
    transfer_failure_degraded: float = Field(default=0.2, gt=0, le=1)
    transfer_failure_down: float = Field(default=0.8, gt=0, le=1)

    def thresholds(self) -> HealthThresholds:
        """As the health function takes them."""
        return HealthThresholds(
            self.heartbeat_degraded_s,
            self.heartbeat_down_s,
            self.scheduler_failures_degraded,
            self.scheduler_failures_down,
            self.transfer_failure_degraded,
            self.transfer_failure_down,
        )


class Scenario(_Model):
    """Everything one simulation needs."""

    name: str
    description: str = ""
    seed: int = 1
    horizon_s: float = Field(gt=0, description="Simulated time after which unfinished jobs are stranded")
    placement_period_s: float = Field(default=1.0, gt=0, description="The service's placement cycle")
    health_period_s: float = Field(default=30.0, gt=0)
    estimate_period_s: float = Field(default=60.0, gt=0)
    elastic_period_s: float = Field(default=60.0, gt=0)
    session_timeout_s: float = Field(default=300.0, gt=0)
    transfer_retry_s: float = Field(default=30.0, gt=0)
    max_hedges_per_cycle: int = Field(default=50, ge=0)
    explore_share: float = Field(default=0.05, ge=0, le=1)
    degraded_penalty: float = Field(default=1.5, ge=1)
    marginal_weight: float = Field(
        default=0.0, ge=0, description="fastest_finish's charge for the delay a job imposes on later jobs"
    )
    health: HealthModel = HealthModel()
    sites: list[SiteModel] = Field(min_length=1)
    arrivals: list[Arrivals] = Field(min_length=1)
    outages: list[Outage] = Field(default_factory=list)
    drains: list[Drain] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("two sites have the same name")
        known = set(names)
        for i, stream in enumerate(self.arrivals):
            missing = [s for s in stream.sites if s not in known]
            if missing:
                raise ValueError(f"arrivals.{i}: unknown sites {missing}")
            targets = [s for s in self.sites if not stream.sites or s.name in stream.sites]
            if not any(stream.app in s.apps and stream.source in s.routes for s in targets):
                raise ValueError(
                    f"arrivals.{i}: no site runs {stream.app!r} with a route from {stream.source!r}"
                )
        timed = [("outages", i, e.site, e.start_s, e.end_s) for i, e in enumerate(self.outages)]
        timed += [("drains", i, e.site, e.start_s, e.end_s) for i, e in enumerate(self.drains)]
        for kind, i, site, start_s, end_s in timed:
            if site not in known:
                raise ValueError(f"{kind}.{i}: unknown site {site!r}")
            if end_s <= start_s:
                raise ValueError(f"{kind}.{i}: end_s must be after start_s")
        self.health.thresholds()  # their order
        return self

    def options(self) -> PlacementOptions:
        """The placement options the scenario sets."""
        return PlacementOptions(
            explore_share=self.explore_share,
            degraded_penalty=self.degraded_penalty,
            marginal_weight=self.marginal_weight,
        )


class ScenarioError(ValueError):
    """A scenario file that cannot be used, with the reason in words."""


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a bare name (``balsam-paper``) means a shipped scenario."""
    file = Path(path)
    if not file.exists() and (SCENARIOS / f"{path}.yml").exists():
        file = SCENARIOS / f"{path}.yml"
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {str(path)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{file}: a scenario is a mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'scenario'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ScenarioError(f"{file}: {problems}") from None
    except ValueError as exc:
        raise ScenarioError(f"{file}: {exc}") from None


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    return sorted(p.stem for p in SCENARIOS.glob("*.yml"))
