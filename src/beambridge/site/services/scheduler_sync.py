"""Scheduler sync: submit requested pilots, follow them in the scheduler, cancel the ones to delete.

Restart safety: the scheduler id of every submission is written to the pilot's folder the moment the
scheduler answers (``scheduler_id``), before the service is told; a ``submitting`` marker is written
before asking. After a crash, a pilot with a recorded id is re-attached, and one with only the marker is
looked up by its job name, so nothing is submitted twice and nothing is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beambridge.client import Client, Conflict
from beambridge.logs import get_logger
from beambridge.platform.schedulers import (
    PilotRequest,
    PilotState,
    PilotStatus,
    Scheduler,
    SchedulerUnavailable,
    SubmitRejected,
)
from beambridge.schemas.batch_jobs import BatchJob, BatchJobState
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.metrics import measured, pilots_seen
from beambridge.site.pilot_script import render_pilot_script
from beambridge.site.services.base import Service

log = get_logger(__name__)

ACTIVE = [
    BatchJobState.PENDING_SUBMISSION,
    BatchJobState.QUEUED,
    BatchJobState.RUNNING,
    BatchJobState.PENDING_DELETION,
]
_STATE = {
    PilotState.QUEUED: BatchJobState.QUEUED,
    PilotState.RUNNING: BatchJobState.RUNNING,
    PilotState.FINISHED: BatchJobState.FINISHED,
}


def pilot_name(config: SiteConfig, batch_job_id: int) -> str:
    """The job name a pilot has in the scheduler (how a crashed submission is found again)."""
    return f"bb{config.site_id}-{batch_job_id}"


class SchedulerSync(Service):
    """Keeps the service's batch-job records and the scheduler's pilots in step."""

    name = "scheduler-sync"

    def __init__(self, client: Client, site: SiteDir, config: SiteConfig, scheduler: Scheduler) -> None:
        super().__init__(config.periods.scheduler_sync)
        self.client = client
        self.site = site
        self.config = config
        self.scheduler = measured(scheduler)  # command latency and failures go to the agent's /metrics

    def tick(self) -> None:
        pilots = list(self.client.batch_jobs.filter(site_id=self.config.site_id, state=ACTIVE))
        pilots_seen((p.state.value for p in pilots), (state.value for state in ACTIVE))
        for pilot in pilots:
            if pilot.state == BatchJobState.PENDING_SUBMISSION:
                self.submit(pilot)
            elif pilot.state == BatchJobState.PENDING_DELETION:
                self.delete(pilot)
        tracked = [p for p in pilots if p.scheduler_id and p.state != BatchJobState.PENDING_SUBMISSION]
        if not tracked:
            return
        try:
            statuses = self.scheduler.statuses([p.scheduler_id for p in tracked if p.scheduler_id])
        except SchedulerUnavailable as exc:
            log.warning(
                "scheduler_unavailable", site_id=self.config.site_id, effect="pilots unchanged", error=exc
            )
            return
        for pilot in tracked:
            status = statuses.get(pilot.scheduler_id or "")
            if status is not None:
                self.record(pilot, status)

    # -- submission ------------------------------------------------------------------------------------

    def submit(self, pilot: BatchJob) -> None:
        folder = self.site.pilot_dir(pilot.id)
        folder.mkdir(parents=True, exist_ok=True)
        recorded = folder / "scheduler_id"
        marker = folder / "submitting"
        name = pilot_name(self.config, pilot.id)
        if recorded.exists():
            scheduler_id = recorded.read_text().strip()
            log.info(
                "pilot_reattached",
                batch_job_id=pilot.id,
                scheduler_id=scheduler_id,
                reason="submitted before a restart",
            )
            self._queued(pilot, scheduler_id)
            return
        if marker.exists():
            found = self.scheduler.find_by_name(name)
            if found:
                log.info(
                    "pilot_reattached",
                    batch_job_id=pilot.id,
                    scheduler_id=found[0],
                    reason="found after a crash mid-submit",
                )
                self._record_id(recorded, found[0])
                marker.unlink(missing_ok=True)
                self._queued(pilot, found[0])
                return
        script = folder / "pilot.sh"
        script.write_text(render_pilot_script(self.site, self.config, pilot))
        script.chmod(0o755)
        request = PilotRequest(
            script=script,
            job_name=name,
            num_nodes=pilot.num_nodes,
            wall_time_min=pilot.wall_time_min,
            workdir=folder,
            project=pilot.project,
            queue=pilot.queue,
            optional_params=pilot.optional_params,
        )
        marker.write_text(datetime.now(UTC).isoformat())
        try:
            scheduler_id = self.scheduler.submit(request)
        except SubmitRejected as exc:
            marker.unlink(missing_ok=True)
            log.error("pilot_submit_refused", batch_job_id=pilot.id, error=exc)
            self.client.batch_jobs.update(
                pilot.id, state=BatchJobState.SUBMIT_FAILED.value, status_info={"error": str(exc)}
            )
            return
        except SchedulerUnavailable as exc:  # the marker stays: next time, look the name up first
            log.warning(
                "pilot_submit_deferred", batch_job_id=pilot.id, reason="scheduler unavailable", error=exc
            )
            return
        self._record_id(recorded, scheduler_id)
        marker.unlink(missing_ok=True)
        log.info(
            "pilot_submitted",
            batch_job_id=pilot.id,
            scheduler_id=scheduler_id,
            nodes=pilot.num_nodes,
            wall_time_min=pilot.wall_time_min,
        )
        self._queued(pilot, scheduler_id)

    @staticmethod
    def _record_id(path: Any, scheduler_id: str) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(scheduler_id + "\n")
        tmp.replace(path)

    def _queued(self, pilot: BatchJob, scheduler_id: str) -> None:
        try:
            self.client.batch_jobs.update(
                pilot.id, state=BatchJobState.QUEUED.value, scheduler_id=scheduler_id
            )
        except Conflict:  # its deletion was asked for meanwhile: keep the id, so the next tick cancels it
            log.info(
                "pilot_submitted",
                batch_job_id=pilot.id,
                scheduler_id=scheduler_id,
                note="its deletion was asked for meanwhile",
            )
            self.client.batch_jobs.update(pilot.id, scheduler_id=scheduler_id)

    # -- tracking and deletion -------------------------------------------------------------------------

    def delete(self, pilot: BatchJob) -> None:
        if not pilot.scheduler_id:
            self.client.batch_jobs.update(
                pilot.id,
                state=BatchJobState.FINISHED.value,
                status_info={"reason": "deleted before submission"},
            )
            return
        log.info("pilot_cancelling", batch_job_id=pilot.id, scheduler_id=pilot.scheduler_id)
        self.scheduler.cancel(pilot.scheduler_id)

    def record(self, pilot: BatchJob, status: PilotStatus) -> None:
        state = _STATE[status.state]
        if pilot.state == BatchJobState.PENDING_DELETION and state != BatchJobState.FINISHED:
            return  # cancelled, waiting for the scheduler to confirm
        info = dict(pilot.status_info)
        info.update({"scheduler_state": status.reason, "exit_code": status.exit_code})
        if status.nodes:
            info["nodes"] = list(status.nodes)
        fields: dict[str, Any] = {}
        if state != pilot.state:
            fields["state"] = state.value
        if status.start_time and pilot.start_time is None:
            fields["start_time"] = status.start_time
        if state == BatchJobState.RUNNING and pilot.start_time is None and "start_time" not in fields:
            fields["start_time"] = datetime.now(UTC)
        if state == BatchJobState.FINISHED and pilot.end_time is None:
            fields["end_time"] = status.end_time or datetime.now(UTC)
        if info != pilot.status_info:
            fields["status_info"] = info
        if fields:
            log.info(
                "pilot_updated",
                batch_job_id=pilot.id,
                scheduler_id=pilot.scheduler_id,
                scheduler_state=status.reason,
                **{k: v for k, v in fields.items() if k != "status_info"},
            )
            try:
                self.client.batch_jobs.update(pilot.id, **fields)
            except Conflict as exc:  # changed meanwhile (its deletion asked for): the next tick sees it
                log.info("pilot_update_refused", batch_job_id=pilot.id, detail=exc.detail)
