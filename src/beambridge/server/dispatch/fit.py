"""Choosing which runnable jobs fit a launcher's free nodes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_EPS = 1e-9


def fit_jobs(
    candidates: Iterable[Mapping[str, Any]], free_nodes: Sequence[float] | None, max_jobs: int
) -> list[Mapping[str, Any]]:
    """Take candidates in order while they fit.

    A job on several nodes needs that many wholly free nodes. A single-node job needs
    ``1 / node_packing_count`` of one node and goes to the fullest node that still has room (best fit),
    so that packed jobs fill nodes instead of fragmenting them. ``free_nodes`` None: take the first
    ``max_jobs``.
    """
    chosen: list[Mapping[str, Any]] = []
    if free_nodes is None:
        for job in candidates:
            if len(chosen) >= max_jobs:
                break
            chosen.append(job)
        return chosen
    free = [min(max(f, 0.0), 1.0) for f in free_nodes]
    for job in candidates:
        if len(chosen) >= max_jobs or not free:
            break
        if job["num_nodes"] > 1:
            whole = [i for i, f in enumerate(free) if f >= 1.0 - _EPS]
            if len(whole) < job["num_nodes"]:
                continue
            for i in whole[: job["num_nodes"]]:
                free[i] = 0.0
        else:
            need = 1.0 / job["node_packing_count"]
            best = -1
            for i, f in enumerate(free):
                if f + _EPS >= need and (best < 0 or f < free[best]):
                    best = i
            if best < 0:
                continue
            free[best] = max(0.0, free[best] - need)
        chosen.append(job)
    return chosen
