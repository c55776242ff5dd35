"""The nodes of an allocation and what is free on each: fractions of nodes, CPU ids and GPU ids.

Which node a job goes to is :mod:`beambridge.packing`'s rule, the one acquire used to hand out the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from beambridge import packing


class Footprint(packing.Footprint, Protocol):
    """What placement needs to know of a job (a :class:`~beambridge.schemas.jobs.Job` has it)."""

    @property
    def ranks_per_node(self) -> int: ...
    @property
    def gpus_per_rank(self) -> float: ...


@dataclass(frozen=True)
class Placement:
    """Where a job runs: node indexes, the fraction of each it holds, and its CPU and GPU ids."""

    node_indexes: tuple[int, ...]
    fraction: float
    cpu_ids: tuple[int, ...] = ()
    gpu_ids: tuple[int, ...] = ()


@dataclass
class _Node:
    name: str
    free: float = 1.0
    free_cpus: list[int] = field(default_factory=list)
    free_gpus: list[int] = field(default_factory=list)


class NodePool:
    """Free resources of the allocation's nodes. Not thread-safe: the launcher guards it with a lock."""

    def __init__(self, nodes: Sequence[str], cores_per_node: int, gpus_per_node: int = 0) -> None:
        if not nodes:
            raise ValueError("an allocation needs at least one node")
        self.cores_per_node = cores_per_node
        self.gpus_per_node = gpus_per_node
        self._nodes = [
            _Node(name, 1.0, list(range(cores_per_node)), list(range(gpus_per_node))) for name in nodes
        ]

    @property
    def names(self) -> list[str]:
        return [node.name for node in self._nodes]

    def __len__(self) -> int:
        return len(self._nodes)

    def free_fractions(self) -> list[float]:
        """The free fraction of each node (what acquire is told)."""
        return [round(node.free, 9) for node in self._nodes]

    def has_room(self) -> bool:
        """Whether any node has anything free."""
        return any(node.free > packing.EPS for node in self._nodes)

    def idle(self) -> bool:
        """Whether nothing is placed anywhere."""
        return all(packing.wholly_free(node.free) for node in self._nodes)

    def place(self, job: Footprint) -> Placement | None:
        """Reserve resources for ``job``; None if it does not fit now."""
        share = packing.choose_nodes([node.free for node in self._nodes], job)
        if share is None:
            return None
        for i in share.node_indexes:
            self._nodes[i].free = max(0.0, self._nodes[i].free - share.fraction)
        if len(share.node_indexes) > 1:
            return Placement(share.node_indexes, share.fraction)
        node = self._nodes[share.node_indexes[0]]
        n_cpus = max(1, self.cores_per_node // job.node_packing_count)
        cpus = tuple(node.free_cpus[:n_cpus])
        del node.free_cpus[: len(cpus)]
        n_gpus = int(job.gpus_per_rank * job.ranks_per_node + 0.999)
        gpus = tuple(node.free_gpus[:n_gpus])
        del node.free_gpus[: len(gpus)]
        return Placement(share.node_indexes, share.fraction, cpus, gpus)

    def release(self, placement: Placement) -> None:
        """Give back what :meth:`place` reserved."""
        for i in placement.node_indexes:
            node = self._nodes[i]
            node.free = min(1.0, node.free + placement.fraction)
            if len(placement.node_indexes) == 1:
                node.free_cpus = sorted([*node.free_cpus, *placement.cpu_ids])
                node.free_gpus = sorted([*node.free_gpus, *placement.gpu_ids])
