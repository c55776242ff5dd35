"""The pilot launcher: inside an allocation, acquire jobs from the service and run them on the nodes.

Threads: the *main loop* starts jobs and waits (``selectors``) on process exits (pidfds) and Python
worker answers; the *acquirer* long-polls the service for work whenever slots are free; the *heartbeat*
keeps the session alive and learns of cancelled jobs; the *reporter* sends state changes in batches.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beambridge.apps.artifacts import ARTIFACT_DIR
from beambridge.apps.base import ApplicationDefinition, ParameterError
from beambridge.apps.loader import AppCatalog, folder_fingerprint, load_apps
from beambridge.client import Client
from beambridge.client.errors import BeambridgeError, Conflict, NotFound, ValidationError
from beambridge.launcher.artifacts import ArtifactUploader
from beambridge.launcher.config import LauncherConfig, xpcs_warmup_argv
from beambridge.launcher.jobs import (
    RunningJob,
    command_argv,
    error_tail,
    log_tails,
    pdeathsig_prefix,
    python_command,
    read_result,
    write_task,
)
from beambridge.launcher.pool import PythonWorkerPool
from beambridge.launcher.reporter import Reporter
from beambridge.launcher.resources import NodePool, Placement
from beambridge.logs import get_logger
from beambridge.platform.mpi import LaunchSpec, get_mpi_launcher
from beambridge.schemas.batch_jobs import JobMode
from beambridge.schemas.jobs import Job
from beambridge.states import JobState

log = get_logger(__name__)

KILL_GRACE_S = 2.0


@dataclass
class LauncherOptions:
    """What one launcher is asked to do."""

    batch_job_id: int | None = None
    job_mode: JobMode = JobMode.SERIAL
    wall_time_min: float | None = None
    """The allocation's wall time (None: no end)."""
    nodes: list[str] | None = None
    idle_timeout_s: float | None = None
    filter_tags: dict[str, str] | None = None
    keep_warm: bool = False
    """A warm pilot: never exits idle, and its workers warm the site's apps up before the first job."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _local_names() -> set[str]:
    names = {"localhost", socket.gethostname(), socket.gethostname().split(".")[0]}
    for variable in ("SLURMD_NODENAME", "BB_LOCAL_NODE"):
        if os.environ.get(variable):
            names.add(os.environ[variable])
    return names


class Launcher:
    """Runs one pilot's share of the work until idle, drained or told to stop."""

    def __init__(self, options: LauncherOptions, client: Client, config: LauncherConfig) -> None:
        self.options = options
        self.config = config
        self.client = client
        settings = config.settings
        self.settings = settings
        self.nodes = NodePool(options.nodes or ["localhost"], settings.cores_per_node, settings.gpus_per_node)
        self.local_nodes = set(self.nodes.names) if config.local_scheduler else _local_names()
        self.mpi = get_mpi_launcher(settings.mpi_launcher, settings.mpi_executable, settings.mpi_args)
        self.catalog: AppCatalog = load_apps(config.apps_dir)
        self._apps_lock = threading.Lock()
        self.advertise_apps = True
        """Whether acquire names the apps this launcher can run (off against a service that predates it)."""
        self.app_names: dict[int, str] = {}
        self.serial = options.job_mode == JobMode.SERIAL
        self.started_at = time.monotonic()
        self.drain_at = (
            self.started_at + options.wall_time_min * 60 - settings.drain_margin_s
            if options.wall_time_min
            else None
        )
        self.idle_timeout_s = options.idle_timeout_s or settings.idle_timeout_s
        warm = None
        if options.keep_warm:
            base = ApplicationDefinition.warm_up.__func__  # type: ignore[attr-defined]
            names = sorted(n for n, cls in self.catalog.apps.items() if cls.warm_up.__func__ is not base)  # type: ignore[attr-defined]
            warm = (str(config.apps_dir), names)
        self.pool = PythonWorkerPool(size=max(1, len(self.nodes) * settings.cores_per_node), warm=warm)
        self.reporter = Reporter(
            client,
            interval_s=settings.report_interval_s,
            batch=settings.report_batch,
            on_session_lost=self._session_lost,
        )
        self.uploader = ArtifactUploader(client)
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.queued: deque[Job] = deque()
        self.running: dict[int, RunningJob] = {}
        self.killed_ids: set[int] = set()
        self.session_id: int | None = None
        self.lost_session: int | None = None
        self.stopping = threading.Event()
        self.draining = False
        self.last_activity = time.monotonic()
        self.counts = {"started": 0, "done": 0, "error": 0, "timeout": 0, "killed": 0}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    # -- life cycle ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until idle for ``idle_timeout_s``, the allocation drains, or SIGTERM; the exit status."""
        for path, problem in self.catalog.errors.items():
            log.error("app_file_not_loaded", path=path, problem=problem)
        self._load_app_ids()
        self.session_id = self.client.sessions.open(self.config.site_id, self.options.batch_job_id).id
        log.info(
            "session_opened",
            session_id=self.session_id,
            batch_job_id=self.options.batch_job_id,
            site_id=self.config.site_id,
            nodes=self.nodes.names,
            mode=self.options.job_mode.value,
        )
        warmup = self._start_xpcs_warmup()
        self.reporter.start()
        threads = [
            threading.Thread(target=self._acquire_loop, name="acquirer", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
        ]
        for thread in threads:
            thread.start()
        # Spawning and pipe reads hand the GIL away; with the default 5 ms switch interval a busy reporter
        # or acquirer thread would make each of those waits milliseconds long.
        sys.setswitchinterval(0.0005)
        if self.options.keep_warm:
            self.pool.warm_up()  # every slot: a burst of quick looks never meets a cold worker
        elif self.serial:
            self.pool.warm_up(min(2, self.pool.size))
        try:
            self._main_loop()
        finally:
            self.stopping.set()
            self._wake()
            self._stop_all("drain")
            log.info("stopping", session_id=self.session_id, step="sending the last reports")
            self.uploader.stop()
            delivered = self.reporter.stop(self.settings.report_drain_s)
            for thread in threads:  # a long-poll in flight is abandoned: closing the session frees its jobs
                thread.join(timeout=1)
            self._close_session(unreported=not delivered)
            log.info("session_closed", session_id=self.session_id, step="stopping workers")
            self.pool.close()
            if warmup is not None and warmup.poll() is None:
                warmup.terminate()
                warmup.wait(timeout=10)
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        log.info("launcher_done", batch_job_id=self.options.batch_job_id, **self.counts)
        return 0

    def _start_xpcs_warmup(self) -> subprocess.Popen[bytes] | None:
        """Compile the XPCS kernels in the background (output in this pilot's log), unless switched off;
        on a node whose cache is warm it ends in about a second."""
        if not self.settings.warm_xpcs:
            return None
        argv = [*pdeathsig_prefix(), *xpcs_warmup_argv()]
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            log.warning("xpcs_warmup_not_started", error=exc)
            return None
        log.info(
            "xpcs_warmup", pid=process.pid, note="compiling the XPCS kernels in the background if needed"
        )
        return process

    def request_stop(self, *_: Any) -> None:
        """Drain: stop taking work, end running jobs as timed out, exit (SIGTERM does this)."""
        self.draining = True
        self._wake()

    def _close_session(self, *, unreported: bool = False) -> None:
        """Close the session. With reports undelivered (the service was down as the launcher stopped), a job
        may have started without the service knowing: it closes as ``unreported`` so that each job's
        history shows the possible run instead of the job silently running again."""
        if self.session_id is None:
            return
        if unreported:
            log.warning("reports_undelivered", session_id=self.session_id, effect="closing as unreported")
        try:
            self.client.sessions.close(self.session_id, unreported=unreported)
        except BeambridgeError as exc:
            log.warning("session_close_failed", session_id=self.session_id, error=exc)

    def _load_app_ids(self) -> None:
        for app in self.client.apps.filter(site_id=self.config.site_id):
            self.app_names[app.id] = app.name

    def _refresh_apps(self) -> None:
        """Reload the site's apps folder if a file was added, removed or rewritten since it was read: the
        next acquire names the apps as they are now (and the workers load them afresh)."""
        with self._apps_lock:  # the acquirer and the main loop may both ask
            if folder_fingerprint(self.config.apps_dir) == self.catalog.fingerprint:
                return
            old, new = self.catalog, load_apps(self.config.apps_dir)
            self.catalog = new
        log.info(
            "apps_reloaded",
            session_id=self.session_id,
            added=sorted(set(new.apps) - set(old.apps)),
            changed=sorted(n for n in set(new.apps) & set(old.apps) if new.versions[n] != old.versions[n]),
            removed=sorted(set(old.apps) - set(new.apps)),
        )
        for path, problem in new.errors.items():
            if old.errors.get(path) != problem:
                log.error("app_file_not_loaded", path=path, problem=problem)

    # -- threads -------------------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _acquire_request(self) -> dict[str, Any] | None:
        """What to ask for now (None: nothing, wait)."""
        if self.draining or self.stopping.is_set() or self.lost_session is not None:
            return None
        limits: dict[str, Any] = {}
        if self.drain_at is not None:
            remaining_min = max(0.0, (self.drain_at - time.monotonic()) / 60)
            if remaining_min <= 0:
                return None
            # a job with no limit could outlast the allocation: only while plenty of it is left
            unlimited = remaining_min >= self.settings.unlimited_jobs_cutoff_min
            limits = {"time_left_min": remaining_min, "unlimited_jobs": unlimited}
        if self.serial:
            has_room = any(free > 1e-9 for free in self.nodes.free_fractions())
            want = self.settings.prefetch + len(self.nodes) - len(self.queued)
            if not has_room or want <= 0:
                return None
            return {"max_jobs": want, "serial_only": True, **limits}
        if self.queued:
            return None
        free = self.nodes.free_fractions()
        if not any(f > 1e-9 for f in free):
            return None
        return {"max_jobs": 1000, "free_nodes": free, **limits}

    def _long_poll_s(self) -> float:
        """How long an acquire may wait: the configured long-poll, but never past the drain time."""
        if self.drain_at is None:
            return self.settings.long_poll_s
        return max(0.0, min(self.settings.long_poll_s, self.drain_at - time.monotonic()))

    def _acquire_loop(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            self._refresh_apps()
            with self.wakeup:
                request = self._acquire_request()
                if request is None or self.session_id is None:
                    self.wakeup.wait(0.5)
                    continue
                session_id = self.session_id
            try:
                jobs = self.client.sessions.acquire(
                    session_id,
                    wait_s=self._long_poll_s(),
                    filter_tags=self.options.filter_tags,
                    apps=self.catalog.advertised() if self.advertise_apps else None,
                    **request,
                )
                backoff = 0.2
            except ValidationError as exc:
                if self.advertise_apps and "apps" in exc.detail:  # a service older than the app list
                    log.warning("acquire_without_app_list", session_id=session_id, detail=exc.detail[:300])
                    self.advertise_apps = False
                else:
                    log.warning("acquire_refused", session_id=session_id, detail=exc.detail)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 10)
                jobs = []
            except Conflict as exc:
                if exc.body.get("expired"):
                    self._session_lost(session_id)
                else:
                    log.warning("acquire_refused", session_id=session_id, detail=exc.detail)
                    time.sleep(backoff)
                jobs = []
            except NotFound:
                self._session_lost(session_id)
                jobs = []
            except BeambridgeError as exc:
                log.warning("acquire_failed", session_id=session_id, error=exc, retry_in_s=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)
                jobs = []
            with self.wakeup:
                if jobs:
                    self.queued.extend(jobs)
                    self.last_activity = time.monotonic()
            if jobs:
                self._wake()

    def _heartbeat_loop(self) -> None:
        period = min(10.0, self.config.session_timeout_s / 4)
        while not self.stopping.wait(period):
            session_id = self.session_id
            if session_id is None:
                continue
            try:
                answer = self.client.sessions.heartbeat(session_id)
            except (Conflict, NotFound):
                self._session_lost(session_id)
                continue
            except BeambridgeError as exc:
                log.warning("heartbeat_failed", session_id=session_id, error=exc)
                continue
            if answer.killed_job_ids:
                with self.lock:
                    self.killed_ids.update(answer.killed_job_ids)
                self._wake()

    def _session_lost(self, session_id: int) -> None:
        with self.lock:
            if self.session_id == session_id and self.lost_session is None:
                log.warning("session_expired", session_id=session_id, effect="its jobs run elsewhere now")
                self.lost_session = session_id
        self._wake()

    # -- main loop -----------------------------------------------------------------------------------

    def _main_loop(self) -> None:
        while True:
            timeout = self._next_timeout()
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._finished(key.data)
            now = time.monotonic()
            self._handle_session_loss()
            self._handle_kills()
            self._enforce_deadlines(now)
            if self.drain_at is not None and now >= self.drain_at and not self.draining:
                log.info("draining", session_id=self.session_id, reason="allocation ends soon")
                self.draining = True
            if self.draining:
                self._stop_all("drain")
                if not self.running:
                    return
                continue
            self._start_queued()
            with self.lock:
                busy = self.running or self.queued
                if busy:
                    self.last_activity = now
                elif now - self.last_activity > self.idle_timeout_s and not self.options.keep_warm:
                    log.info("idle_exit", session_id=self.session_id, idle_s=self.idle_timeout_s)
                    return

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [0.5]
        for run in self.running.values():
            if run.deadline is not None:
                candidates.append(run.deadline - now)
            if run.stop_sent_at is not None:
                candidates.append(run.stop_sent_at + KILL_GRACE_S - now)
        if self.drain_at is not None:
            candidates.append(self.drain_at - now)
        return max(0.0, min(candidates))

    def _handle_session_loss(self) -> None:
        with self.lock:
            lost = self.lost_session
            if lost is None:
                return
            self.queued.clear()
        for run in list(self.running.values()):
            if run.stop_reason is None:
                self._stop(run, "lost")
        if self.stopping.is_set() or self.draining:
            return
        try:
            session = self.client.sessions.open(self.config.site_id, self.options.batch_job_id)
        except BeambridgeError as exc:
            log.warning("session_open_failed", batch_job_id=self.options.batch_job_id, error=exc)
            return
        with self.wakeup:
            self.session_id = session.id
            self.lost_session = None
            self.wakeup.notify_all()
        log.info("session_opened", session_id=session.id, batch_job_id=self.options.batch_job_id)

    def _handle_kills(self) -> None:
        with self.lock:
            killed, self.killed_ids = self.killed_ids, set()
            if killed:
                self.queued = deque(job for job in self.queued if job.id not in killed)
        for job_id in killed:
            run = self.running.get(job_id)
            if run is not None:
                log.info("job_cancelled", job_id=job_id, session_id=self.session_id)
                self._stop(run, "killed")

    def _enforce_deadlines(self, now: float) -> None:
        for run in list(self.running.values()):
            if run.stop_sent_at is not None:
                if now - run.stop_sent_at >= KILL_GRACE_S:
                    run.force_stop()
                continue
            if run.deadline is not None and now >= run.deadline:
                log.info("job_timed_out", job_id=run.job.id, wall_time_limit_min=run.job.wall_time_limit_min)
                self._stop(run, "timeout")

    def _stop(self, run: RunningJob, reason: str) -> None:
        if run.worker is not None:
            run.stop_reason = reason
            self._selector.unregister(run.worker.conn)
            self.pool.kill(run.job.id, grace_s=KILL_GRACE_S if run.shell else 0)
            self._complete(run, None, False, "")
        else:
            run.signal_stop(reason)

    def _stop_all(self, reason: str) -> None:
        for run in list(self.running.values()):
            if run.stop_sent_at is None and run.stop_reason is None:
                self._stop(run, reason)

    # -- starting jobs -------------------------------------------------------------------------------

    def _start_queued(self) -> None:
        """Start the queued jobs that fit, in order; a footprint that did not fit is not tried again
        in the same pass (the queue may hold hundreds of prefetched jobs)."""
        with self.lock:
            if not self.queued:
                return
            pending = list(self.queued)
            self.queued.clear()
        left: list[Job] = []
        full: set[tuple[int, int, int, float]] = set()
        for index, job in enumerate(pending):
            if not self.nodes.has_room():
                left.extend(pending[index:])
                break
            footprint = (job.num_nodes, job.node_packing_count, job.ranks_per_node, job.gpus_per_rank)
            if footprint in full or not self._start_one(job):
                full.add(footprint)
                left.append(job)
        if left:
            with self.lock:
                self.queued.extendleft(reversed(left))

    def _app_for(self, job: Job) -> type[ApplicationDefinition] | None:
        name = self.app_names.get(job.app_id)
        if name is None:
            self._load_app_ids()
            name = self.app_names.get(job.app_id)
        if name is not None and name not in self.catalog.apps:
            self._refresh_apps()  # (only a service that was not told which apps this launcher has)
        if name is None or name not in self.catalog.apps:
            return None
        return self.catalog.apps[name]

    def _start_one(self, job: Job) -> bool:
        """Start ``job`` if it fits now (False: keep it queued). Whatever goes wrong while preparing or
        starting one job fails that job, with the reason, and never the launcher."""
        try:
            return self._start(job)
        except Exception as exc:
            log.exception("job_start_failed", job_id=job.id, session_id=self.session_id)
            self._fail_start(job, f"could not start: {type(exc).__name__}: {exc}")
            return True

    def _fail_start(self, job: Job, reason: str) -> None:
        """Record a start that failed before the job ran: ``RUNNING`` then ``RUN_ERROR`` with the reason,
        so the attempt is in the job's history and counts against its retries like any failed run."""
        self._report(job.id, JobState.RUNNING)
        self._report(
            job.id, JobState.RUN_ERROR, return_code=-1, error=reason, state_data={"reason": reason[:1000]}
        )

    def _start(self, job: Job) -> bool:
        """Start ``job`` if it fits now; False to keep it queued."""
        session_id = self.session_id
        assert session_id is not None
        app = self._app_for(job)
        if app is None:
            name = self.app_names.get(job.app_id, f"id {job.app_id}")
            self._fail_start(job, f"app {name} is not in this site's apps folder")
            return True
        workdir = self.config.workdir(job.workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail_start(job, f"could not prepare the work directory {job.workdir}: {exc}")
            return True
        placement = self.nodes.place(job)
        if placement is None:
            return False
        try:
            return self._launch(job, app, placement, workdir)
        except BaseException:
            self.nodes.release(placement)
            raise

    def _launch(
        self, job: Job, app: type[ApplicationDefinition], placement: Placement, workdir: Path
    ) -> bool:
        node_names = [self.nodes.names[i] for i in placement.node_indexes]
        environment = {
            **self.config.environment,
            **app.environment,
            "BEAMBRIDGE_JOB_ID": str(job.id),
            "BEAMBRIDGE_WORKDIR": str(workdir),
            "BEAMBRIDGE_NODES": ",".join(node_names),
            "OMP_NUM_THREADS": str(job.threads_per_rank),
        }
        if placement.cpu_ids:
            environment["BEAMBRIDGE_CPU_IDS"] = ",".join(map(str, placement.cpu_ids))
        if placement.gpu_ids:
            environment[self.settings.gpu_variable] = ",".join(map(str, placement.gpu_ids))
        now = time.monotonic()
        deadline = now + job.wall_time_limit_min * 60 if job.wall_time_limit_min > 0 else None
        run = RunningJob(job, app, placement, workdir, now, deadline)
        local_serial = job.num_nodes == 1 and job.ranks_per_node == 1 and node_names[0] in self.local_nodes
        try:
            if app.is_python() and local_serial:
                task = self._task(job, app, workdir, environment)
                run.worker = self.pool.submit(job.id, task)
                self._selector.register(run.worker.conn, selectors.EVENT_READ, run)
            elif local_serial:  # a worker spawns it: the launcher's busy threads never delay a fork
                argv = [*pdeathsig_prefix(), *self._argv(job, app, workdir, environment, run)]
                task = {"argv": argv, "workdir": str(workdir), "environment": environment}
                run.worker = self.pool.submit(job.id, task)
                run.shell = True
                self._selector.register(run.worker.conn, selectors.EVENT_READ, run)
            else:
                argv = self._argv(job, app, workdir, environment, run)
                if not local_serial:
                    spec = LaunchSpec(
                        argv,
                        node_names,
                        job.ranks_per_node,
                        job.threads_per_rank,
                        job.gpus_per_rank,
                        environment,
                    )
                    argv = self.mpi.argv(spec)
                run.process = self._spawn(argv, workdir, environment)
                run.pidfd = os.pidfd_open(run.process.pid)
                self._selector.register(run.pidfd, selectors.EVENT_READ, run)
        except (ParameterError, OSError) as exc:
            self.nodes.release(placement)
            self._fail_start(job, f"could not start: {exc}")
            return True
        self.running[job.id] = run
        self.counts["started"] += 1
        # Node and slot (the first CPU the run holds) put the run on its row of the console's weather
        # plot (wall time × node × slot): a stuck core or an idle one shows as it is.
        where: dict[str, Any] = {"node": node_names[0]}
        if placement.cpu_ids:
            where["slot"] = placement.cpu_ids[0]
        self._report(job.id, JobState.RUNNING, state_data=where)
        return True

    def _task(
        self, job: Job, app: type[ApplicationDefinition], workdir: Path, env: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "apps_folder": str(self.config.apps_dir),
            "app": app.name,
            "job": job.model_dump(mode="json"),
            "workdir": str(workdir),
            "environment": env,
        }

    def _argv(
        self, job: Job, app: type[ApplicationDefinition], workdir: Path, env: dict[str, str], run: RunningJob
    ) -> list[str]:
        if app.is_python():
            run.task_file = write_task(workdir, job.id, self._task(job, app, workdir, env))
            return python_command(self.settings.python, run.task_file)
        command = app(job, workdir).render_command()
        return command_argv(command, [*self.config.setup_lines, *app.setup_lines])

    def _spawn(self, argv: list[str], workdir: Path, environment: dict[str, str]) -> subprocess.Popen[bytes]:
        out = open(workdir / "job.out", "ab")  # noqa: SIM115 - handed to the child
        err = open(workdir / "job.err", "ab")  # noqa: SIM115
        try:
            return subprocess.Popen(
                [*pdeathsig_prefix(), *argv],
                cwd=workdir,
                env={**os.environ, **environment},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            out.close()
            err.close()

    # -- finishing jobs ------------------------------------------------------------------------------

    def _finished(self, run: RunningJob) -> None:
        if run.worker is not None:
            answer = self.pool.collect(run.worker)
            self._selector.unregister(run.worker.conn)
            if answer is None:
                self._complete(run, 1, False, "the Python worker died")
                return
            _, ok, payload = answer
            if run.shell and ok:
                code = int(payload["returncode"])
                self._complete(run, code, code == 0, None if code == 0 else error_tail(run.workdir))
                return
            self._complete(run, 0 if ok else 1, ok, payload)
            return
        assert run.process is not None and run.pidfd is not None
        self._selector.unregister(run.pidfd)
        code = run.process.wait()
        run.close()
        if code == 0:
            result = read_result(run.task_file) if run.task_file else None
            self._complete(run, 0, True, result)
        else:
            self._complete(run, code, False, error_tail(run.workdir))

    def _complete(self, run: RunningJob, code: int | None, ok: bool, payload: Any) -> None:
        self.running.pop(run.job.id, None)
        self.nodes.release(run.placement)
        job_id = run.job.id
        if run.stop_reason in ("killed", "lost"):
            self.counts["killed"] += 1
        elif run.stop_reason in ("timeout", "drain"):
            self.counts["timeout"] += 1
            why = "wall time exceeded" if run.stop_reason == "timeout" else "allocation ending"
            log.warning("job_timed_out", job_id=job_id, reason=why)
            logs = log_tails(run.workdir)
            self._report(job_id, JobState.RUN_TIMEOUT, state_data={"reason": why, "logs": logs})
        elif ok:
            self.counts["done"] += 1
            logs = log_tails(run.workdir)
            if (run.workdir / ARTIFACT_DIR).is_dir():

                def done(artifacts: dict[str, Any]) -> None:
                    data = {"logs": logs, "artifacts": artifacts}
                    self._report(job_id, JobState.RUN_DONE, return_code=0, result=payload, state_data=data)

                self.uploader.submit(job_id, run.workdir, done)
            else:
                self._report(
                    job_id, JobState.RUN_DONE, return_code=0, result=payload, state_data={"logs": logs}
                )
        else:
            self.counts["error"] += 1
            error = str(payload or f"exit code {code}")
            last = next((line for line in reversed(error.splitlines()) if line.strip()), "")
            log.warning("job_failed", job_id=job_id, exit_code=code, error=last[:300])
            self._report(
                job_id,
                JobState.RUN_ERROR,
                return_code=code if code is not None else 1,
                error=error,
                state_data={"logs": log_tails(run.workdir)},
            )
        with self.wakeup:
            self.last_activity = time.monotonic()
            self.wakeup.notify_all()

    def _report(self, job_id: int, state: JobState, **fields: Any) -> None:
        if self.session_id is None:
            return
        report = {"id": job_id, "state": state.value, "at": _now()}
        report.update({key: value for key, value in fields.items() if value is not None})
        self.reporter.put(self.session_id, report)


def install_signal_handlers(launcher: Launcher) -> None:
    """SIGTERM / SIGINT drain the launcher (the scheduler's end-of-allocation signal)."""
    signal.signal(signal.SIGTERM, launcher.request_stop)
    signal.signal(signal.SIGINT, launcher.request_stop)


__all__ = ["Launcher", "LauncherOptions", "install_signal_handlers"]
