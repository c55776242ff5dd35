"""Whether an MPI launcher started this process as one of several ranks: read from the launcher's
variables, importing nothing heavy (the console script asks before it decides where ``xpcs corr`` runs:
a warm worker is one process, never a rank of the job)."""

from __future__ import annotations

import os
from collections.abc import Mapping

SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "PALS_SIZE")
"""Variables through which MPI launchers (Open MPI's mpirun, MPICH/Hydra, PMIx, PALS) tell a process
how many ranks its job has, read before MPI is initialised."""


def launched_ranks(environ: Mapping[str, str] = os.environ) -> int:
    """How many ranks the launcher that started this process says the job has (1 if none)."""
    for name in SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    if ("PMIX_RANK" in environ or "PMI_RANK" in environ) and environ.get(
        "SLURM_STEP_NUM_TASKS", ""
    ).isdigit():
        return int(environ["SLURM_STEP_NUM_TASKS"])  # srun --mpi=pmix
    return 1


def launched_by_mpi(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an MPI launcher started this process, even as the only rank of its job."""
    return any(name in environ for name in SIZE_VARIABLES) or launched_ranks(environ) > 1


RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "PALS_RANKID", "SLURM_PROCID")
"""Variables through which MPI launchers tell a process its rank."""


def launched_rank(environ: Mapping[str, str] = os.environ) -> int:
    """This process's rank as its launcher says (0 if none): to keep rank 0 alone talking to a terminal
    before MPI is even started."""
    for name in RANK_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0
