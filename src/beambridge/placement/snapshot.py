"""The snapshot placement decides from: sites as the service sees them at one instant, and jobs to place.

Everything here is plain frozen data. The service builds it from database rows (feeding the recorded
samples through :mod:`~beambridge.placement.estimators`), the simulator builds it from its modelled
sites; neither the policies nor the snapshot read a clock, a database or a file. Times are seconds on
one clock (the service: POSIX time; the simulator: simulated time), given as :attr:`Snapshot.now`.

::

    Snapshot(now, sites=[SiteSnapshot, ...], seed, round_robin_cursor)
      SiteSnapshot: apps {name: AppSpec}, locations, health,
                    capacity (running_slots, free_slots, queued_pilots, new_pilot_slots),
                    backlog [BacklogGroup(app, priority, jobs)], running {app: jobs}, max_backlog,
                    figures: run_times {app}, queue_waits {queue}, transfers {location},
                             pending_transfer_bytes {location}, priors
    JobRequest(key, app, sites, parameters, transfers, input_bytes, output_bytes, priority, hedge, policy)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from beambridge.placement.estimators import (
    QueueWaitEstimate,
    RunTimeEstimate,
    TransferEstimate,
    prior_queue_wait,
    prior_run_time,
    prior_transfer,
)
from beambridge.placement.health import UP, SiteHealth
from beambridge.schemas.apps import AppParameter, TransferSlot

JobKey = Hashable
"""What identifies a job to its caller (the service: the job id)."""


@dataclass(frozen=True, slots=True)
class AppSpec:
    """An app as one site registered it: its name, parameters and transfer slots."""

    name: str
    parameters: Mapping[str, AppParameter] = field(default_factory=dict)
    transfer_slots: Mapping[str, TransferSlot] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueuedPilot:
    """A pilot waiting in the site's batch queue."""

    slots: int
    age_s: float
    queue: str = "default"


@dataclass(frozen=True, slots=True)
class BacklogGroup:
    """Jobs placed at a site and not yet running (staging in or runnable), of one app and priority."""

    app: str
    priority: int
    jobs: int


