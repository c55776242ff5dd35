"""Processing: run the apps' hooks on jobs waiting for them (STAGED_IN, RUN_DONE, RUN_ERROR, RUN_TIMEOUT).

Only apps that override a hook announce it, so the service hands the site only those jobs; the others
move on at the service without a round trip.

Hooks run on ``processing_threads`` worker threads, each hook under a time limit (``hook_timeout_s``). A
tick queues the jobs waiting, waits a moment (:attr:`Processing.settle_s`) and sends the outcomes of the
hooks that have finished in one bulk update; hooks still running report with a later tick. A hook that
hangs (a file system that never answers, a loop) so holds back only its own job: once it has run for
``hook_timeout_s`` its job fails with that reason. Python cannot stop a thread: the hung thread is left
to end on its own (a daemon, it never holds up the agent's exit; its outcome is ignored) and a new
worker takes its place, so hung hooks never use up the threads the other jobs need.
"""

from __future__ import annotations

import faulthandler
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
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


@dataclass
class _Hook:
    """One job's hook: queued, then running on a worker (``started``), then done (``outcome``)."""

    job: Job
    app: type[ApplicationDefinition]
    started: float | None = None
    outcome: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False


class Processing(Service):
    """Runs hooks on worker threads, each under ``hook_timeout_s``, and sends the outcomes of each tick
    in one bulk update."""

    name = "processing"
    settle_s = 2.0
    """How long a tick waits for the hooks in flight before it sends the outcomes of those finished."""

    def __init__(self, client: Client, site: SiteDir, config: SiteConfig, apps: SiteApps) -> None:
        super().__init__(config.periods.processing)
        self.client = client
        self.site = site
        self.config = config
        self.apps = apps
        self.hooks: dict[int, _Hook] = {}
        """The jobs whose hooks are queued or running, by id (the service still lists them as waiting)."""
        self._queue: queue.SimpleQueue[_Hook | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        for _ in range(config.processing_threads):
            self._add_worker()

    def _add_worker(self) -> None:
        self._workers += 1
        name = f"hook-{self._workers}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            hook = self._queue.get()
            if hook is None:
                return
            with self._lock:
                if hook.abandoned:  # dropped by close() while queued: its job keeps its state
                    continue
                hook.started = time.monotonic()
            try:
                hook.outcome = run_hook(hook.app, hook.job, self.site)
            except Exception as exc:  # the site itself (its workdir…): still this job's failure only
                hook.outcome = failed(hook.job, f"could not run the hook: {type(exc).__name__}: {exc}")
            hook.done.set()
            with self._lock:
                if hook.abandoned:  # a new worker took this one's place when it was given up
                    log.info("hook_ended_after_its_job_failed", job_id=hook.job.id, app=hook.app.name)
                    return

    def tick(self) -> None:
        new = self._queue_waiting_jobs()
        deadline = time.monotonic() + self.settle_s
        for hook in new:  # (hooks of earlier ticks still running are only looked at, not waited for)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            hook.done.wait(remaining)
        update_jobs(self.client, "hook outcome", self._outcomes())

    def _queue_waiting_jobs(self) -> list[_Hook]:
        """Queue the hooks of the jobs waiting for one (not those in hand); the hooks queued."""
        with self._lock:
            if any(hook.started is None for hook in self.hooks.values()):
                return []  # the workers have not caught up with the last batch yet
        current = self.apps.current  # the apps as registered now (the folder may change meanwhile)
        by_id = {
            current.ids[name]: app
            for name, app in current.catalog.apps.items()
            if name in current.ids and app.overridden_hooks()
        }
        if not by_id:
            return []
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
            ).limit(BATCH + len(self.hooks))
            if HOOK_FOR_STATE[job.state] in by_id[job.app_id].overridden_hooks() and job.id not in self.hooks
        ]
        new = [_Hook(job, by_id[job.app_id]) for job in jobs[:BATCH]]
        for hook in new:
            self.hooks[hook.job.id] = hook
            self._queue.put(hook)
        return new

    def _outcomes(self) -> list[dict[str, Any]]:
        """The updates of the hooks that finished, and of those past their time limit (given up)."""
        updates = []
        limit = self.config.hook_timeout_s
        now = time.monotonic()
        for job_id, hook in list(self.hooks.items()):
            if hook.done.is_set():
                del self.hooks[job_id]
                assert hook.outcome is not None
                updates.append(hook.outcome)
                continue
            with self._lock:
                overdue = hook.started is not None and now - hook.started >= limit and not hook.done.is_set()
                if overdue:
                    hook.abandoned = True
            if not overdue:
                continue
            del self.hooks[job_id]
            name = HOOK_FOR_STATE[hook.job.state].value
            log.warning("hook_timed_out", job_id=job_id, hook=name, app=hook.app.name, limit_s=limit)
            updates.append(failed(hook.job, f"{name} did not finish within {limit:g} s (hook_timeout_s)"))
            self._add_worker()  # the hung one keeps its thread
        return updates

    def close(self, wait: bool = True) -> None:
        """Stop the workers: hooks not started stay queued at the service (their jobs keep their state and
        the hooks run when the agent is back, as after a crash). With ``wait``, the running hooks get up
        to ``shutdown_grace_s`` to finish and their outcomes are sent."""
        started = time.monotonic()
        with self._lock:
            for hook in [h for h in self.hooks.values() if h.started is None]:
                del self.hooks[hook.job.id]
                hook.abandoned = True
        while True:  # take the queued hooks back, then tell each worker to stop
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in range(self._workers):
            self._queue.put(None)
        if not wait:
            return
        for hook in list(self.hooks.values()):
            hook.done.wait(max(0.0, self.config.shutdown_grace_s - (time.monotonic() - started)))
        finished = [hook.outcome for hook in self.hooks.values() if hook.done.is_set() and hook.outcome]
        busy = sorted(job_id for job_id, hook in self.hooks.items() if not hook.done.is_set())
        if busy:  # their jobs keep their state; the stacks (to stderr, the log) say where each hangs
            log.warning("hooks_still_running", job_ids=busy, grace_s=self.config.shutdown_grace_s)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self.hooks.clear()
        try:
            update_jobs(self.client, "hook outcome", finished)
        except Exception as exc:  # the service is gone: the hooks run again when the agent is back
            log.warning("hook_outcomes_not_sent", jobs=len(finished), error=exc)


def failed(job: Job, reason: str) -> dict[str, Any]:
    """The update that fails ``job`` for ``reason``."""
    return {"id": job.id, "state": JobState.FAILED.value, "state_data": {"reason": reason}, "error": reason}
