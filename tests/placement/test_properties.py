"""Properties of placement on random snapshots: never an unavailable site, always explained, repeatable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from beambridge.placement import (
    POLICIES,
    BacklogGroup,
    HealthState,
    Outcome,
    SiteHealth,
    SiteStatus,
    Snapshot,
    place_batch,
)
from tests.placement.builders import APP, job, site

HEALTH = st.sampled_from([HealthState.UP, HealthState.DEGRADED, HealthState.DOWN, HealthState.DRAINING])


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    sites = []
    for i in range(draw(st.integers(1, 6))):
        slots = draw(st.integers(0, 64))
        sites.append(
            site(
                f"s{i}",
                run_s=draw(st.one_of(st.none(), st.floats(1, 5000))),
                slots=slots,
                free=draw(st.integers(0, slots)),
                health=SiteHealth(draw(HEALTH), ("reason",)),
                backlog=(BacklogGroup(APP, draw(st.integers(-2, 2)), draw(st.integers(0, 500))),),
                max_backlog=draw(st.one_of(st.none(), st.integers(0, 600))),
                new_pilot_slots=draw(st.integers(0, 32)),
                locations=frozenset(draw(st.sets(st.sampled_from(["aps", "als"]), max_size=2))),
            )
        )
    return Snapshot(now=draw(st.floats(0, 1e9)), sites=tuple(sites), seed=draw(st.integers(0, 2**32)))


@settings(max_examples=60, deadline=None)
@given(snapshots(), st.sampled_from(sorted(POLICIES)), st.integers(1, 40), st.integers(-1, 1))
def test_placement_respects_every_site_limit(snap: Snapshot, policy: str, count: int, priority: int) -> None:
    jobs = [job(i, priority=priority * (i % 2)) for i in range(count)]
    result = place_batch(jobs, snap, policy)
    assert result == place_batch(jobs, snap, policy)  # same snapshot, same decisions
    assert [d.job for d in result.decisions] == [j.key for j in jobs]
    added = dict.fromkeys(snap.by_name, 0)
    for decision in result.decisions:
        assert {e.site for e in decision.estimates} == set(snap.by_name)
        if decision.outcome is not Outcome.PLACED:
            assert decision.site is None and all(e.reasons for e in decision.estimates)
            continue
        chosen = snap.by_name[decision.site or ""]
        assert chosen.health.state in (HealthState.UP, HealthState.DEGRADED)
        assert "aps" in chosen.locations
        added[chosen.name] += 1
        if chosen.max_backlog is not None:
            assert chosen.backlog_jobs + added[chosen.name] <= chosen.max_backlog
        [mine] = [e for e in decision.estimates if e.status is SiteStatus.CHOSEN]
        assert mine.site == decision.site and mine.finish_s is not None and mine.finish_s >= 0
        assert mine.finish_p95_s is not None and mine.finish_p95_s >= mine.finish_s


@settings(max_examples=80, deadline=None)
@given(
    snapshots(),
    st.sampled_from(sorted(POLICIES)),
    st.lists(
        st.tuples(st.integers(-1, 1), st.sampled_from([1e9, 2e9]), st.booleans()), min_size=1, max_size=60
    ),
)
def test_groups_decide_as_each_job_alone(
    snap: Snapshot, policy: str, shapes: list[tuple[int, float, bool]]
) -> None:
    """Alike jobs placed as a group (one survey of the sites, then only the filled site re-predicted)
    get exactly the decisions each job would get surveyed on its own, exploration and ties included."""
    jobs = [
        job(i, priority=priority, input_bytes={"aps": size}, policy="round_robin" if other else None)
        for i, (priority, size, other) in enumerate(shapes)
    ]
    jobs += [job(f"bulk{i}") for i in range(50)]  # one long run of alike jobs
    grouped = place_batch(jobs, snap, policy)
    each = place_batch(jobs, snap, policy, grouped=False)
    assert grouped.decisions == each.decisions
    assert grouped.round_robin_cursor == each.round_robin_cursor
    assert each.groups == tuple(range(len(jobs)))
    assert grouped.groups[-50:] == (grouped.groups[-50],) * 50  # the alike run went as one group
