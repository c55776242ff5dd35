"""Processing: run the apps' hooks on jobs waiting for them (STAGED_IN, RUN_DONE, RUN_ERROR, RUN_TIMEOUT).

Only apps that override a hook announce it, so the service hands the site only those jobs; the others
move on at the service without a round trip.
"""

from __future__ import annotations

import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from beambridge.apps.base import ApplicationDefinition
from beambridge.client import Client
from beambridge.logs import get_logger
from beambridge.schemas.apps import AppHook
from beambridge.schemas.jobs import Job
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.services.apps import SiteApps
from beambridge.site.services.base import Service, update_jobs
from beambridge.states import JobState

log = get_logger(__name__)

HOOK_FOR_STATE = {
    JobState.STAGED_IN: AppHook.PREPROCESS,
    JobState.RUN_DONE: AppHook.POSTPROCESS,
    JobState.RUN_ERROR: AppHook.HANDLE_ERROR,
    JobState.RUN_TIMEOUT: AppHook.HANDLE_TIMEOUT,
}
BATCH = 500


def run_hook(app: type[ApplicationDefinition], job: Job, site: SiteDir) -> dict[str, Any]:
    """Run the hook ``job``'s state calls for; the update to send (a hook that raises fails the job)."""
    hook = HOOK_FOR_STATE[job.state]
    instance = app(job, site.workdir(job.workdir))
    try:
        state = JobState(getattr(instance, hook.value)())
        if hook == AppHook.POSTPROCESS and state == JobState.POSTPROCESSED:
            instance.cleanup()
    except Exception as exc:
        log.warning("hook_raised", job_id=job.id, hook=hook.value, app=app.name, error=exc)
        return {
            "id": job.id,
            "state": JobState.FAILED.value,
            "state_data": {"reason": f"{hook.value} raised {type(exc).__name__}: {exc}"},
            "error": "".join(traceback.format_exception(exc))[-4000:],
        }
    return {"id": job.id, "state": state.value, "state_data": instance.state_data}


class Processing(Service):
    """Runs hooks in a small thread pool and sends the outcomes in one bulk update per tick."""

    name = "processing"

    def __init__(self, client: Client, site: SiteDir, config: SiteConfig, apps: SiteApps) -> None:
        super().__init__(config.periods.processing)
        self.client = client
        self.site = site
        self.config = config
        self.apps = apps
        self.pool = ThreadPoolExecutor(config.processing_threads, thread_name_prefix="hook")

    def tick(self) -> None:
        current = self.apps.current  # the apps as registered now (the folder may change meanwhile)
        by_id = {
            current.ids[name]: app
            for name, app in current.catalog.apps.items()
            if name in current.ids and app.overridden_hooks()
        }
        if not by_id:
            return
        states = sorted(
            {
                state
                for state, hook in HOOK_FOR_STATE.items()
                for app in by_id.values()
                if hook in app.overridden_hooks()
            }
        )
        jobs = [
            job
            for job in self.client.jobs.filter(
                site_id=self.config.site_id, app_id=list(by_id), state=states
            ).limit(BATCH)
            if HOOK_FOR_STATE[job.state] in by_id[job.app_id].overridden_hooks()
        ]
        if not jobs:
            return
        updates = list(self.pool.map(lambda job: run_hook(by_id[job.app_id], job, self.site), jobs))
        update_jobs(self.client, "hook outcome", updates)

    def close(self, wait: bool = True) -> None:
        """Stop the hook threads; ``wait=False`` leaves running hooks to the process's end (their jobs
        keep their state, and the hook runs again when the agent is back, as after a crash)."""
        self.pool.shutdown(wait=wait, cancel_futures=not wait)
