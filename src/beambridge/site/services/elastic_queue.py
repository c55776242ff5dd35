"""Elastic queue: ask for pilots sized to the runnable backlog, within the site's limits; stop asking
when the backlog empties, and withdraw queued pilots nobody needs any more.

With ``warm_pilot`` it also keeps one single-node pilot for quick looks, backlog or not: it acquires
only jobs tagged ``quick_look: "true"`` (a workflow's quick-look step), never exits idle and warms its
apps up, so the first quick look of a dataset waits for neither the batch queue nor a JIT compile. It
is one node on top of ``max_total_nodes`` (which still bounds the pilots sized to the backlog: the full
analyses must never be starved by it). When it ends (its wall time, a kill) the next tick asks for
another."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from beambridge import packing
from beambridge.client import Client
from beambridge.logs import get_logger
from beambridge.packing import Footprint
from beambridge.schemas.batch_jobs import BatchJob, BatchJobState, JobMode
from beambridge.site.config import SiteConfig
from beambridge.site.services.base import Service
from beambridge.states import JobState

log = get_logger(__name__)

BACKLOG_STATES = [JobState.READY, JobState.STAGED_IN, JobState.PREPROCESSED, JobState.RESTART_READY]
"""Jobs that will want a pilot (READY ones are being staged in)."""
SAMPLE = 500
ELASTIC_MARK = "elastic_queue"
WARM_PILOT = "warm_pilot"
"""``status_info.created_by`` of the warm quick-look pilot (the launcher keeps it warm)."""
QUICK_LOOK_TAGS = {"quick_look": "true"}
"""The tags a workflow's quick-look jobs carry, and the warm pilot's filter."""


def is_warm_pilot(pilot: BatchJob) -> bool:
    """Whether ``pilot`` is a warm quick-look pilot: marked so, or taking quick looks only."""
    return pilot.status_info.get("created_by") == WARM_PILOT or pilot.filter_tags == QUICK_LOOK_TAGS


def node_demand(sample: Sequence[Footprint], total: int) -> float:
    """Nodes the backlog needs: the nodes the sampled jobs fill when packed as a launcher packs them
    (:func:`beambridge.packing.nodes_to_hold`), scaled from the sample to the whole backlog."""
    if not sample or total == 0:
        return 0.0
    return packing.nodes_to_hold(sample) * total / len(sample)


class ElasticQueue(Service):
    """Sizes pilot requests to the backlog."""

    name = "elastic-queue"

    def __init__(self, client: Client, config: SiteConfig) -> None:
        super().__init__(config.periods.elastic_queue)
        self.client = client
        self.config = config
        self.settings = config.elastic_queue

    def backlog(self) -> tuple[int, float]:
        """How many jobs wait for a pilot, and how many nodes they need together."""
        query = self.client.jobs.filter(site_id=self.config.site_id, state=BACKLOG_STATES)
        total = query.count()
        if total == 0:
            return 0, 0.0
        sample = sorted(query.limit(SAMPLE), key=lambda job: (-job.priority, job.id))  # acquire's order
        return total, node_demand(sample, total)

    def tick(self) -> None:
        if not self.settings.enabled:
            return
        pilots = list(
            self.client.batch_jobs.filter(
                site_id=self.config.site_id,
                state=[BatchJobState.PENDING_SUBMISSION, BatchJobState.QUEUED, BatchJobState.RUNNING],
            )
        )
        warm = [p for p in pilots if is_warm_pilot(p)]
        if self.settings.warm_pilot and not warm:
            self.request_warm_pilot()
        pilots = [p for p in pilots if p not in warm]  # it takes quick looks only: not for the backlog
        jobs, demand = self.backlog()
        waiting = [p for p in pilots if p.state in (BatchJobState.PENDING_SUBMISSION, BatchJobState.QUEUED)]
        if jobs == 0:
            for pilot in waiting:
                if (
                    pilot.status_info.get("created_by") == ELASTIC_MARK
                    and pilot.state == BatchJobState.QUEUED
                ):
                    log.info(
                        "pilot_withdrawn",
                        batch_job_id=pilot.id,
                        site_id=self.config.site_id,
                        reason="backlog empty",
                    )
                    self.client.batch_jobs.update(pilot.id, state=BatchJobState.PENDING_DELETION.value)
            return
        self.withdraw_stale(waiting)
        used = sum(p.num_nodes for p in pilots)
        uncovered = math.ceil(demand - 1e-9) - used
        if uncovered <= 0 or len(waiting) >= self.settings.max_queued_jobs:
            return
        room = self.settings.max_total_nodes - used
        nodes = min(uncovered, self.settings.max_nodes, room)
        nodes = max(nodes, self.settings.min_nodes)
        if nodes > room or nodes < 1:
            return
        pilot = self.client.batch_jobs.create(
            self.config.site_id,
            nodes,
            self.settings.wall_time_min,
            project=self.settings.project,
            queue=self.settings.queue,
            job_mode=self.settings.job_mode,
            optional_params=self.settings.optional_params,
        )
        self.client.batch_jobs.update(
            pilot.id, status_info={"created_by": ELASTIC_MARK, "backlog_jobs": jobs}
        )
        log.info(
            "pilot_requested",
            batch_job_id=pilot.id,
            site_id=self.config.site_id,
            nodes=nodes,
            backlog_jobs=jobs,
            backlog_nodes=demand,
        )

    def request_warm_pilot(self) -> None:
        """Ask for the warm quick-look pilot (one node, on top of ``max_total_nodes``)."""
        pilot = self.client.batch_jobs.create(
            self.config.site_id,
            1,
            self.settings.wall_time_min,
            project=self.settings.project,
            queue=self.settings.queue,
            job_mode=JobMode.SERIAL,
            filter_tags=QUICK_LOOK_TAGS,
            optional_params=self.settings.optional_params,
        )
        self.client.batch_jobs.update(pilot.id, status_info={"created_by": WARM_PILOT})
        log.info("pilot_requested", batch_job_id=pilot.id, site_id=self.config.site_id, nodes=1, warm=True)

    def withdraw_stale(self, waiting: list[BatchJob]) -> None:
        """Remove pilots queued longer than ``max_queue_wait_min`` (a new request follows if still needed)."""
        limit = self.settings.max_queue_wait_min
        if limit is None:
            return
        now = datetime.now(UTC)
        for pilot in waiting:
            if pilot.state == BatchJobState.QUEUED and (now - pilot.created_at).total_seconds() > limit * 60:
                log.info(
                    "pilot_withdrawn",
                    batch_job_id=pilot.id,
                    site_id=self.config.site_id,
                    reason="queued too long",
                    max_queue_wait_min=limit,
                )
                self.client.batch_jobs.update(pilot.id, state=BatchJobState.PENDING_DELETION.value)
