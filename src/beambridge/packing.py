"""Packing jobs on an allocation's nodes: the one best-fit rule.

Three places decide whether jobs fit on nodes, and they must agree, or acquire hands a pilot jobs it
cannot place: the server when a launcher acquires work (``server/dispatch/sessions.py``), the launcher when it
starts a job on its nodes (``launcher/resources.py``) and the site's elastic queue when it sizes a pilot
to the backlog (``site/services/elastic_queue.py``). All three call this module.

The rule, on nodes described by their free fraction (1.0 = wholly free, 0.0 = full):

- a job on several nodes needs that many *wholly free* nodes and takes all of each, lowest indexes first;
- a single-node job needs ``1 / node_packing_count`` of one node and goes to the *fullest* node that still
  has room (best fit; the lowest index among equals), so packed jobs fill nodes instead of fragmenting them.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

EPS = 1e-9
"""Tolerance on free fractions (three jobs packed three to a node must fill it exactly)."""


class Footprint(Protocol):
    """What packing needs to know of a job (a :class:`~beambridge.schemas.jobs.Job` has it)."""

    @property
    def num_nodes(self) -> int: ...
    @property
    def node_packing_count(self) -> int: ...


@dataclass(frozen=True)
class NodeShare:
    """Where a job goes: the indexes of its nodes and the fraction of each it takes."""

    node_indexes: tuple[int, ...]
    fraction: float


def node_fraction(job: Footprint) -> float:
    """The fraction of each of its nodes a job takes: all of each for a multi-node job."""
    return 1.0 if job.num_nodes > 1 else 1.0 / max(1, job.node_packing_count)


def wholly_free(free: float) -> bool:
    """Whether a node with this free fraction holds nothing."""
    return free >= 1.0 - EPS


def choose_nodes(free: Sequence[float], job: Footprint) -> NodeShare | None:
    """Where ``job`` goes on nodes with these free fractions, by the best-fit rule; None if it does not fit."""
    if job.num_nodes > 1:
        whole = [i for i, f in enumerate(free) if wholly_free(f)]
        if len(whole) < job.num_nodes:
            return None
        return NodeShare(tuple(whole[: job.num_nodes]), 1.0)
    need = node_fraction(job)
    best = -1
    for i, f in enumerate(free):
        if f + EPS >= need and (best < 0 or f < free[best]):
            best = i
    return None if best < 0 else NodeShare((best,), need)


def take(free: MutableSequence[float], share: NodeShare) -> None:
    """Subtract a chosen share from the free fractions (never below zero)."""
    for i in share.node_indexes:
        free[i] = max(0.0, free[i] - share.fraction)


def give_back(free: MutableSequence[float], share: NodeShare) -> None:
    """Return a share taken by :func:`take` (never above one)."""
    for i in share.node_indexes:
        free[i] = min(1.0, free[i] + share.fraction)


J = TypeVar("J", bound=Footprint)


def fit_in_order(jobs: Iterable[J], free_nodes: Sequence[float], max_jobs: int) -> list[J]:
    """Take jobs in the order given while they fit on the nodes; a job that does not fit is skipped.

    Free fractions outside [0, 1] are clamped. The result is what a launcher with these free nodes can
    start at once, each job placed by :func:`choose_nodes`.
    """
    free = [min(max(f, 0.0), 1.0) for f in free_nodes]
    chosen: list[J] = []
    for job in jobs:
        if len(chosen) >= max_jobs or not free:
            break
        share = choose_nodes(free, job)
        if share is None:
            continue
        take(free, share)
        chosen.append(job)
    return chosen


def nodes_to_hold(jobs: Iterable[Footprint]) -> int:
    """How many nodes the jobs fill when placed in the order given, a new node added when none fits.

    What a pilot needs to run them all at once, packed exactly as its launcher will pack them.
    """
    free: list[float] = []
    for job in jobs:
        share = choose_nodes(free, job)
        if share is None:
            whole = sum(1 for f in free if wholly_free(f))
            free.extend([1.0] * max(1, job.num_nodes - whole))
            share = choose_nodes(free, job)
            assert share is not None  # a wholly free node, or as many as the job needs, was just added
        take(free, share)
    return len(free)
