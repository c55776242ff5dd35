"""MPICH / Cray PALS ``mpiexec``, as on ALCF's Polaris and Aurora."""

from __future__ import annotations

from beambridge.platform.mpi.base import LaunchSpec, MpiLauncher
from beambridge.platform.mpi.openmpi import check_spec, node_counts, rank_environment, total_ranks


class MpichLauncher(MpiLauncher):
    """``mpiexec -n N --ppn RPN --hosts h1,h2 --depth T --cpu-bind depth --env VAR=val … cmd``.

    ``--depth T --cpu-bind depth`` gives each rank T consecutive cores for its threads. GPUs are not bound
    here: on Polaris and Aurora that is the job of an affinity script, which belongs in the command (or
    in ``extra_args``). A host named by several node slots gets the ranks of all of them (``--ppn`` is
    multiplied); the slots must then be spread evenly over the hosts."""

    name = "mpiexec"

    def argv(self, spec: LaunchSpec) -> list[str]:
        """The ``mpiexec`` command line for ``spec``; ``ValueError`` for hosts repeated unevenly."""
        check_spec(spec)
        hosts = node_counts(spec.nodes)
        repeats = {count for _, count in hosts}
        if len(repeats) != 1:
            raise ValueError(f"mpiexec needs the same number of slots on every host, not {dict(hosts)}")
        ppn = spec.ranks_per_node * repeats.pop()
        argv = [self.executable, "-n", str(total_ranks(spec)), "--ppn", str(ppn)]
        argv += ["--hosts", ",".join(host for host, _ in hosts)]
        argv += ["--depth", str(spec.threads_per_rank), "--cpu-bind", "depth"]
        for key, value in rank_environment(spec).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, *self.extra_args, *spec.command]
