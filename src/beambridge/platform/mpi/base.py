"""How a launcher starts one job's processes on nodes of its allocation.

An :class:`MpiLauncher` builds the argv that runs ``command`` with ``ranks_per_node`` ranks on each of
``nodes`` (Open MPI's ``mpirun``, MPICH/PALS ``mpiexec``, Slurm's ``srun``). The launcher also uses it, with
one rank, to start a serial job on a node other than its own.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class LaunchSpec:
    """One job's placement: which nodes, how many ranks and threads, which GPUs."""

    command: Sequence[str]
    nodes: Sequence[str]
    ranks_per_node: int = 1
    threads_per_rank: int = 1
    gpus_per_rank: float = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    """Variables the ranks must see (exported through the launcher's own flags where needed)."""


class MpiLauncher(abc.ABC):
    """Builds the command line of one MPI launch."""

    name: ClassVar[str]

    def __init__(self, executable: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.executable = executable or self.name
        self.extra_args = tuple(extra_args)

    @abc.abstractmethod
    def argv(self, spec: LaunchSpec) -> list[str]:
        """The full argv that runs ``spec.command`` as described."""
