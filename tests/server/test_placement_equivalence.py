"""One policy code, two worlds: on the same snapshot, the service decides exactly what the simulator's
placement call (``place_batch``, as ``placement/simulator/engine.py`` makes it) decides."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.placement import Decision, JobRequest, place_batch
from beambridge.schemas.placement import PlacementDecision
from beambridge.server.context import utcnow
from beambridge.server.db.tables import jobs
from tests.conftest import ApiUser
from tests.server.helpers import acquire, run_to
from tests.server.test_placement_service import live_site, placement_events


def test_the_service_and_the_simulator_decide_alike_on_one_snapshot(
    alice: ApiUser, server_app: FastAPI
) -> None:
    sites = {name: live_site(alice, name) for name in ("a", "b", "c")}
    # history: three runs of echo at a, and a launcher there with a free slot
    warm = alice.jobs(
        [{"app": "echo", "sites": ["a"], "workdir": f"h/{i}", "parameters": {"n": i}} for i in range(3)]
    )
    session = alice.session(sites["a"]["id"])
    ids = [j["id"] for j in acquire(alice, session["id"], max_jobs=3)]
    assert sorted(ids) == sorted(j["id"] for j in warm)
    run_to(alice, session["id"], ids, "RUN_DONE", return_code=0)

    ctx = server_app.state.ctx
    with ctx.db.read() as conn:
        owner_id = conn.execute(sa.select(jobs.c.owner_id).where(jobs.c.id == warm[0]["id"])).scalar_one()
        snap = ctx.placement.snapshot(conn, owner_id, utcnow())
    specs = [{"app": "echo", "workdir": f"w/{i}", "parameters": {"n": i}} for i in range(12)]
    created = alice.jobs(specs)
    requests = [JobRequest(key=i, app="echo", parameters={"n": i}) for i in range(12)]
    expected = place_batch(requests, snap.snapshot, "fastest_finish").decisions
    names = {site["id"]: name for name, site in sites.items()}
    first = created[0]["id"]
    # the twelve alike jobs were placed as one group, written as one event: the first job's decision
    # with every site's estimate, and per site its jobs and the estimates of the first and last of them
    [event] = placement_events(alice, first)
    recorded = PlacementDecision.model_validate(event["decision"]).model_dump(mode="json")
    group = recorded.pop("group")
    assert group["jobs"] == 12 and group["first_job"] == first
    simulated = decision_dict(expected[0])
    assert {k: v for k, v in recorded.items() if k not in ("at", "job")} == simulated
    for entry in group["sites"]:
        mine = [(job, d) for job, d in zip(created, expected, strict=True) if d.site == entry["site"]]
        assert [j["id"] for j, _ in mine] == [i for a, b in entry["ids"] for i in range(a, b + 1)]
        chosen = [next(e for e in decision_dict(d)["estimates"] if e["status"] == "chosen") for _, d in mine]
        assert (entry["first"], entry["last"]) == (chosen[0], chosen[-1])
    for job, decision in zip(created, expected, strict=True):
        assert names[job["site_id"]] == decision.site
        [data] = placement_events(alice, job["id"])
        assert data["decision"]["site"] == decision.site
    assert {d.site for d in expected} >= {"a"}  # the measured, idle site takes work


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A decision as the API shows it (defaults filled in), without its time and job."""
    shown = PlacementDecision.model_validate(decision.to_dict()).model_dump(mode="json")
    return {k: v for k, v in shown.items() if k not in ("at", "job", "group")}
