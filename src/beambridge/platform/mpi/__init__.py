"""MPI launchers: ``mpirun`` (Open MPI), ``mpiexec`` (MPICH / Cray PALS), ``srun`` (Slurm)."""

from __future__ import annotations

from collections.abc import Sequence

from beambridge.platform.mpi.base import LaunchSpec, MpiLauncher
from beambridge.platform.registry import Registry

MPI_LAUNCHERS: Registry[MpiLauncher] = Registry(
    "MPI launcher",
    MpiLauncher,
    {
        "mpirun": "beambridge.platform.mpi.openmpi:OpenMpiLauncher",
        "mpiexec": "beambridge.platform.mpi.mpich:MpichLauncher",
        "srun": "beambridge.platform.mpi.srun:SrunLauncher",
    },
)
"""A new MPI launcher is one module (an :class:`MpiLauncher` subclass) plus one ``register`` line."""


def get_mpi_launcher(name: str, executable: str | None = None, extra_args: Sequence[str] = ()) -> MpiLauncher:
    """The MPI launcher called ``name``; ``ValueError`` naming the known ones otherwise."""
    return MPI_LAUNCHERS.load(name)(executable, extra_args)


__all__ = ["MPI_LAUNCHERS", "LaunchSpec", "MpiLauncher", "get_mpi_launcher"]