@dataclass(frozen=True, slots=True)
class SitePriors:
    """What the site's configuration says before there is any history."""

    run_time_s: Mapping[str, float] = field(default_factory=dict)
    """Expected run time per app."""
    default_run_time_s: float = 600.0
    run_time_spread: float = 1.5
    """p95 / median of run times."""
    queue_wait_s: float = 600.0
    """Expected queue wait of a new pilot."""
    transfer_rate_bps: float = 100e6
    transfer_overhead_s: float = 5.0
    dispatch_s: float = 1.0
    """From runnable to running when a slot is free (the launcher's acquire round trip)."""

    def __post_init__(self) -> None:
        if not self.transfer_rate_bps > 0:
            raise ValueError("transfer_rate_bps must be > 0")
        if min(self.default_run_time_s, self.queue_wait_s, self.transfer_overhead_s, self.dispatch_s) < 0:
            raise ValueError("prior times must be >= 0")
        if self.run_time_spread < 1:
            raise ValueError("run_time_spread (p95 / median) must be >= 1")

    def run_time(self, app: str) -> RunTimeEstimate:
        """The prior run-time estimate of ``app``."""
        return prior_run_time(self.run_time_s.get(app, self.default_run_time_s), self.run_time_spread)

    def queue_wait(self) -> QueueWaitEstimate:
        """The prior queue-wait estimate."""
        return prior_queue_wait(self.queue_wait_s)

    def transfer(self) -> TransferEstimate:
        """The prior transfer estimate."""
        return prior_transfer(self.transfer_rate_bps, self.transfer_overhead_s)


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """One site at the snapshot's instant.

    Capacity is counted in job *slots* (one slot runs one job of the typical footprint): the slots of
    running pilots, how many of them are idle, the pilots still queued, and how many slots a new pilot
    would bring (0 when the site will not submit one: at its limits, or no elastic queue).
    """

    name: str
    apps: Mapping[str, AppSpec]
    locations: frozenset[str] = frozenset()
    health: SiteHealth = UP
    running_slots: int = 0
    free_slots: int = 0
    queued_pilots: tuple[QueuedPilot, ...] = ()
    new_pilot_slots: int = 0
    new_pilot_queue: str = "default"
    backlog: tuple[BacklogGroup, ...] = ()
    running: Mapping[str, int] = field(default_factory=dict)
    """Jobs running now, per app."""
    max_backlog: int | None = None
    """Balsam's ``max_site_backlog``: no new work while this many jobs wait here."""
    run_times: Mapping[str, RunTimeEstimate] = field(default_factory=dict)
    queue_waits: Mapping[str, QueueWaitEstimate] = field(default_factory=dict)
    transfers: Mapping[str, TransferEstimate] = field(default_factory=dict)
    """Per location alias, both directions."""
    pending_transfer_bytes: Mapping[str, float] = field(default_factory=dict)
    """Bytes queued or moving between each location and this site (the route's queue)."""
    priors: SitePriors = field(default_factory=SitePriors)
    turnaround_s: float = 0.0
    """Measured seconds a busy slot spends between one run and the next while work waits (the launcher's
    reports, acquire, start-up): each job ahead holds a slot for its run time plus this."""
    dispatch_s: float | None = None
    """Measured seconds from runnable to running when a slot is free (the service: the site's recent
    turnaround between runs); ``None``: the prior's ``dispatch_s``."""
    silent_s: float = 0.0
    """For a site whose agent has gone quiet past the degraded threshold (it may be dead): the seconds
    until it would be called down and its unclaimed jobs moved — what a job placed there would lose if it
    is dead. ``fastest_finish`` adds it to the wait, so a quiet site gets work only when it is still
    quicker counting that loss."""

    def __post_init__(self) -> None:
        if self.running_slots < 0 or not 0 <= self.free_slots <= self.running_slots:
            raise ValueError(f"site {self.name!r}: need 0 <= free_slots <= running_slots")
        if self.new_pilot_slots < 0:
            raise ValueError(f"site {self.name!r}: new_pilot_slots must be >= 0")
        if self.max_backlog is not None and self.max_backlog < 0:
            raise ValueError(f"site {self.name!r}: max_backlog must be >= 0")
        if not self.turnaround_s >= 0:
            raise ValueError(f"site {self.name!r}: turnaround_s must be >= 0")
        if not self.silent_s >= 0:
            raise ValueError(f"site {self.name!r}: silent_s must be >= 0")
        if self.dispatch_s is not None and not self.dispatch_s >= 0:
            raise ValueError(f"site {self.name!r}: dispatch_s must be >= 0")

    @property
    def backlog_jobs(self) -> int:
        """All jobs placed here and not yet running."""
        return sum(group.jobs for group in self.backlog)

    def run_time(self, app: str) -> RunTimeEstimate:
        """The run-time estimate of ``app`` here: from history, else the prior."""
        estimate = self.run_times.get(app)
        return estimate if estimate is not None else self.priors.run_time(app)

    def has_history(self, app: str) -> bool:
        """Whether ``app`` has run here recently enough to have a measured run time."""
        estimate = self.run_times.get(app)
        return estimate is not None and estimate.source == "history"

    def queue_wait(self, queue: str) -> QueueWaitEstimate:
        """The queue-wait estimate of ``queue`` here: from history, else the prior."""
        estimate = self.queue_waits.get(queue)
        return estimate if estimate is not None else self.priors.queue_wait()

    def transfer(self, location: str) -> TransferEstimate:
        """The transfer estimate of the route between ``location`` and here."""
        estimate = self.transfers.get(location)
        return estimate if estimate is not None else self.priors.transfer()


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job to place.

    ``sites`` are the eligible site names (empty: every site in the snapshot). ``transfers`` maps the
    job's transfer slots to ``'location:/path'`` (or just the location alias); ``input_bytes`` and
    ``output_bytes`` give the bytes to move per location alias where known. ``policy`` overrides the
    batch's policy for this job (the service resolves job → site group → server default).
    """

    key: JobKey
    app: str
    sites: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    transfers: Mapping[str, str] = field(default_factory=dict)
    input_bytes: Mapping[str, float] = field(default_factory=dict)
    output_bytes: Mapping[str, float] = field(default_factory=dict)
    priority: int = 0
    hedge: bool = False
    policy: str | None = None

    def __post_init__(self) -> None:
        for name, sizes in (("input_bytes", self.input_bytes), ("output_bytes", self.output_bytes)):
            for location, nbytes in sizes.items():
                if not nbytes >= 0:
                    raise ValueError(f"job {self.key!r}: {name}[{location!r}] must be >= 0, got {nbytes!r}")

    @property
    def total_input_bytes(self) -> float | None:
        """All input bytes, or ``None`` when the size is unknown."""
        return sum(self.input_bytes.values()) if self.input_bytes else None


@dataclass(frozen=True, slots=True)
class PlacementOptions:
    """Knobs of the placement policies (the service's defaults; a scenario may change them)."""

    explore_share: float = 0.05
    """Share of jobs ``fastest_finish`` sends to an eligible site with no history for their app."""
    degraded_penalty: float = 1.5
    """``fastest_finish`` multiplies a degraded site's predicted finish by this."""
    marginal_weight: float = 0.0
    """How much ``fastest_finish`` charges a job for the delay it imposes on later jobs at a site
    (:func:`~beambridge.placement.finish_time.marginal_delay`); 0 (the default): each job's own finish
    alone. 1 helped fixed-capacity sites at moderate load (the Balsam-paper trace with an outage: +12 %
    jobs/min over ``shortest_backlog`` instead of +4 %) but cost the internet-scale scenario its
    throughput gain (−4 % instead of +37 %), so it is off unless a scenario or caller turns it on."""

    def __post_init__(self) -> None:
        if not 0 <= self.explore_share <= 1:
            raise ValueError("explore_share must be within [0, 1]")
        if self.degraded_penalty < 1:
            raise ValueError("degraded_penalty must be >= 1")
        if not self.marginal_weight >= 0:
            raise ValueError("marginal_weight must be >= 0")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All sites at one instant, plus what makes decisions reproducible.

    ``seed`` drives the deterministic choices (exploration, tie-breaks): the same snapshot and jobs
    always give the same decisions. ``round_robin_cursor`` is how many round-robin placements came
    before (the service keeps it; :class:`~beambridge.placement.placer.BatchResult` returns the next).
    """

    now: float
    sites: tuple[SiteSnapshot, ...]
    seed: int = 0
    round_robin_cursor: int = 0
    options: PlacementOptions = field(default_factory=PlacementOptions)
    by_name: Mapping[str, SiteSnapshot] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {site.name: site for site in self.sites}
        if len(names) != len(self.sites):
            raise ValueError("two sites in the snapshot have the same name")
        object.__setattr__(self, "by_name", MappingProxyType(names))
