"""Batch-scheduler adapters: ``local``, ``slurm``, ``pbs``, ``lsf``."""

from __future__ import annotations

import importlib

from beambridge.platform.commands import CommandRunner
from beambridge.platform.schedulers.base import (
    PilotRequest,
    PilotState,
    PilotStatus,
    Scheduler,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRejected,
)

SCHEDULERS = {
    "local": "beambridge.platform.schedulers.local:LocalScheduler",
    "slurm": "beambridge.platform.schedulers.slurm:SlurmScheduler",
    "pbs": "beambridge.platform.schedulers.pbs:PbsScheduler",
    "lsf": "beambridge.platform.schedulers.lsf:LsfScheduler",
}


def scheduler_class(name: str) -> type[Scheduler]:
    """The adapter class called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        module_name, _, attr = SCHEDULERS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}") from None
    cls: type[Scheduler] = getattr(importlib.import_module(module_name), attr)
    return cls


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
