"""What every transfer backend offers the site's transfer service.

A :class:`TransferTask` is one batch of files moved in one direction between the site and one remote
location (``in``: remote → site workdir, ``out``: site workdir → remote). A backend runs many tasks at
once; the service drives each one like this::

    state = backend.prepare(task, previous=saved_state)   # persist `state` BEFORE start()
    handle = backend.start(task, state)                   # returns at once; the work runs elsewhere
    ...persist handle.state...                            # (Globus adds its task id)
    status = backend.poll(handle)                         # ACTIVE → SUCCEEDED | FAILED

After a crash and restart, ``backend.resume(task, saved_state)`` re-attaches (Globus, by the task id or
the submission id it stored) or redoes the task idempotently (local, rsync). A failed task carries a
:class:`Failure` whose kind says whether retrying can help; retrying is the service's job: it calls
``prepare(task, previous=handle.state)`` again and starts anew.

The rule for data: a file exists under its final name only once all of it arrived and was verified (size,
and checksum unless the task turns that off). Partial data lives under temporary names.
"""

from __future__ import annotations

import abc
import errno
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from beambridge.logs import get_logger
from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.common import InputModel

log = get_logger(__name__)

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONFIG_ERRNOS = frozenset({errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EEXIST})


# --------------------------------------------------------------------------------------------------
# Paths


def clean_relative(path: str) -> str:
    """``path`` as a clean relative POSIX path (a leading ``/`` is dropped: job paths are relative to the
    location's base). ``ValueError`` for ``..`` components, NUL bytes, or nothing left."""
    if "\0" in path:
        raise ValueError(f"path {path!r} contains a NUL byte")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {path!r} may not contain '..'")
    if not parts:
        raise ValueError(f"path {path!r} names no file")
    return "/".join(parts)


def join_remote(base: str, relative: str) -> str:
    """The location's base path joined with a job's path (which may not escape it)."""
    return str(PurePosixPath(base) / clean_relative(relative))


# --------------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class TransferFile:
    """One file (or directory, when ``recursive``) of a task."""

    remote_path: str
    """Relative to the location's base path (a leading ``/`` is allowed; ``..`` is not)."""
    local_path: Path
    """Absolute path on the site (inside a job's workdir)."""
    recursive: bool = False
    sha256: str | None = None
    """The content's SHA-256 (hex) when the caller knows it: the arrived file must match it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "remote_path", clean_relative(self.remote_path))
        object.__setattr__(self, "local_path", Path(self.local_path))
        if not self.local_path.is_absolute():
            raise ValueError(f"local path {self.local_path} must be absolute")
        if self.sha256 is not None and (self.recursive or not _SHA256.match(self.sha256)):
            raise ValueError("sha256 must be 64 lower-case hex digits, and only for single files")


@dataclass(frozen=True)
class TransferTask:
    """One batch of files, all in the same direction between the site and the same location."""

    task_id: str
    """The service's id of the batch: stable across restarts; names staging directories and labels."""
    direction: TransferDirection
    location: str
    """The location alias (for labels and logs)."""
    files: tuple[TransferFile, ...]
    verify_checksum: bool = True

    def __post_init__(self) -> None:
        if not _TASK_ID.match(self.task_id):
            raise ValueError(f"task id {self.task_id!r}: letters, digits, '_', '.', '-' (1-100)")
        object.__setattr__(self, "direction", TransferDirection(self.direction))
        object.__setattr__(self, "files", tuple(self.files))
        if not self.files:
            raise ValueError("a transfer task needs at least one file")
        destinations = [
            str(f.local_path) if self.direction is TransferDirection.IN else f.remote_path for f in self.files
        ]
        if len(set(destinations)) != len(destinations):
            raise ValueError("two files of the task have the same destination")


# --------------------------------------------------------------------------------------------------
# Outcomes


