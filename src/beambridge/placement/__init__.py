"""Placement across facilities: a snapshot of sites in, decisions out — no database, no I/O, no clock.

The service and the simulator (:mod:`beambridge.placement.simulator`) run exactly this code::

    from beambridge.placement import JobRequest, SiteSnapshot, Snapshot, place_batch

    result = place_batch(jobs, Snapshot(now=t, sites=sites), "fastest_finish")
    for decision in result.decisions:          # placed / deferred / refused, with every site's estimate
        record_event(decision.job, decision.to_dict())

Modules: :mod:`.snapshot` (the data), :mod:`.estimators` (figures from recorded samples),
:mod:`.health` (up / degraded / down / draining), :mod:`.eligibility` (who could ever run a job),
:mod:`.finish_time` (predicted finish per site), :mod:`.policies`, :mod:`.placer` (batches,
re-placement), :mod:`.hedging`, :mod:`.decision` (the explanation the service records).
"""

from beambridge.placement.decision import Decision, Outcome, SiteEstimate, SiteStatus, WaitBasis
from beambridge.placement.eligibility import eligibility, ineligibility
from beambridge.placement.estimators import (
    QueueWaitEstimate,
    QueueWaitSample,
    RunSample,
    RunTimeEstimate,
    TransferEstimate,
    TransferSample,
    completions_per_s,
    estimate_queue_wait,
    estimate_run_time,
    estimate_transfer,
    failure_rate,
)
from beambridge.placement.health import (
    HealthSignals,
    HealthState,
    HealthThresholds,
    SiteHealth,
    site_health,
)
from beambridge.placement.hedging import Hedge, hedges
from beambridge.placement.placer import (
    BatchResult,
    EligibilityCache,
    PlacedJob,
    jobs_to_replace,
    place,
    place_batch,
    replace,
)
from beambridge.placement.policies import DEFAULT_POLICY, POLICIES
from beambridge.placement.snapshot import (
    AppSpec,
    BacklogGroup,
    JobRequest,
    PlacementOptions,
    QueuedPilot,
    SitePriors,
    SiteSnapshot,
    Snapshot,
)

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "AppSpec",
    "BacklogGroup",
    "BatchResult",
    "Decision",
    "EligibilityCache",
    "HealthSignals",
    "HealthState",
    "HealthThresholds",
    "Hedge",
    "JobRequest",
    "Outcome",
    "PlacedJob",
    "PlacementOptions",
    "QueueWaitEstimate",
    "QueueWaitSample",
    "QueuedPilot",
    "RunSample",
    "RunTimeEstimate",
    "SiteEstimate",
    "SiteHealth",
    "SitePriors",
    "SiteSnapshot",
    "SiteStatus",
    "Snapshot",
    "TransferEstimate",
    "TransferSample",
    "WaitBasis",
    "completions_per_s",
    "eligibility",
    "estimate_queue_wait",
    "estimate_run_time",
    "estimate_transfer",
    "failure_rate",
    "hedges",
    "ineligibility",
    "jobs_to_replace",
    "place",
    "place_batch",
    "replace",
    "site_health",
]
