"""MPI launchers: ``mpirun`` (Open MPI), ``mpiexec`` (MPICH / Cray PALS), ``srun`` (Slurm)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from beambridge.platform.mpi.base import LaunchSpec, MpiLauncher

MPI_LAUNCHERS = {
    "mpirun": "beambridge.platform.mpi.openmpi:OpenMpiLauncher",
    "mpiexec": "beambridge.platform.mpi.mpich:MpichLauncher",
    "srun": "beambridge.platform.mpi.srun:SrunLauncher",
}


def get_mpi_launcher(name: str, executable: str | None = None, extra_args: Sequence[str] = ()) -> MpiLauncher:
    """The MPI launcher called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        module_name, _, attr = MPI_LAUNCHERS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown MPI launcher {name!r}; known: {', '.join(MPI_LAUNCHERS)}") from None
    cls: type[MpiLauncher] = getattr(importlib.import_module(module_name), attr)
    return cls(executable, extra_args)


__all__ = ["MPI_LAUNCHERS", "LaunchSpec", "MpiLauncher", "get_mpi_launcher"]