class TaskState(StrEnum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class FailureKind(StrEnum):
    """Why a task failed, which says whether retrying can help."""

    TRANSIENT = "transient"
    """Network, service unavailable, timeouts, source changed while read: retry later."""
    CHECKSUM = "checksum"
    """Data arrived but did not verify: retry."""
    AUTH = "auth"
    """Key or token refused: fix the credentials first."""
    NOT_FOUND = "not_found"
    """The source does not exist."""
    CONFIG = "config"
    """Bad path, permissions, unsupported option."""
    CANCELLED = "cancelled"


RETRYABLE = frozenset({FailureKind.TRANSIENT, FailureKind.CHECKSUM})


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class TransferError(Exception):
    """A task (or its preparation) failed; carries the :class:`Failure`."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(kind, message)

    @classmethod
    def of(cls, failure: Failure) -> TransferError:
        return cls(failure.kind, failure.message)


def failure_from_oserror(exc: OSError, what: str = "") -> Failure:
    """Classify a local file-system error."""
    prefix = f"{what}: " if what else ""
    message = f"{prefix}{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    if isinstance(exc, FileNotFoundError):
        return Failure(FailureKind.NOT_FOUND, message)
    if isinstance(exc, PermissionError) or exc.errno in _CONFIG_ERRNOS:
        return Failure(FailureKind.CONFIG, message)
    return Failure(FailureKind.TRANSIENT, message)


@dataclass(frozen=True)
class TaskStatus:
    """A task's state and figures (``bytes``/``files``: moved by this run; up-to-date files are skipped)."""

    state: TaskState
    started_at: float
    """Wall-clock (epoch) start."""
    finished_at: float | None = None
    bytes: int = 0
    files: int = 0
    files_skipped: int = 0
    failure: Failure | None = None
    detail: str = ""
    """What the backend says about an active task (e.g. Globus' ``nice_status``)."""

    @property
    def done(self) -> bool:
        return self.state is not TaskState.ACTIVE

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at or time.time()) - self.started_at)

    @property
    def rate(self) -> float:
        """Bytes per second over the task's duration."""
        return self.bytes / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error(self) -> str | None:
        return str(self.failure) if self.failure else None

    @property
    def retryable(self) -> bool:
        return self.failure is not None and self.failure.retryable


# --------------------------------------------------------------------------------------------------
# Handles and backends


class TransferHandle:
    """A started task. ``state`` is what to persist to re-attach after a restart (JSON-able)."""

    def __init__(self, task: TransferTask, state: Mapping[str, Any] | None = None) -> None:
        self.task = task
        self.state: dict[str, Any] = dict(state or {})


