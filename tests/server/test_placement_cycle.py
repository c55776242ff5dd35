"""The placement cycle: late binding, jobs waiting for a site, and re-placement away from a site that
went down or is drained — through a real server whose health thresholds are seconds, not minutes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from tests.conftest import ApiUser, make_settings
from tests.server.helpers import acquire, run_to, states
from tests.server.test_placement_service import PARAMS, placement_events
from tests.servers import LiveServer

DOWN_AFTER_S = 2.0


@pytest.fixture
def fast(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on the same database that calls a site down after 2 s without a heartbeat and runs a
    placement cycle every 0.2 s."""
    app: FastAPI = create_app(
        make_settings(
            tmp_path_factory.mktemp("placement"),
            database_url,
            site_degraded_after_s=1.0,
            site_down_after_s=DOWN_AFTER_S,
            placement_interval_s=0.2,
        )
    )
    with LiveServer(app) as server:
        yield server
    app.state.ctx.db.dispose()


def client_of(user: ApiUser, server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=user.http.headers, timeout=30)


def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def job(http: httpx.Client, job_id: int) -> dict[str, Any]:
    return http.get(f"/jobs/{job_id}").json()  # type: ignore[no-any-return]


def test_a_waiting_job_is_bound_once_a_site_takes_work(alice: ApiUser, fast: LiveServer) -> None:
    http = client_of(alice, fast)
    site = alice.site("late")
    alice.app(site["id"], "echo", parameters=PARAMS)
    [created] = alice.jobs([{"app": "echo", "workdir": "w", "parameters": {"n": 1}}])
    assert created["awaiting_placement"]
    time.sleep(0.5)
    assert job(http, created["id"])["awaiting_placement"]  # still down: nothing to do
    http.post(f"/sites/{site['id']}/heartbeat")
    bound = eventually(lambda: not job(http, created["id"])["awaiting_placement"], "binding")
    assert bound
    kinds = [data["placement"] for data in placement_events(alice, created["id"])]
    assert kinds == ["deferred", "placed"]
    session = alice.session(site["id"])
    assert [j["id"] for j in acquire(alice, session["id"], max_jobs=5)] == [created["id"]]


def test_a_child_is_placed_when_its_parents_finish(alice: ApiUser, fast: LiveServer) -> None:
    http = client_of(alice, fast)
    a = alice.site("a")
    b = alice.site("b")
    for site in (a, b):
        alice.app(site["id"], "echo", parameters=PARAMS)
        http.post(f"/sites/{site['id']}/heartbeat")
    [parent] = alice.jobs([{"app": "echo", "sites": ["a"], "workdir": "p", "parameters": {"n": 1}}])
    [child] = alice.jobs(
        [
            {
                "app": "echo",
                "workdir": "c",
                "parameters": {"n": 2},
                "parent_ids": [parent["id"]],
                "policy": "shortest_backlog",
            }
        ]
    )
    assert child["awaiting_placement"] and child["state"] == "AWAITING_PARENTS"
    session = alice.session(a["id"])
    assert [j["id"] for j in acquire(alice, session["id"], max_jobs=5)] == [parent["id"]]
    for site in (a, b):
        http.post(f"/sites/{site['id']}/heartbeat")
    run_to(alice, session["id"], [parent["id"]], "RUN_DONE", return_code=0)
    bound = eventually(
        lambda: (j := job(http, child["id"]))["awaiting_placement"] is False and j, "late binding"
    )
    assert bound["state"] == "PREPROCESSED"
    [data] = placement_events(alice, child["id"])
    assert data["placement"] == "placed" and data["decision"]["policy"] == "shortest_backlog"


def test_unclaimed_jobs_leave_a_site_that_goes_down_and_claimed_ones_stay(
    alice: ApiUser, fast: LiveServer
) -> None:
    http = client_of(alice, fast)
    a = alice.site("a")
    b = alice.site("b")
    for site in (a, b):
        alice.app(site["id"], "echo", parameters=PARAMS)
        http.post(f"/sites/{site['id']}/heartbeat")
    jobs = alice.jobs(
        [
            {
                "app": "echo",
                "sites": ["a", "b"],
                "workdir": f"w/{i}",
                "parameters": {"n": i},
                "policy": "round_robin",
            }
            for i in range(6)
        ]
    )
    at_a = [j["id"] for j in jobs if j["site_id"] == a["id"]]
    assert len(at_a) == 3
    session = alice.session(a["id"])
    [claimed] = acquire(alice, session["id"], max_jobs=1)
    # a keeps silent; b keeps beating
    deadline = time.monotonic() + DOWN_AFTER_S + 5
    while time.monotonic() < deadline:
        http.post(f"/sites/{b['id']}/heartbeat")
        now = states(alice, at_a)
        sites = {j: job(http, j)["site_id"] for j in at_a}
        if sum(1 for s in sites.values() if s == b["id"]) == 2:
            break
        time.sleep(0.2)
    sites = {j: job(http, j)["site_id"] for j in at_a}
    assert sites[claimed["id"]] == a["id"], "a claimed job never moves"
    assert all(sites[j] == b["id"] for j in at_a if j != claimed["id"])
    for moved in (j for j in at_a if j != claimed["id"]):
        kinds = [(d["placement"], d.get("from_site")) for d in placement_events(alice, moved)]
        assert kinds == [("placed", None), ("re-placed", "a")]
        last = placement_events(alice, moved)[-1]["decision"]
        assert any(e["site"] == "a" and e["status"] == "unavailable" for e in last["estimates"])
    # every job still runs exactly once, at b
    other = alice.session(b["id"])
    got = {j["id"] for j in acquire(alice, other["id"], max_jobs=10)}
    assert got == {j["id"] for j in jobs} - {claimed["id"]}
    run_to(alice, other["id"], sorted(got), "RUN_DONE", return_code=0)
    assert set(states(alice, sorted(got)).values()) == {"JOB_FINISHED"}
    assert now is not None
