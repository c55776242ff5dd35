"""What every batch-scheduler adapter offers the site agent and the launcher.

An adapter turns a :class:`PilotRequest` into a submission, answers what the scheduler *definitely*
knows about the pilots it submitted (:meth:`Scheduler.statuses`), cancels them, and tells a launcher
inside an allocation which nodes it holds (:meth:`Scheduler.allocation_nodes`).

The rule for a misbehaving scheduler: a slow, failing or garbled command raises
:class:`SchedulerUnavailable` (the caller retries later and changes nothing); only a definite answer
changes a pilot's state. A pilot the scheduler says it has never heard of, or has forgotten, is reported
as :attr:`PilotState.FINISHED` with ``reason="unknown to the scheduler"`` only when the scheduler said so
in words (e.g. Slurm's "Invalid job id specified"), never because a command failed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from beambridge.platform.commands import CommandResult, CommandRunner, CommandTimeout

UNKNOWN_REASON = "unknown to the scheduler"
"""The reason of a pilot the scheduler said, in words, it does not know (or no longer knows)."""


class SchedulerError(Exception):
    """Base of the scheduler errors; the message names the command and what it printed."""


class SchedulerUnavailable(SchedulerError):
    """The scheduler gave no definite answer (timeout, non-zero exit without a known meaning, garbled
    output). Retry later; change nothing."""


class SubmitRejected(SchedulerError):
    """The scheduler definitely refused the submission (unknown queue, bad account, over limits)."""


class PilotState(StrEnum):
    """A pilot's state as far as the scheduler says."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True)
class PilotRequest:
    """One pilot allocation to submit: the script to run and what to ask the scheduler for."""

    script: Path
    job_name: str
    num_nodes: int
    wall_time_min: int
    workdir: Path
    project: str = ""
    queue: str = ""
    optional_params: Mapping[str, str] = field(default_factory=dict)
    """Extra scheduler options, ``{"filesystems": "home:eagle"}`` → the adapter's own syntax."""
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PilotStatus:
    """What the scheduler definitely said about one pilot."""

    scheduler_id: str
    state: PilotState
    reason: str = ""
    """The scheduler's own word for the state (``PENDING``, ``COMPLETED``, ``TIMEOUT``, ``Q``…)."""
    exit_code: int | None = None
    nodes: tuple[str, ...] = ()
    start_time: datetime | None = None
    end_time: datetime | None = None


class Scheduler(abc.ABC):
    """A batch scheduler, driven through its command-line tools."""

    name: ClassVar[str]

    def __init__(self, runner: CommandRunner | None = None) -> None:
        self.runner = runner or CommandRunner()

    @classmethod
    def for_site(cls, site_root: Path) -> Scheduler:
        """The adapter as a site's agent uses it; one that keeps records of its own keeps them under
        ``site_root``."""
        return cls()

    def _run(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> CommandResult:
        """Run a scheduler command; no answer at all (timeout, not installed) → :class:`SchedulerUnavailable`."""
        try:
            return self.runner.run(argv, env=env)
        except CommandTimeout as exc:
            raise SchedulerUnavailable(str(exc)) from exc
        except OSError as exc:
            raise SchedulerUnavailable(f"`{argv[0]}` could not be run: {exc}") from exc

    @abc.abstractmethod
    def submit(self, request: PilotRequest) -> str:
        """Submit the pilot; its scheduler id. :class:`SubmitRejected` or :class:`SchedulerUnavailable`."""

    @abc.abstractmethod
    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """Definite statuses of these pilots. An id missing from the answer: nothing definite is known."""

    @abc.abstractmethod
    def cancel(self, scheduler_id: str) -> None:
        """Ask the scheduler to end the pilot (already finished or unknown is not an error)."""

    def find_by_name(self, job_name: str) -> list[str]:
        """Scheduler ids of live pilots named ``job_name`` (to re-attach after a crash mid-submit).
        Adapters that cannot ask return an empty list."""
        return []

    @staticmethod
    @abc.abstractmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        """Inside an allocation: its node host names, from the environment the scheduler set (None when
        not inside one of this scheduler's allocations)."""
