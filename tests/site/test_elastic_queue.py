"""The elastic queue against a real server: pilots sized to the backlog, limits, withdrawal."""

from __future__ import annotations

import time

from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.site.services.elastic_queue import ElasticQueue
from tests.site.harness import System


def _pilots(system: System, site_id: int) -> list:
    return sorted(system.client.batch_jobs.filter(site_id=site_id), key=lambda p: p.id)


def test_pilots_follow_the_backlog_within_limits(system: System) -> None:
    _, config = system.make_site(
        "elastic",
        elastic_queue={"max_nodes": 3, "max_total_nodes": 4, "max_queued_jobs": 2, "wall_time_min": 20},
    )
    queue = ElasticQueue(system.client, config)
    app = system.client.apps.create(config.site_id, "work", parameters={})
    queue.tick()
    assert _pilots(system, config.site_id) == []  # no backlog, no pilot

    # 10 jobs packed 4 to a node need 2.5 nodes: one 3-node pilot
    system.client.jobs.bulk_create(
        {"app_id": app.id, "workdir": f"w/{i}", "node_packing_count": 4} for i in range(10)
    )
    queue.tick()
    [first] = _pilots(system, config.site_id)
    assert (first.num_nodes, first.wall_time_min, first.state) == (3, 20, BatchJobState.PENDING_SUBMISSION)
    queue.tick()
    assert len(_pilots(system, config.site_id)) == 1  # the backlog is covered

    # 8 whole-node jobs more: 4.5 nodes wanted, but at most 4 nodes in all → one more 1-node pilot
    system.client.jobs.bulk_create({"app_id": app.id, "workdir": f"big/{i}"} for i in range(8))
    queue.tick()
    pilots = _pilots(system, config.site_id)
    assert [p.num_nodes for p in pilots] == [3, 1]
    queue.tick()
    assert len(_pilots(system, config.site_id)) == 2  # max_total_nodes reached (and max_queued_jobs)

    # the backlog empties: queued pilots the queue asked for are withdrawn, and none are asked for
    for pilot in pilots:
        system.client.batch_jobs.update(pilot.id, state="queued", scheduler_id=f"fake-{pilot.id}")
    system.client.jobs.cancel([j.id for j in system.client.jobs.filter(site_id=config.site_id)])
    queue.tick()
    assert {p.state for p in _pilots(system, config.site_id)} == {BatchJobState.PENDING_DELETION}
    queue.tick()
    assert len(_pilots(system, config.site_id)) == 2


def test_a_pilot_queued_too_long_is_withdrawn(system: System) -> None:
    _, config = system.make_site(
        "impatient", elastic_queue={"max_queue_wait_min": 0.005, "max_queued_jobs": 1}
    )
    queue = ElasticQueue(system.client, config)
    app = system.client.apps.create(config.site_id, "work", parameters={})
    system.client.jobs.bulk_create([{"app_id": app.id, "workdir": "w"}])
    queue.tick()
    [pilot] = _pilots(system, config.site_id)
    system.client.batch_jobs.update(pilot.id, state="queued", scheduler_id="fake-1")
    time.sleep(0.5)
    queue.tick()
    assert _pilots(system, config.site_id)[0].state == BatchJobState.PENDING_DELETION
