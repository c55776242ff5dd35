"""A pilot whose deletion is asked for while the agent is submitting or tracking it: the service keeps
the deletion (a late report of the scheduler cannot revive the pilot) and the agent still cancels the
allocation it made, instead of losing track of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from beambridge.platform.schedulers.base import PilotRequest, PilotState, PilotStatus, Scheduler
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.site.services.scheduler_sync import SchedulerSync
from tests.site.harness import System


class RacingScheduler(Scheduler):
    """A scheduler whose every call first runs ``meanwhile`` (what a user does at that moment)."""

    name = "racing"

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Callable[[], None] = lambda: None
        self.live: dict[str, PilotState] = {}
        self.cancelled: list[str] = []

    def _race(self) -> None:
        action, self.meanwhile = self.meanwhile, lambda: None
        action()

    def submit(self, request: PilotRequest) -> str:
        self._race()
        self.live["77"] = PilotState.QUEUED
        return "77"

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        self._race()
        return {i: PilotStatus(i, self.live[i]) for i in scheduler_ids if i in self.live}

    def cancel(self, scheduler_id: str) -> None:
        self.cancelled.append(scheduler_id)
        self.live[scheduler_id] = PilotState.FINISHED

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        return None


def test_deletion_asked_during_submission_cancels_the_new_allocation(system: System) -> None:
    site, config = system.make_site("racy", elastic_queue={"enabled": False})
    scheduler = RacingScheduler()
    sync = SchedulerSync(system.client, site, config, scheduler)
    pilot = system.client.batch_jobs.create(config.site_id, 1, 5)
    delete = lambda: system.client.batch_jobs.update(pilot.id, state="pending_deletion")  # noqa: E731

    scheduler.meanwhile = delete
    assert sync.run_once()
    after = system.client.batch_jobs.get(pilot.id)
    assert after.state == BatchJobState.PENDING_DELETION and after.scheduler_id == "77"
    assert sync.run_once() and scheduler.cancelled == ["77"]
    assert sync.run_once()
    assert system.client.batch_jobs.get(pilot.id).state == BatchJobState.FINISHED


def test_deletion_asked_during_tracking_is_not_undone(system: System) -> None:
    site, config = system.make_site("racy2", elastic_queue={"enabled": False})
    scheduler = RacingScheduler()
    sync = SchedulerSync(system.client, site, config, scheduler)
    pilot = system.client.batch_jobs.create(config.site_id, 1, 5)
    assert sync.run_once()
    assert system.client.batch_jobs.get(pilot.id).state == BatchJobState.QUEUED

    scheduler.live["77"] = PilotState.RUNNING  # the pilot starts while a user asks for its deletion
    scheduler.meanwhile = lambda: system.client.batch_jobs.update(pilot.id, state="pending_deletion")
    assert sync.run_once()
    assert system.client.batch_jobs.get(pilot.id).state == BatchJobState.PENDING_DELETION
    assert sync.run_once() and scheduler.cancelled == ["77"]
    assert sync.run_once()
    assert system.client.batch_jobs.get(pilot.id).state == BatchJobState.FINISHED
