"""A pool of long-lived worker processes that run Python apps without starting a process per job.

Each worker imports the site's apps once and then runs task after task, in the task's workdir with its
environment, stdout and stderr going to the workdir's ``job.out``/``job.err``. A worker running a job that
must stop (wall time, cancellation) is killed and replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

_PRELOAD = ["beambridge.apps.execute", "beambridge.apps.builtin", "beambridge.launcher.jobs", "orjson"]


_CHILD: list[subprocess.Popen[bytes]] = []
_GRACE_S = 2.0


def _end_child_and_exit(*_: Any) -> None:
    """SIGTERM to a worker (or its launcher gone): end the running command's process group — TERM, then
    KILL after a grace period — and exit. Reaps with ``os.waitpid`` directly: this may run inside the
    ``Popen.wait`` it interrupts, which holds the ``Popen`` lock."""
    for child in _CHILD:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_S
        while time.monotonic() < deadline and not _reaped(child.pid):
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    os._exit(1)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def run_command(task: Mapping[str, Any]) -> int:
    """Run a shell app's argv in its workdir (own session, output to job.out/job.err); its exit code."""
    workdir = task["workdir"]
    with (
        open(os.path.join(workdir, "job.out"), "ab") as out,
        open(os.path.join(workdir, "job.err"), "ab") as err,
    ):
        child = subprocess.Popen(
            task["argv"],
            cwd=workdir,
            env={**os.environ, **task["environment"]},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    _CHILD.append(child)
    try:
        return child.wait()
    finally:
        _CHILD.clear()


def _watch_launcher(launcher_pid: int) -> None:
    """End this worker (and the command it runs) as soon as the launcher is gone, even by ``kill -9``.

    The fork server's workers are not the launcher's children and the fork server outlives it while a
    worker is busy, so neither ``PR_SET_PDEATHSIG`` nor the fork server's own shutdown covers this.
    """
    try:
        pidfd = os.pidfd_open(launcher_pid)
    except (OSError, AttributeError):
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])
    else:
        while True:
            try:
                os.kill(launcher_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
    _end_child_and_exit()


def warm_apps(apps_folder: str, names: list[str]) -> dict[str, float | str]:
    """Call ``warm_up`` of each named app of the folder in this process, logging what each took (a
    warm-up that fails is logged and only leaves the first job slower)."""
    from beambridge.apps.execute import catalog
    from beambridge.logs import configure_logging, get_logger

    configure_logging()  # a fork-server worker starts without the launcher's logging: to its stderr
    log = get_logger(__name__)
    done: dict[str, float | str] = {}
    called: set[object] = set()
    started = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        try:
            warm_up = catalog(apps_folder).get(name).warm_up
            if warm_up.__func__ in called:  # type: ignore[attr-defined]  # inherited: warm already
                continue
            called.add(warm_up.__func__)  # type: ignore[attr-defined]
            warm_up()
        except Exception as exc:
            done[name] = f"{type(exc).__name__}: {exc}"
            log.warning("app_warm_up_failed", app=name, pid=os.getpid(), error=done[name])
        else:
            done[name] = round(time.perf_counter() - start, 3)
            log.info("app_warmed", app=name, pid=os.getpid(), seconds=done[name])
    # The line that says this worker takes jobs without delay now (a job sent before waits in its pipe).
    log.info("worker_warm", pid=os.getpid(), apps=len(done), seconds=round(time.perf_counter() - started, 3))
    return done


def _worker_main(
    conn: multiprocessing.connection.Connection, launcher_pid: int, warm: tuple[str, list[str]] | None = None
) -> None:
    from beambridge.apps.execute import AppFailed, run_task

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_child_and_exit)
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()
    if warm is not None:
        warm_apps(*warm)  # a task sent meanwhile waits in the pipe
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if "argv" in task:
            try:
                code = run_command(task)
            except OSError as exc:
                conn.send((task["job_id"], False, f"could not start {task['argv'][0]}: {exc}"))
            else:
                conn.send((task["job_id"], True, {"returncode": code}))
            continue
        try:
            result = run_task(task)
        except AppFailed as exc:
            conn.send((task["job_id"], False, str(exc)))
        except Exception as exc:  # loading the app failed: still the job's error, with the reason
            conn.send((task["job_id"], False, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send((task["job_id"], True, result))


@dataclass
class Worker:
    """One worker process and its end of the pipe."""

    process: BaseProcess
    conn: multiprocessing.connection.Connection
    job_id: int | None = None

    def fileno(self) -> int:
        return self.conn.fileno()


class PythonWorkerPool:
    """Up to ``size`` worker processes, started on demand and kept warm."""

    def __init__(self, size: int, warm: tuple[str, list[str]] | None = None) -> None:
        self.size = size
        self.warm = warm
        """(apps folder, app names) each worker warms up as it starts, before its first job."""
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._idle: list[Worker] = []
        self._busy: dict[int, Worker] = {}

    def warm_up(self, count: int | None = None) -> None:
        """Start workers ahead of need (the first start of the fork server takes a while)."""
        while len(self._idle) + len(self._busy) < min(self.size, count or self.size):
            self._idle.append(self._spawn())

    def _spawn(self) -> Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, os.getpid(), self.warm), daemon=True)
        process.start()
        child.close()
        return Worker(process, parent)

    def submit(self, job_id: int, task: Mapping[str, Any]) -> Worker:
        """Send a task to an idle worker (starting one if needed)."""
        worker = self._idle.pop() if self._idle else self._spawn()
        worker.job_id = job_id
        worker.conn.send({**task, "job_id": job_id})
        self._busy[job_id] = worker
        return worker

    def collect(self, worker: Worker) -> tuple[int, bool, Any] | None:
        """The finished task of a worker whose pipe is readable; None if the worker died (it is replaced)."""
        job_id = worker.job_id
        try:
            answer: tuple[int, bool, Any] = worker.conn.recv()
        except (EOFError, OSError):
            self._discard(worker)
            return (job_id, False, "the Python worker died") if job_id is not None else None
        self._busy.pop(answer[0], None)
        worker.job_id = None
        self._idle.append(worker)
        return answer

    def kill(self, job_id: int, grace_s: float = 0) -> None:
        """Stop the worker running ``job_id``: with ``grace_s``, SIGTERM first (a worker running a command
        ends the command's process group), SIGKILL after that long; else SIGKILL at once."""
        worker = self._busy.pop(job_id, None)
        if worker is not None:
            self._discard(worker, grace_s)

    def _discard(self, worker: Worker, grace_s: float = 0) -> None:
        self._busy.pop(worker.job_id or -1, None)
        pid = worker.process.pid
        if pid is not None and worker.process.is_alive() and grace_s > 0:
            os.kill(pid, signal.SIGTERM)
            worker.process.join(timeout=grace_s + 3)
        if pid is not None and worker.process.is_alive():
            os.kill(pid, signal.SIGKILL)
        worker.process.join(timeout=5)
        worker.conn.close()

    def busy_workers(self) -> list[Worker]:
        return list(self._busy.values())

    def close(self) -> None:
        """Stop every worker."""
        for worker in [*self._idle, *self._busy.values()]:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in [*self._idle, *self._busy.values()]:
            worker.process.join(timeout=2)
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.join(timeout=2)
            worker.conn.close()
        self._idle.clear()
        self._busy.clear()
