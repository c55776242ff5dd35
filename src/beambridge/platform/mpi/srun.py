"""Slurm's ``srun``, run inside the pilot's allocation."""

from __future__ import annotations

from beambridge.platform.mpi.base import LaunchSpec, MpiLauncher
from beambridge.platform.mpi.openmpi import check_spec, node_counts, rank_environment, total_ranks


class SrunLauncher(MpiLauncher):
    """``srun -N NODES -n N --ntasks-per-node RPN --cpus-per-task T --nodelist h1,h2 --overlap
    --export=ALL,VAR=val [--gpus-per-task G] … cmd``.

    ``--overlap`` lets several job steps share the allocation's nodes (the pilot packs jobs). Slurm splits
    ``--export`` at commas, so a variable whose value holds a comma is passed by ``env VAR=val`` in front
    of the command instead. ``--gpus-per-task`` is given for whole GPU counts only (a fraction of a GPU per
    rank cannot be asked of Slurm). A host named by several node slots gets the ranks of all of them."""

    name = "srun"

    def argv(self, spec: LaunchSpec) -> list[str]:
        """The ``srun`` command line for ``spec``; ``ValueError`` for hosts repeated unevenly."""
        check_spec(spec)
        hosts = node_counts(spec.nodes)
        repeats = {count for _, count in hosts}
        if len(repeats) != 1:
            raise ValueError(f"srun needs the same number of slots on every host, not {dict(hosts)}")
        per_node = spec.ranks_per_node * repeats.pop()
        argv = [self.executable, "-N", str(len(hosts)), "-n", str(total_ranks(spec))]
        argv += ["--ntasks-per-node", str(per_node), "--cpus-per-task", str(spec.threads_per_rank)]
        argv += ["--nodelist", ",".join(host for host, _ in hosts), "--overlap"]
        exported: list[str] = []
        prefixed: list[str] = []
        for key, value in rank_environment(spec).items():
            (prefixed if "," in value else exported).append(f"{key}={value}")
        argv.append(",".join(["--export=ALL", *exported]))
        if spec.gpus_per_rank > 0 and float(spec.gpus_per_rank).is_integer():
            argv += ["--gpus-per-task", str(int(spec.gpus_per_rank))]
        command = ["env", *prefixed, *spec.command] if prefixed else list(spec.command)
        return [*argv, *self.extra_args, *command]