class Progress:
    """Counters a worker thread updates while the service polls them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.files = 0
        self.files_skipped = 0

    def add(self, *, nbytes: int = 0, files: int = 0, skipped: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files += files
            self.files_skipped += skipped

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.bytes, self.files, self.files_skipped


Work = Callable[[Progress, threading.Event], None]
"""The body of a threaded task: moves the files, updates the progress, raises :class:`TransferError`."""


class ThreadedHandle(TransferHandle):
    """A task whose work runs in its own (daemon) thread: for the local and rsync backends."""

    def __init__(self, task: TransferTask, work: Work, state: Mapping[str, Any] | None = None) -> None:
        super().__init__(task, state)
        self.progress = Progress()
        self.cancel_event = threading.Event()
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.failure: Failure | None = None
        self._work = work
        self._thread = threading.Thread(target=self._main, name=f"transfer-{task.task_id}", daemon=True)

    def begin(self) -> ThreadedHandle:
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self._work(self.progress, self.cancel_event)
        except TransferError as exc:
            self.failure = exc.failure
        except OSError as exc:
            self.failure = failure_from_oserror(exc)
        except Exception as exc:  # a bug must still end the task, not hang it
            log.exception("transfer_crashed", task_id=self.task.task_id)
            self.failure = Failure(FailureKind.TRANSIENT, f"unexpected {type(exc).__name__}: {exc}")
        if self.failure is None and self.cancel_event.is_set():
            self.failure = Failure(FailureKind.CANCELLED, "cancelled")
        self.finished_at = time.time()
        _log_end(self.task, self.status())

    def status(self) -> TaskStatus:
        nbytes, files, skipped = self.progress.snapshot()
        finished = self.finished_at
        if finished is None:
            state = TaskState.ACTIVE
        else:
            state = TaskState.FAILED if self.failure else TaskState.SUCCEEDED
        return TaskStatus(state, self.started_at, finished, nbytes, files, skipped, self.failure)

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)


def _log_end(task: TransferTask, status: TaskStatus) -> None:
    if status.failure:
        log.warning(
            "transfer_failed",
            task_id=task.task_id,
            direction=task.direction.value,
            location=task.location,
            error=status.error,
        )
    else:
        log.info(
            "transfer_done",
            task_id=task.task_id,
            direction=task.direction.value,
            location=task.location,
            files=status.files,
            bytes=status.bytes,
            files_up_to_date=status.files_skipped,
            duration_s=status.duration_s,
            mb_per_s=status.rate / 1e6,
        )


class TransferBackend(abc.ABC):
    """Moves tasks' files between the site and one location.

    A backend owns the model of its locations' configuration (:attr:`location_model`, one per alias in
    ``site.yml``) and, if it needs site-wide settings shared by those locations, their model
    (:attr:`settings_model`, ``site.yml``'s ``transfer_backends.<kind>``). :meth:`for_site` builds it.
    """

    kind: ClassVar[str]
    location_model: ClassVar[type[InputModel]]
    settings_model: ClassVar[type[BaseModel] | None] = None

    @classmethod
    def for_site(
        cls, location: Any, *, site_root: Path | None = None, settings: Any = None
    ) -> TransferBackend:
        """The backend for one validated location of a site (``settings``: the validated site-wide settings
        of this kind, if it has any)."""
        return cls(location)  # type: ignore[call-arg]

    def prepare(self, task: TransferTask, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The state to persist before :meth:`start` (``previous``: the state of an earlier attempt of
        the same task, if any). :class:`TransferError` when it cannot be had now."""
        return {}

    @abc.abstractmethod
    def start(self, task: TransferTask, state: Mapping[str, Any] | None = None) -> TransferHandle:
        """Begin the task and return at once; failures show in :meth:`poll`."""

    def resume(self, task: TransferTask, saved_state: Mapping[str, Any]) -> TransferHandle:
        """After a restart: re-attach to the task or redo it idempotently."""
        return self.start(task, saved_state)

    @abc.abstractmethod
    def poll(self, handle: TransferHandle) -> TaskStatus:
        """The task's status now."""

    @abc.abstractmethod
    def cancel(self, handle: TransferHandle) -> None:
        """Ask the task to stop (it then polls FAILED with kind ``cancelled``)."""

    def wait(
        self, handle: TransferHandle, timeout_s: float | None = None, interval_s: float = 0.1
    ) -> TaskStatus:
        """Poll until the task is done (or ``timeout_s`` passed: then its last, active status)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.poll(handle)
            if status.done or (deadline is not None and time.monotonic() > deadline):
                return status
            time.sleep(interval_s)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (HTTP sessions…)."""


class ThreadedBackend(TransferBackend):
    """A backend whose tasks run in a thread of this process (:meth:`_run`), polled and cancelled
    through their :class:`ThreadedHandle`."""

    def describe(self, task: TransferTask) -> str:
        """Where the task goes, for the log."""
        return task.location

    def start(self, task: TransferTask, state: Mapping[str, Any] | None = None) -> ThreadedHandle:
        log.info(
            "transfer_running",
            task_id=task.task_id,
            direction=task.direction.value,
            files=len(task.files),
            via=self.describe(task),
        )
        return ThreadedHandle(task, partial(self._run, task), state).begin()

    def poll(self, handle: TransferHandle) -> TaskStatus:
        return expect_handle(handle, ThreadedHandle).status()

    def cancel(self, handle: TransferHandle) -> None:
        expect_handle(handle, ThreadedHandle).cancel_event.set()

    @abc.abstractmethod
    def _run(self, task: TransferTask, progress: Progress, cancel: threading.Event) -> None:
        """Do the task (in its thread), counting into ``progress``; stop soon once ``cancel`` is set.
        Raise :class:`TransferError` (or ``OSError``) to fail it."""


H = TypeVar("H", bound=TransferHandle)


def expect_handle(handle: TransferHandle, cls: type[H]) -> H:
    """``handle`` as the backend's own handle class (``TypeError`` for another backend's)."""
    if not isinstance(handle, cls):
        raise TypeError(f"{type(handle).__name__} is not a {cls.__name__}")
    return handle
