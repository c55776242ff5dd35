"""Transfers: stage jobs' inputs in and results out, in batched, verified, restart-safe tasks.

Each tick: poll the running tasks; record finished ones on their items; move jobs whose inputs have all
arrived ``READY → STAGED_IN`` and jobs whose outputs have all left ``POSTPROCESSED → STAGED_OUT →
JOB_FINISHED`` (the figures of their tasks in the event); then start new tasks — pending items of jobs
that are ready for them, batched by (direction, location) up to a count and a byte size, at most N at
once. A task's items are marked ``active`` with the task id and the backend's state *before* it starts,
so that an agent killed mid-transfer re-attaches to it (Globus) or redoes it idempotently (local,
rsync) on restart, and never starts it twice. A failed task is retried with backoff; after the retry
limit its jobs fail with the reason.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from beambridge.client import Client
from beambridge.logs import get_logger
from beambridge.platform.transfer import TransferBackend, TransferFile, TransferHandle, TransferTask
from beambridge.schemas.apps import TransferDirection, local_path_problem
from beambridge.schemas.jobs import Job
from beambridge.schemas.transfers import TransferItem, TransferState
from beambridge.site import metrics as site_metrics
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.figures import PlacementFigures
from beambridge.site.services.base import Service, update_jobs
from beambridge.states import JobState

log = get_logger(__name__)

IN, OUT = TransferDirection.IN, TransferDirection.OUT
_OPEN = [TransferState.PENDING, TransferState.AWAITING_JOB, TransferState.ACTIVE]
WAITING_PER_TICK = 1000
"""Jobs waiting for their transfers that one tick looks at (the rest on the next ticks)."""


@dataclass
class RunningTask:
    """A started task and the items it carries."""

    task: TransferTask
    backend: TransferBackend
    handle: TransferHandle
    items: list[TransferItem]
    attempt: int
    started: float = field(default_factory=time.monotonic)


def task_id_for(site_id: int, direction: TransferDirection, item_ids: Iterable[int], attempt: int) -> str:
    """A stable id for a batch: the same items and attempt give the same id after a restart."""
    digest = hashlib.sha1(",".join(map(str, sorted(item_ids))).encode()).hexdigest()[:12]
    return f"bb{site_id}-{direction.value}-{digest}-a{attempt}"


def unsafe_paths(item: TransferItem) -> str | None:
    """Why a transfer item's paths could reach outside its job's workdir (local) or its location's base
    (remote), or None. The service refuses such paths; this guards rows it accepted before it did."""
    problem = local_path_problem(item.local_path)
    if problem:
        return f"transfer item {item.id}: local_path {item.local_path!r:.80} {problem}"
    if "\x00" in item.remote_path or ".." in item.remote_path.split("/"):
        return f"transfer item {item.id}: remote path {item.remote_path!r:.80} may not contain '..' or NUL"
    return None


class Transfers(Service):
    """The site's transfer service."""

    name = "transfers"

    def __init__(
        self,
        client: Client,
        site: SiteDir,
        config: SiteConfig,
        backends: dict[str, TransferBackend],
        figures: PlacementFigures | None = None,
    ) -> None:
        super().__init__(config.periods.transfers)
        self.figures = figures
        self.client = client
        self.site = site
        self.config = config
        self.settings = config.transfers
        self.backends = backends
        self.running: dict[str, RunningTask] = {}
        self.resumed = False

    # -- the tick --------------------------------------------------------------------------------------

    def tick(self) -> None:
        if not self.resumed:  # once, after a (re)start: re-attach to the tasks the items say are running
            items = list(self.client.transfers.filter(site_id=self.config.site_id, state=_OPEN))
            self._resume(items, self._jobs({item.job_id for item in items}))
            self.resumed = True
        self._poll()
        items = list(self.client.transfers.filter(site_id=self.config.site_id, state=_OPEN))
        self._advance_jobs(self._waiting_jobs())
        self._start_new(items, self._jobs({item.job_id for item in items}))

    def _waiting_jobs(self) -> dict[int, Job]:
        """The site's jobs that wait for their inputs or outputs (the ones to move on when all arrived)."""
        states = [JobState.READY, JobState.POSTPROCESSED]
        query = self.client.jobs.filter(site_id=self.config.site_id, state=states)
        return {job.id: job for job in query.limit(WAITING_PER_TICK)}

    def _jobs(self, job_ids: set[int]) -> dict[int, Job]:
        if not job_ids:
            return {}
        # one query however many ids: the SDK sends a long id list in parts
        return {job.id: job for job in self.client.jobs.filter(id=sorted(job_ids))}

    # -- starting --------------------------------------------------------------------------------------

    def _ready(self, item: TransferItem, job: Job | None) -> bool:
        if job is None or item.state == TransferState.ACTIVE:
            return False
        if float(item.info.get("retry_at", 0)) > time.time():
            return False
        wanted = JobState.READY if item.direction == IN else JobState.POSTPROCESSED
        return job.state == wanted

    def _start_new(self, items: list[TransferItem], jobs: dict[int, Job]) -> None:
        busy = {i.id for r in self.running.values() for i in r.items}
        groups: dict[tuple[TransferDirection, str], list[TransferItem]] = defaultdict(list)
        for item in sorted(items, key=lambda i: i.id):
            if item.id not in busy and self._ready(item, jobs.get(item.job_id)):
                groups[(item.direction, item.location)].append(item)
        for key, group in list(groups.items()):
            unsafe = {item.id: problem for item in group if (problem := unsafe_paths(item))}
            for item in group:
                if item.id in unsafe:  # one job's bad paths fail that job alone, never the batch
                    self._fail_items([item], jobs, unsafe[item.id])
            groups[key] = [item for item in group if item.id not in unsafe]
        for (direction, location), group in groups.items():
            if not group:
                continue
            backend = self.backends.get(location)
            if backend is None:
                self._fail_items(group, jobs, f"the site has no transfer location {location!r} configured")
                continue
            for batch in self._batches(group, jobs):
                if len(self.running) >= self.settings.max_concurrent_tasks:
                    return
                self._start(direction, location, backend, batch, jobs)

    def _batches(self, group: list[TransferItem], jobs: dict[int, Job]) -> Iterable[list[TransferItem]]:
        batch: list[TransferItem] = []
        size = 0
        for item in group:
            if item.info.get("solo"):
                yield [item]
                continue
            nbytes = _local_size(self._local_path(item, jobs[item.job_id])) if item.direction == OUT else 0
            if batch and (
                len(batch) >= self.settings.max_files_per_task
                or size + nbytes > self.settings.max_bytes_per_task
            ):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += nbytes
        if batch:
            yield batch

    def _local_path(self, item: TransferItem, job: Job) -> Path:
        return self.site.workdir(job.workdir) / item.local_path

    def _file(self, item: TransferItem, job: Job) -> TransferFile:
        return TransferFile(
            item.remote_path, self._local_path(item, job), recursive=item.recursive, sha256=item.sha256
        )

    def _task(
        self,
        direction: TransferDirection,
        location: str,
        items: list[TransferItem],
        jobs: dict[int, Job],
        attempt: int,
    ) -> TransferTask:
        files = tuple(self._file(item, jobs[item.job_id]) for item in items)
        task_id = task_id_for(self.config.site_id, direction, [i.id for i in items], attempt)
        return TransferTask(task_id, direction, location, files, verify_checksum=True)

    def _start(
        self,
        direction: TransferDirection,
        location: str,
        backend: TransferBackend,
        items: list[TransferItem],
        jobs: dict[int, Job],
    ) -> None:
        attempt = max(int(item.info.get("attempts", 0)) for item in items) + 1
        task = self._task(direction, location, items, jobs, attempt)
        if direction == IN:
            for file in task.files:
                file.local_path.parent.mkdir(parents=True, exist_ok=True)
        state = backend.prepare(task, None)
        info = {"task_state": state, "attempts": attempt - 1, "started_at": time.time()}
        # recorded before the task starts: a restart re-attaches to it instead of starting it again
        self.client.transfers.update(
            {
                "id": item.id,
                "state": TransferState.ACTIVE.value,
                "task_id": task.task_id,
                "info": {**item.info, **info},
            }
            for item in items
        )
        handle = backend.start(task, state)
        self.running[task.task_id] = RunningTask(task, backend, handle, items, attempt)
        log.info(
            "transfer_started",
            task_id=task.task_id,
            direction=direction.value,
            location=location,
            files=len(items),
            job_ids=sorted({item.job_id for item in items}),
        )

    def _resume(self, items: list[TransferItem], jobs: dict[int, Job]) -> None:
        by_task: dict[str, list[TransferItem]] = defaultdict(list)
        for item in items:
            if item.state == TransferState.ACTIVE and item.task_id:
                by_task[item.task_id].append(item)
        for task_id, group in by_task.items():
            first = group[0]
            backend = self.backends.get(first.location)
            if backend is None or any(item.job_id not in jobs for item in group):
                continue
            attempt = int(first.info.get("attempts", 0)) + 1
            task = TransferTask(
                task_id,
                first.direction,
                first.location,
                tuple(self._file(i, jobs[i.job_id]) for i in group),
                verify_checksum=True,
            )
            handle = backend.resume(task, first.info.get("task_state") or {})
            self.running[task_id] = RunningTask(task, backend, handle, group, attempt)
            log.info(
                "transfer_reattached",
                task_id=task_id,
                files=len(group),
                job_ids=sorted({i.job_id for i in group}),
            )

    # -- finishing -------------------------------------------------------------------------------------

    def _poll(self) -> None:
        for task_id, run in list(self.running.items()):
            status = run.backend.poll(run.handle)
            if not status.done:
                continue
            del self.running[task_id]
            site_metrics.transfer_ended(
                str(run.items[0].direction.value if run.items else "?"), getattr(run.backend, "kind", "?"),
                ok=status.failure is None, nbytes=status.bytes, files=status.files,
            )  # fmt: skip
            if self.figures is not None and run.items:  # the route's measured rate, for placement
                ok = status.failure is None
                self.figures.transfer_done(run.items[0].location, status.bytes, status.duration_s, ok)
            figures = {
                "task_id": task_id,
                "bytes": status.bytes,
                "files": status.files,
                "files_skipped": status.files_skipped,
                "seconds": round(status.duration_s, 3),
                "rate_mb_s": round(status.rate / 1e6, 3),
            }
            if status.failure is None:
                self.client.transfers.update(
                    {
                        "id": item.id,
                        "state": TransferState.DONE.value,
                        "info": {**item.info, "transfer": figures},
                    }
                    for item in run.items
                )
                continue
            if not status.retryable and len(run.items) > 1:
                # one bad file must not fail the batch's other jobs: retry each item in a task of its own
                log.warning(
                    "transfer_split",
                    task_id=task_id,
                    items=len(run.items),
                    job_ids=sorted({i.job_id for i in run.items}),
                    next="retry one by one",
                )
                self.client.transfers.update(
                    {
                        "id": item.id,
                        "state": TransferState.PENDING.value,
                        "info": {**item.info, "solo": True, "last_error": status.error},
                    }
                    for item in run.items
                )
                continue
            retry = status.retryable and run.attempt < self.settings.retry_limit
            if status.retryable and not retry and len(run.items) > 1:
                # out of retries as a batch: each item gets a last attempt on its own, so that one file
                # that never verifies fails only its own job
                log.warning(
                    "transfer_split",
                    task_id=task_id,
                    items=len(run.items),
                    job_ids=sorted({i.job_id for i in run.items}),
                    next="last attempt one by one",
                )
                self.client.transfers.update(
                    {
                        "id": item.id,
                        "state": TransferState.PENDING.value,
                        "info": {
                            **item.info,
                            "solo": True,
                            "attempts": self.settings.retry_limit - 1,
                            "last_error": status.error,
                        },
                    }
                    for item in run.items
                )
                continue
            log.warning(
                "transfer_failed",
                task_id=task_id,
                attempt=run.attempt,
                retrying=retry,
                job_ids=sorted({i.job_id for i in run.items}),
                error=status.error,
            )
            if retry:
                delay = self.settings.retry_backoff_s * 2 ** (run.attempt - 1)
                self.client.transfers.update(
                    {
                        "id": item.id,
                        "state": TransferState.PENDING.value,
                        "info": {
                            **item.info,
                            "attempts": run.attempt,
                            "last_error": status.error,
                            "retry_at": time.time() + delay,
                        },
                    }
                    for item in run.items
                )
            else:
                jobs = self._jobs({item.job_id for item in run.items})
                self._fail_items(
                    run.items, jobs, f"transfer failed after {run.attempt} attempt(s): {status.error}"
                )

    def _fail_items(self, items: list[TransferItem], jobs: dict[int, Job], reason: str) -> None:
        self.client.transfers.update(
            {"id": item.id, "state": TransferState.ERROR.value, "info": {**item.info, "error": reason}}
            for item in items
        )
        update_jobs(
            self.client,
            "staging update",
            [
                {
                    "id": job_id,
                    "state": JobState.FAILED.value,
                    "state_data": {"reason": reason},
                    "error": reason,
                }
                for job_id in sorted({item.job_id for item in items})
                if job_id in jobs
                and jobs[job_id].state not in (JobState.FAILED, JobState.KILLED, JobState.JOB_FINISHED)
            ],
        )

    def _advance_jobs(self, jobs: dict[int, Job]) -> None:
        """Jobs whose transfers in one direction are all done move on, with the tasks' figures."""
        waiting = [job for job in jobs.values() if job.state in (JobState.READY, JobState.POSTPROCESSED)]
        if not waiting:
            return
        items_by_job: dict[int, list[TransferItem]] = defaultdict(list)
        for item in self.client.transfers.filter(job_id=[job.id for job in waiting]):
            items_by_job[item.job_id].append(item)
        staged_in, staged_out = [], []
        for job in waiting:
            direction = IN if job.state == JobState.READY else OUT
            mine = [item for item in items_by_job[job.id] if item.direction == direction]
            if mine and all(item.state == TransferState.DONE for item in mine):
                tasks = {
                    item.info["transfer"]["task_id"]: item.info["transfer"]
                    for item in mine
                    if "transfer" in item.info
                }
                update = {"id": job.id, "state_data": {"transfers": list(tasks.values())}}
                if direction == IN:
                    staged_in.append({**update, "state": JobState.STAGED_IN.value})
                else:
                    staged_out.append({**update, "state": JobState.STAGED_OUT.value})
        update_jobs(self.client, "staging update", staged_in)
        update_jobs(self.client, "staging update", staged_out)
        update_jobs(
            self.client,
            "staging update",
            [{"id": update["id"], "state": JobState.JOB_FINISHED.value} for update in staged_out],
        )

    def close(self) -> None:
        for backend in {id(b): b for b in self.backends.values()}.values():
            backend.close()


def _local_size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0
