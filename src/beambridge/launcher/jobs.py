"""One job inside the launcher: how it is started, watched and ended."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from beambridge.apps.base import ApplicationDefinition
from beambridge.launcher.pool import Worker
from beambridge.launcher.resources import Placement
from beambridge.schemas.jobs import Job

ERROR_TAIL_CHARS = 4000


@dataclass
class RunningJob:
    """A started job and the handle to it (a process, or a Python worker)."""

    job: Job
    app: type[ApplicationDefinition]
    placement: Placement
    workdir: Path
    started: float
    deadline: float | None
    process: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    worker: Worker | None = None
    task_file: Path | None = None
    shell: bool = False
    """A shell command run by a pool worker (its answer is the exit code)."""
    stop_reason: str | None = None
    """Why the launcher is stopping it: ``timeout``, ``killed`` (cancelled by the user), ``drain``."""
    stop_sent_at: float | None = None

    def signal_stop(self, reason: str) -> None:
        """Ask the job's process group to end (SIGTERM); :meth:`force_stop` follows if it lingers."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_sent_at = time.monotonic()
        if self.process is not None:
            _kill_group(self.process.pid, signal.SIGTERM)

    def force_stop(self) -> None:
        """SIGKILL the job's process group."""
        if self.process is not None:
            _kill_group(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


@functools.cache
def pdeathsig_prefix() -> tuple[str, ...]:
    """An argv prefix that makes the job die with the launcher (util-linux ``setpriv --pdeathsig``).

    Cheaper than a ``preexec_fn`` (which forces a full fork of the launcher: ~7 ms against ~1 ms here).
    Empty where ``setpriv`` is missing or too old: jobs then outlive a launcher killed with ``kill -9``
    until they end (the service has already timed them out; their reports are refused).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    probe = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, check=False)
    return (setpriv, "--pdeathsig", "KILL", "--") if probe.returncode == 0 else ()


_SHELL_SYNTAX = set("|&;<>()$`\\*?[]#~={}\n")
"""Characters that need a shell; quotes alone do not (``shlex`` splits them as a POSIX shell would)."""


def command_argv(command: str, setup_lines: list[str]) -> list[str]:
    """The argv of a shell app's command: run directly when it is a plain command, else by ``bash -c``."""
    if not setup_lines and not (_SHELL_SYNTAX & set(command)):
        words = shlex.split(command)
        if words:
            return words
    return ["bash", "-c", "\n".join([*setup_lines, command])]


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


LOG_TAIL_BYTES = 8192
"""How much of the end of each of a run's stdout and stderr goes to the service (``beambridge job logs``)."""


def error_tail(workdir: Path, limit: int = ERROR_TAIL_CHARS) -> str:
    """The end of a job's stderr (what a user needs to see first)."""
    return file_tail(workdir / "job.err", limit)


def log_tails(workdir: Path, limit: int = LOG_TAIL_BYTES) -> dict[str, str]:
    """The ends of a run's ``job.out`` and ``job.err``, as the run's event carries them."""
    return {"stdout": file_tail(workdir / "job.out", limit), "stderr": file_tail(workdir / "job.err", limit)}


def file_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a file, as text.

    Reads at most ``limit`` bytes, and only from a regular file: a job may have left anything at that
    path (a FIFO would block the launcher, ``/dev/zero`` never ends, a file may still be growing).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        start = max(0, info.st_size - limit)
        return os.pread(fd, limit, start).decode(errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def python_command(python: str, task_file: Path) -> list[str]:
    """The argv that runs a Python app task out of process (MPI jobs, jobs on other nodes)."""
    return [python or sys.executable, "-m", "beambridge.apps.execute", str(task_file)]


def write_task(workdir: Path, job_id: int, task: dict[str, Any]) -> Path:
    """Store a task where ``beambridge.apps.execute`` reads it."""
    path = workdir / f".beambridge-task-{job_id}.json"
    path.write_bytes(orjson.dumps(task))
    return path


def read_result(task_file: Path) -> Any:
    """The result rank 0 wrote, or None."""
    out = task_file.with_suffix(".result.json")
    try:
        return orjson.loads(out.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
