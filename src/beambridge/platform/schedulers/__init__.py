"""Batch-scheduler adapters: ``local``, ``slurm``, ``pbs``, ``lsf``.

Each adapter is one module holding its :class:`Scheduler` subclass, its state translation table (the
scheduler's words → :class:`PilotState`) and its command lines; :data:`SCHEDULERS` names them. A new
scheduler is one module plus one ``SCHEDULERS.register`` line.
"""

from __future__ import annotations

from beambridge.platform.commands import CommandRunner
from beambridge.platform.registry import Registry
from beambridge.platform.schedulers.base import (
    PilotRequest,
    PilotState,
    PilotStatus,
    Scheduler,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
)

SCHEDULERS: Registry[Scheduler] = Registry(
    "scheduler",
    Scheduler,
    {
        "local": "beambridge.platform.schedulers.local:LocalScheduler",
        "slurm": "beambridge.platform.schedulers.slurm:SlurmScheduler",
        "pbs": "beambridge.platform.schedulers.pbs:PbsScheduler",
        "lsf": "beambridge.platform.schedulers.lsf:LsfScheduler",
    },
)


def scheduler_class(name: str) -> type[Scheduler]:
    """The adapter class called ``name``; ``ValueError`` naming the known ones otherwise."""
    return SCHEDULERS.load(name)


def get_scheduler(name: str, runner: CommandRunner | None = None) -> Scheduler:
    """An adapter instance for the scheduler called ``name``."""
    return scheduler_class(name)(runner)


__all__ = [
    "SCHEDULERS",
    "PilotRequest",
    "PilotState",
    "PilotStatus",
    "Scheduler",
    "SchedulerError",
    "SchedulerUnavailable",
    "SubmitRejected",
    "get_scheduler",
    "scheduler_class",
]
