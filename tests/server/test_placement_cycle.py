"""The placement cycle: late binding, jobs waiting for a site, and re-placement away from a site that
went down or is drained — through a real server whose health thresholds are seconds, not minutes."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import ApiUser
from tests.server.helpers import acquire, run_to, states
from tests.server.placement_fixtures import DOWN_AFTER_S, PARAMS, TwoSites, eventually
from tests.server.test_placement_service import placement_events
from tests.servers import LiveServer


def job(http: httpx.Client, job_id: int) -> dict[str, Any]:
    return http.get(f"/jobs/{job_id}").json()  # type: ignore[no-any-return]


def test_a_waiting_job_is_bound_once_a_site_takes_work(alice: ApiUser, fast: LiveServer) -> None:
    http = httpx.Client(base_url=fast.url, headers=alice.http.headers, timeout=30)
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


def test_a_child_is_placed_when_its_parents_finish(alice: ApiUser, two_sites: TwoSites) -> None:
    http, a = two_sites.http, two_sites.a
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
    two_sites.beat()
    run_to(alice, session["id"], [parent["id"]], "RUN_DONE", return_code=0)
    bound = eventually(
        lambda: (j := job(http, child["id"]))["awaiting_placement"] is False and j, "late binding"
    )
    assert bound["state"] == "PREPROCESSED"
    # one placement; a loaded machine may first defer it (the sites' heartbeats looked too old)
    events = placement_events(alice, child["id"])
    assert {e["placement"] for e in events[:-1]} <= {"deferred"}, events
    data = events[-1]
    assert data["placement"] == "placed" and data["decision"]["policy"] == "shortest_backlog"


def test_unclaimed_jobs_leave_a_site_that_goes_down_and_claimed_ones_stay(
    alice: ApiUser, two_sites: TwoSites
) -> None:
    http, a, b = two_sites.http, two_sites.a, two_sites.b
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
    # a keeps silent; b keeps beating (a loaded machine may take longer than the health period to move them)
    deadline = time.monotonic() + DOWN_AFTER_S + 30
    with two_sites.beating(b):
        while time.monotonic() < deadline:
            now = states(alice, at_a)
            sites = {j: job(http, j)["site_id"] for j in at_a}
            if sum(1 for s in sites.values() if s == b["id"]) == 2:
                break
            time.sleep(0.2)
        sites = {j: job(http, j)["site_id"] for j in at_a}
    assert sites[claimed["id"]] == a["id"], "a claimed job never moves"
    assert all(sites[j] == b["id"] for j in at_a if j != claimed["id"]), sites
    for moved in (j for j in at_a if j != claimed["id"]):
        kinds = [(d["placement"], d.get("from_site")) for d in placement_events(alice, moved)]
        # placed, then re-placed from a once; a cycle that saw no site to take it first says "not moved"
        assert kinds[0] == ("placed", None) and kinds[-1] == ("re-placed", "a"), kinds
        assert set(kinds[1:-1]) <= {("not moved", None)}, kinds
        last = placement_events(alice, moved)[-1]["decision"]
        assert any(e["site"] == "a" and e["status"] == "unavailable" for e in last["estimates"])
    # every job still runs exactly once, at b
    other = alice.session(b["id"])
    got = {j["id"] for j in acquire(alice, other["id"], max_jobs=10)}
    assert got == {j["id"] for j in jobs} - {claimed["id"]}
    run_to(alice, other["id"], sorted(got), "RUN_DONE", return_code=0)
    assert set(states(alice, sorted(got)).values()) == {"JOB_FINISHED"}
    assert now is not None


def test_a_drained_site_gets_no_new_work_and_its_unclaimed_jobs_move(
    alice: ApiUser, two_sites: TwoSites
) -> None:
    http, a, b = two_sites.http, two_sites.a, two_sites.b
    pair = alice.jobs(
        [
            {"app": "echo", "workdir": f"w/{i}", "parameters": {"n": i}, "policy": "round_robin"}
            for i in range(2)
        ]
    )
    [first] = [j for j in pair if j["site_id"] == a["id"]]
    drained = alice.ok(alice.http.post(f"/sites/{a['id']}/drain", json={"reason": "maintenance Tuesday"}))
    assert drained["drained_at"] is not None and drained["drain_reason"] == "maintenance Tuesday"  # type: ignore[index]
    outlook = {s["name"]: s for s in alice.ok(alice.http.get("/placement/sites"))}  # type: ignore[union-attr]
    assert outlook["a"]["health"] == "draining" and not outlook["a"]["accepts_work"]
    assert "maintenance Tuesday" in outlook["a"]["reasons"][0]
    assert outlook["b"]["health"] == "up" and outlook["b"]["apps"][0]["app"] == "echo"

    def at_b() -> bool:
        http.post(f"/sites/{b['id']}/heartbeat")  # b stays up (this server calls a site down after 2 s)
        return bool(job(http, first["id"])["site_id"] == b["id"])

    assert eventually(at_b, "re-placement after the drain")
    [data] = [d for d in placement_events(alice, first["id"]) if d["placement"] == "re-placed"]
    assert data["from_site"] == "a"
    http.post(f"/sites/{b['id']}/heartbeat")
    later = alice.jobs([{"app": "echo", "workdir": f"w/{i}", "parameters": {"n": i}} for i in range(1, 5)])
    assert {j["site_id"] for j in later} == {b["id"]}
    # only a: nowhere to go, so it waits unbound (never sent to the draining site)
    [waiting] = alice.jobs([{"app": "echo", "sites": ["a"], "workdir": "w/9", "parameters": {"n": 9}}])
    assert waiting["awaiting_placement"]
    alice.ok(alice.http.post(f"/sites/{a['id']}/undrain"))

    def bound() -> bool:
        http.post(f"/sites/{a['id']}/heartbeat")
        return not job(http, waiting["id"])["awaiting_placement"]

    assert eventually(bound, "binding after undrain")
    assert job(http, waiting["id"])["site_id"] == a["id"]


def test_site_groups_choose_the_sites_and_the_policy(alice: ApiUser) -> None:
    sites = {name: alice.site(name) for name in ("a", "b", "c")}
    for site in sites.values():
        alice.app(site["id"], "echo", parameters=PARAMS)
        alice.ok(alice.http.post(f"/sites/{site['id']}/heartbeat"))
    group = alice.ok(
        alice.http.post("/site-groups", json={"name": "fast", "sites": ["a", "b"], "policy": "round_robin"}),
        201,
    )
    assert group["sites"] == ["a", "b"]  # type: ignore[index]
    bad = alice.http.post("/site-groups", json={"name": "x", "sites": ["a", "nowhere"]})
    assert bad.status_code == 422 and "no site named 'nowhere'" in bad.text
    assert alice.http.post("/site-groups", json={"name": "fast", "sites": ["c"]}).status_code == 409
    jobs = alice.jobs(
        [{"app": "echo", "site_group": "fast", "workdir": f"w/{i}", "parameters": {"n": i}} for i in range(4)]
    )
    placed = sorted(j["site_id"] for j in jobs)
    assert placed == sorted([sites["a"]["id"], sites["b"]["id"]] * 2)
    assert placement_events(alice, jobs[0]["id"])[0]["decision"]["policy"] == "round_robin"
    assert [g["name"] for g in alice.ok(alice.http.get("/site-groups"))] == ["fast"]  # type: ignore[union-attr]
    alice.ok(alice.http.delete(f"/site-groups/{group['id']}"), 204)  # type: ignore[index]
    assert alice.ok(alice.http.get("/site-groups")) == []


def test_a_job_that_cannot_be_placed_says_why_again_when_the_reasons_change(
    alice: ApiUser, two_sites: TwoSites
) -> None:
    """Deferred at submission (its only site is down), then its site is drained: a new ``deferred`` event
    names the new reason; cycles in between with nothing new add nothing."""
    a = two_sites.a
    [waiting] = alice.jobs([{"app": "echo", "sites": ["a"], "workdir": "w", "parameters": {"n": 1}}])
    assert not waiting["awaiting_placement"]
    alice.ok(alice.http.post(f"/sites/{a['id']}/drain", json={"reason": "new cooling"}))

    def deferrals() -> list[dict[str, Any]] | None:
        found = [
            d for d in placement_events(alice, waiting["id"]) if d["placement"] in ("deferred", "not moved")
        ]
        return found or None

    [first] = eventually(deferrals, "the first deferral")
    assert first["placement"] == "not moved" and "new cooling" in first["decision"]["reason"]
    time.sleep(1.0)  # five cycles with the same reasons
    assert len(deferrals() or []) == 1
    [late] = alice.jobs([{"app": "echo", "sites": ["a"], "workdir": "w2", "parameters": {"n": 2}}])
    assert late["awaiting_placement"]
    [created] = placement_events(alice, late["id"])
    assert created["placement"] == "deferred" and "draining" in str(created["decision"]["estimates"])
    alice.ok(alice.http.post(f"/sites/{a['id']}/undrain"))  # a falls silent: down instead of draining
    later = eventually(
        lambda: (d := placement_events(alice, late["id"])) and len(d) > 1 and d, "the reason changed", 20
    )
    # The next decision after the first: deferred again with the new reason, or placed while the site still
    # looked alive (a loaded run may already show the one after it: "not moved" once the site is down).
    assert later[1]["placement"] in ("deferred", "placed"), [d["placement"] for d in later]
    if later[1]["placement"] == "deferred":
        assert "no heartbeat" in later[1]["decision"]["reason"]


def test_a_big_bulk_group_moves_off_a_drained_site_and_back_each_job_explained(
    alice: ApiUser, fast: LiveServer
) -> None:
    """1,500 jobs by name placed as one shared group (one placement row, one event) while the other
    site drains; with that backlog waiting the cycle moves every unclaimed job to the other site and back
    again: each job is re-placed exactly once per drain, keeps the parameters it was given (the second
    site's app fills a default the first one's does not take), and its history shows the group's
    decision and then its own re-placements."""
    http = httpx.Client(base_url=fast.url, headers=alice.http.headers, timeout=60)
    a, b = alice.site("a"), alice.site("b")
    alice.app(a["id"], "echo", parameters=PARAMS)
    alice.app(b["id"], "echo", parameters={**PARAMS, "m": {"type": "int", "required": False, "default": 3}})

    def beat() -> None:
        for site in (a, b):
            http.post(f"/sites/{site['id']}/heartbeat").raise_for_status()

    beat()
    alice.ok(alice.http.post(f"/sites/{b['id']}/drain", json={"reason": "maintenance"}))
    specs = [
        {"app": "echo", "sites": ["a", "b"], "workdir": f"w/{i}", "parameters": {"n": i}} for i in range(1500)
    ]
    made = {j["id"]: j for j in alice.jobs(specs)}
    ids = sorted(made)
    assert {j["site_id"] for j in made.values()} == {a["id"]}
    stored = alice.ok(alice.http.get("/events", params={"actor": "placement", "limit": 1000}))
    assert [e["job_id"] for e in stored["items"]] == [ids[0]]  # type: ignore[index]

    def all_at(site: dict[str, Any]) -> bool:
        beat()
        for start in range(0, len(ids), 500):
            page = http.get("/jobs", params={"id": ids[start : start + 500], "limit": 500}).json()["items"]
            if {j["site_id"] for j in page} != {site["id"]}:
                return False
        return True

    alice.ok(alice.http.post(f"/sites/{b['id']}/undrain"))
    alice.ok(alice.http.post(f"/sites/{a['id']}/drain", json={"reason": "maintenance"}))
    assert eventually(lambda: all_at(b), "every job off the drained site", timeout=300)
    assert job(http, ids[5])["parameters"] == {"n": 5, "m": 3}
    alice.ok(alice.http.post(f"/sites/{a['id']}/undrain"))
    alice.ok(alice.http.post(f"/sites/{b['id']}/drain", json={"reason": "maintenance"}))
    assert eventually(lambda: all_at(a), "every job back at the first site", timeout=300)
    for job_id in (ids[0], ids[1], ids[777], ids[-1]):
        # ("not moved" events may come between: this server calls a site down after 2 s of silence)
        history = [d for d in placement_events(alice, job_id) if d["placement"] != "not moved"]
        assert [d["placement"] for d in history] == ["placed", "re-placed", "re-placed"], history
        assert history[0]["decision"]["job"] == job_id and history[0]["decision"]["site"] == "a"
        assert [d["from_site"] for d in history[1:]] == ["a", "b"]
        assert job(http, job_id)["parameters"] == made[job_id]["parameters"]  # the given ones
    http.close()
