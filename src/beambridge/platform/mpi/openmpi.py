"""Open MPI's ``mpirun``; also the helpers the other launchers share (grouping node slots, rank environment).

Node lists may repeat a host name (the ``local`` scheduler gives every node slot the name ``localhost``):
repeated names are merged into one host with the slots of all its entries, so ``["localhost"] * 2`` with two
ranks per node is ``--host localhost:4``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from beambridge.platform.mpi.base import LaunchSpec, MpiLauncher


def check_spec(spec: LaunchSpec) -> None:
    """``ValueError`` unless the spec names a command, at least one node, and positive rank/thread counts."""
    if not spec.command:
        raise ValueError("the launch has no command")
    if not spec.nodes:
        raise ValueError("the launch has no nodes")
    if spec.ranks_per_node < 1:
        raise ValueError(f"ranks_per_node must be at least 1, not {spec.ranks_per_node}")
    if spec.threads_per_rank < 1:
        raise ValueError(f"threads_per_rank must be at least 1, not {spec.threads_per_rank}")
    if spec.gpus_per_rank < 0:
        raise ValueError(f"gpus_per_rank must not be negative, not {spec.gpus_per_rank}")


def node_counts(nodes: Sequence[str]) -> list[tuple[str, int]]:
    """Each distinct host name with how many entries of ``nodes`` name it, in first-seen order."""
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node] = counts.get(node, 0) + 1
    return list(counts.items())


def rank_environment(spec: LaunchSpec) -> dict[str, str]:
    """The variables every rank must see: ``OMP_NUM_THREADS`` (unless the spec sets it) and the spec's."""
    return {"OMP_NUM_THREADS": str(spec.threads_per_rank), **spec.environment}


def total_ranks(spec: LaunchSpec) -> int:
    """Ranks of the whole launch: ranks per node times node slots."""
    return spec.ranks_per_node * len(spec.nodes)


class OpenMpiLauncher(MpiLauncher):
    """``mpirun -n N --map-by ppr:RPN:node --host h1:RPN,… --bind-to none --oversubscribe -x VAR=val … cmd``.

    ``--oversubscribe`` lets more ranks than cores run (small nodes, laptops); ``--bind-to none`` leaves the
    threads of a rank free to use the cores the node has. As root, ``--allow-run-as-root`` is added (by
    default when this process runs as root; ``allow_run_as_root`` decides otherwise)."""

    name = "mpirun"

    def __init__(
        self,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        allow_run_as_root: bool | None = None,
    ) -> None:
        super().__init__(executable, extra_args)
        self.allow_run_as_root = os.geteuid() == 0 if allow_run_as_root is None else allow_run_as_root

    def argv(self, spec: LaunchSpec) -> list[str]:
        """The ``mpirun`` command line for ``spec``."""
        check_spec(spec)
        rpn = spec.ranks_per_node
        hosts = node_counts(spec.nodes)
        if all(count == 1 for _, count in hosts):
            mapping = ["--map-by", f"ppr:{rpn}:node"]
        else:
            # A repeated host holds the slots of all its entries; fill hosts slot by slot.
            mapping = ["--map-by", "slot"]
        argv = [self.executable, "-n", str(total_ranks(spec)), *mapping]
        argv += ["--host", ",".join(f"{host}:{rpn * count}" for host, count in hosts)]
        argv += ["--bind-to", "none", "--oversubscribe"]
        if self.allow_run_as_root:
            argv.append("--allow-run-as-root")
        for key, value in rank_environment(spec).items():
            argv += ["-x", f"{key}={value}"]
        return [*argv, *self.extra_args, *spec.command]
