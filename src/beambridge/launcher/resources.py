"""The nodes of an allocation and what is free on each: fractions of nodes, CPU ids and GPU ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

_EPS = 1e-9


class Footprint(Protocol):
    """What placement needs to know of a job (a :class:`~beambridge.schemas.jobs.Job` has it)."""

    @property
    def num_nodes(self) -> int: ...
    @property
    def ranks_per_node(self) -> int: ...
    @property
    def gpus_per_rank(self) -> float: ...
    @property
    def node_packing_count(self) -> int: ...


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
        return any(node.free > _EPS for node in self._nodes)

    def idle(self) -> bool:
        """Whether nothing is placed anywhere."""
        return all(node.free >= 1.0 - _EPS for node in self._nodes)

    def place(self, job: Footprint) -> Placement | None:
        """Reserve resources for ``job``; None if it does not fit now."""
        if job.num_nodes > 1:
            whole = [i for i, node in enumerate(self._nodes) if node.free >= 1.0 - _EPS]
            if len(whole) < job.num_nodes:
                return None
            chosen = tuple(whole[: job.num_nodes])
            for i in chosen:
                self._nodes[i].free = 0.0
            return Placement(chosen, 1.0)
        need = 1.0 / job.node_packing_count
        fitting = [i for i, node in enumerate(self._nodes) if node.free + _EPS >= need]
        if not fitting:
            return None
        index = min(fitting, key=lambda i: (self._nodes[i].free, i))  # pack the fullest node that fits
        node = self._nodes[index]
        node.free -= need
        n_cpus = max(1, self.cores_per_node // job.node_packing_count)
        cpus = tuple(node.free_cpus[:n_cpus])
        del node.free_cpus[: len(cpus)]
        n_gpus = int(job.gpus_per_rank * job.ranks_per_node + 0.999)
        gpus = tuple(node.free_gpus[:n_gpus])
        del node.free_gpus[: len(gpus)]
        return Placement((index,), need, cpus, gpus)

    def release(self, placement: Placement) -> None:
        """Give back what :meth:`place` reserved."""
        for i in placement.node_indexes:
            node = self._nodes[i]
            node.free = min(1.0, node.free + placement.fraction)
            if len(placement.node_indexes) == 1:
                node.free_cpus = sorted([*node.free_cpus, *placement.cpu_ids])
                node.free_gpus = sorted([*node.free_gpus, *placement.gpu_ids])
