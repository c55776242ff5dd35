"""The one best-fit rule (beambridge.packing) and its three users agree: what acquire hands a launcher, the
launcher can place; what the elastic queue asks for holds the backlog; nothing is ever oversubscribed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from beambridge import packing
from beambridge.launcher.resources import NodePool
from beambridge.site.services.elastic_queue import node_demand


@dataclass(frozen=True)
class Need:
    num_nodes: int = 1
    node_packing_count: int = 1
    ranks_per_node: int = 1
    gpus_per_rank: float = 0


NEEDS = st.builds(
    Need,
    num_nodes=st.one_of(st.just(1), st.just(1), st.integers(1, 4)),
    node_packing_count=st.sampled_from([1, 2, 3, 4, 6, 7, 8, 16]),
)
JOBS = st.lists(NEEDS, max_size=40)
NODES = st.integers(1, 8)


def _pool(n: int) -> NodePool:
    return NodePool([f"n{i}" for i in range(n)], cores_per_node=16, gpus_per_node=4)


@settings(deadline=None)
@given(n=NODES, running=JOBS, candidates=JOBS, max_jobs=st.integers(1, 50))
def test_what_acquire_hands_out_the_launcher_can_place(
    n: int, running: list[Need], candidates: list[Need], max_jobs: int
) -> None:
    """The server fits candidates to the launcher's free fractions; the launcher places every one."""
    pool = _pool(n)
    for job in running:
        pool.place(job)
    chosen = packing.fit_in_order(candidates, pool.free_fractions(), max_jobs)
    assert len(chosen) <= max_jobs
    for job in chosen:
        assert pool.place(job) is not None, f"acquire handed out {job} that the launcher cannot place"


@settings(deadline=None)
@given(n=NODES, jobs=JOBS, data=st.data())
def test_nodes_are_never_oversubscribed_and_releases_restore_them(
    n: int, jobs: list[Need], data: st.DataObject
) -> None:
    pool = _pool(n)
    held = []
    for job in jobs:
        placement = pool.place(job)
        if placement is not None:
            held.append(placement)
            assert len(set(placement.node_indexes)) == len(placement.node_indexes) == job.num_nodes
        used = [0.0] * n
        for p in held:
            for i in p.node_indexes:
                used[i] += p.fraction
        assert all(u <= 1.0 + 1e-6 for u in used)
        assert all(
            math.isclose(f, 1.0 - u, abs_tol=1e-6) for f, u in zip(pool.free_fractions(), used, strict=True)
        )
        cpus = [c for p in held for c in p.cpu_ids if p.node_indexes == (0,)]
        assert len(cpus) == len(set(cpus))
        if held and data.draw(st.booleans()):
            pool.release(held.pop(data.draw(st.integers(0, len(held) - 1))))
    for p in held:
        pool.release(p)
    assert pool.idle()


@given(free=st.lists(st.floats(0, 1), min_size=1, max_size=10), job=NEEDS)
def test_a_single_node_job_goes_to_the_fullest_node_with_room(free: list[float], job: Need) -> None:
    share = packing.choose_nodes(free, job)
    if job.num_nodes > 1:
        whole = [i for i, f in enumerate(free) if packing.wholly_free(f)]
        assert (share is None) == (len(whole) < job.num_nodes)
        assert share is None or share.node_indexes == tuple(whole[: job.num_nodes])
        return
    need = 1.0 / job.node_packing_count
    room = [i for i, f in enumerate(free) if f + packing.EPS >= need]
    if not room:
        assert share is None
        return
    assert share is not None and share.fraction == need
    assert share.node_indexes == (min(room, key=lambda i: (free[i], i)),)


@settings(deadline=None)
@given(jobs=JOBS)
def test_nodes_to_hold_is_the_fewest_nodes_on_which_the_rule_places_every_job(jobs: list[Need]) -> None:
    n = packing.nodes_to_hold(jobs)
    assert packing.fit_in_order(jobs, [1.0] * n, len(jobs) + 1) == jobs
    if jobs:
        assert packing.fit_in_order(jobs, [1.0] * (n - 1), len(jobs) + 1) != jobs
    lower = sum(packing.node_fraction(j) * j.num_nodes for j in jobs)
    assert n >= math.ceil(lower - 1e-6)


def test_three_jobs_packed_three_to_a_node_fill_it_exactly() -> None:
    thirds = [Need(node_packing_count=3)] * 3
    assert packing.nodes_to_hold(thirds) == 1
    assert packing.fit_in_order([*thirds, Need(node_packing_count=3)], [1.0], 10) == thirds


def test_the_elastic_queue_asks_for_the_nodes_a_launcher_would_fill() -> None:
    # halves and thirds alternating: their mean footprint says 5/12 node per job, but packed as a launcher
    # packs them (best fit, in order) 12 jobs fill 6 nodes, not 5
    jobs = [Need(node_packing_count=2), Need(node_packing_count=3)] * 6
    assert packing.nodes_to_hold(jobs) == 6
    assert node_demand(jobs, len(jobs)) == 6
    # a sample stands for the whole backlog
    assert node_demand(jobs, 10 * len(jobs)) == 60
    assert node_demand([], 0) == 0.0
