"""Jobs that name an app and a set of sites, placed by the service (through the real HTTP API)."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiUser

PARAMS = {"n": {"type": "int"}}


def live_site(user: ApiUser, name: str, *, app: str = "echo", **app_fields: Any) -> dict[str, Any]:
    """A site whose agent has just sent a heartbeat, with ``app`` registered."""
    site = user.site(name)
    user.ok(user.http.post(f"/sites/{site['id']}/heartbeat"))
    user.app(site["id"], app, parameters=PARAMS, **app_fields)
    return site


def placement_events(user: ApiUser, job_id: int) -> list[dict[str, Any]]:
    events = user.ok(user.http.get(f"/jobs/{job_id}/events"))
    return [e["data"] for e in events if "placement" in e["data"]]  # type: ignore[union-attr]


def test_job_by_app_name_is_placed_on_one_of_its_sites_with_the_decision_recorded(alice: ApiUser) -> None:
    a, b = live_site(alice, "alpha"), live_site(alice, "beta")
    spec = {"app": "echo", "sites": ["alpha", "beta"], "workdir": "w/1", "parameters": {"n": 1}}
    [job] = alice.jobs([spec])
    assert job["site_id"] in (a["id"], b["id"]) and job["awaiting_placement"] is False
    assert job["state"] == "PREPROCESSED" and job["parameters"] == {"n": 1}
    [data] = placement_events(alice, job["id"])
    decision = data["decision"]
    assert data["placement"] == "placed" and decision["policy"] == "fastest_finish"
    assert decision["outcome"] == "placed"
    assert {e["site"]: e["status"] for e in decision["estimates"]} == {
        "alpha": "chosen" if job["site_id"] == a["id"] else "candidate",
        "beta": "chosen" if job["site_id"] == b["id"] else "candidate",
    }
    chosen = next(e for e in decision["estimates"] if e["status"] == "chosen")
    assert chosen["finish_s"] > 0 and chosen["run_basis"] == "prior"


def test_round_robin_spreads_a_batch_and_the_app_is_the_chosen_sites(alice: ApiUser) -> None:
    a, b = live_site(alice, "alpha"), live_site(alice, "beta")
    apps = {app["site_id"]: app["id"] for app in alice.ok(alice.http.get("/apps"))["items"]}  # type: ignore[index]
    specs = [
        {
            "app": "echo",
            "sites": ["alpha", "beta"],
            "workdir": f"w/{i}",
            "parameters": {"n": i},
            "policy": "round_robin",
        }
        for i in range(10)
    ]
    jobs = alice.jobs(specs)
    counts = {a["id"]: 0, b["id"]: 0}
    for job in jobs:
        counts[job["site_id"]] += 1
        assert job["app_id"] == apps[job["site_id"]]
    assert counts == {a["id"]: 5, b["id"]: 5}
    assert placement_events(alice, jobs[0]["id"])[0]["decision"]["policy"] == "round_robin"


def test_only_eligible_sites_get_the_job(alice: ApiUser) -> None:
    live_site(alice, "alpha")
    b = alice.site("beta")
    alice.ok(alice.http.post(f"/sites/{b['id']}/heartbeat"))
    alice.app(b["id"], "echo", parameters={"n": {"type": "int"}, "q": {"type": "str"}})  # q required there
    c = live_site(alice, "gamma", app="other")
    jobs = alice.jobs(
        [{"app": "echo", "workdir": f"w/{i}", "parameters": {"n": i, "q": "x"}} for i in range(4)]
    )
    assert {job["site_id"] for job in jobs} == {b["id"]}  # alpha has no 'q', gamma no 'echo'
    estimates = placement_events(alice, jobs[0]["id"])[0]["decision"]["estimates"]
    reasons = {e["site"]: e["reasons"] for e in estimates if e["status"] == "ineligible"}
    assert "unknown parameter 'q'" in reasons["alpha"][0]
    assert "app 'echo' is not registered at site 'gamma'" in reasons["gamma"][0]
    assert c["id"] not in {job["site_id"] for job in jobs}


def test_a_job_no_site_can_run_is_refused_naming_each_site(alice: ApiUser) -> None:
    live_site(alice, "alpha", app="other")
    live_site(alice, "beta")
    good = {"app": "echo", "sites": ["alpha", "beta"], "workdir": "ok", "parameters": {"n": 1}}
    bad = {"app": "echo", "sites": ["alpha", "beta", "nowhere"], "workdir": "w", "parameters": {"n": "x"}}
    response = alice.http.post("/jobs", json=[good, bad])
    assert response.status_code == 422, response.text
    text = response.text
    assert "[1]: no site can run this job" in text
    assert "alpha: app 'echo' is not registered at site 'alpha'" in text
    assert "beta: parameter 'n' must be int" in text
    assert "nowhere: no site named 'nowhere'" in text
    assert alice.ok(alice.http.get("/jobs/count")) == {"count": 0}  # all or none


def test_bad_placement_requests_are_refused_clearly(alice: ApiUser) -> None:
    site = live_site(alice, "alpha")
    app_id = alice.ok(alice.http.get("/apps"))["items"][0]["id"]  # type: ignore[index]
    cases = [
        ({"workdir": "w"}, "give either app_id"),
        ({"app_id": app_id, "app": "echo", "workdir": "w"}, "give either app_id"),
        ({"app_id": app_id, "sites": ["alpha"], "workdir": "w"}, "go with app"),
        ({"app": "echo", "sites": ["alpha"], "site_group": "g", "workdir": "w"}, "not both"),
        ({"app": "echo", "sites": ["alpha", "alpha"], "workdir": "w"}, "twice"),
        ({"app": "echo", "sites": [], "workdir": "w"}, "at least 1"),
        ({"app": "echo", "policy": "fastest", "workdir": "w"}, "fastest_finish"),
        ({"app": "echo", "site_group": "nogroup", "workdir": "w", "parameters": {"n": 1}}, "no site group"),
    ]
    for body, words in cases:
        response = alice.http.post("/jobs", json=[body])
        assert response.status_code == 422, (body, response.text)
        assert words in response.text, (body, response.text)
    assert site["id"]


def test_no_site_of_another_user_is_ever_a_candidate(alice: ApiUser, bob: ApiUser) -> None:
    live_site(bob, "alpha")
    response = alice.http.post("/jobs", json=[{"app": "echo", "sites": ["alpha"], "workdir": "w"}])
    assert response.status_code == 422
    assert "no site named 'alpha'" in response.text


def test_jobs_wait_unbound_while_no_site_takes_work_and_sites_never_see_them(alice: ApiUser) -> None:
    site = alice.site("silent")  # its agent never sent a heartbeat: down
    alice.app(site["id"], "echo", parameters=PARAMS)
    [job] = alice.jobs([{"app": "echo", "workdir": "w", "parameters": {"n": 1}}])
    assert job["awaiting_placement"] is True and job["site_id"] == site["id"]
    [data] = placement_events(alice, job["id"])
    assert data["placement"] == "deferred"
    assert "never sent a heartbeat" in data["decision"]["reason"]
    token = alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)["token"]  # type: ignore[index]
    headers = {"Authorization": f"Bearer {token}"}
    assert alice.http.get(f"/jobs/{job['id']}", headers=headers).status_code == 404
    assert alice.http.get("/jobs", headers=headers).json()["items"] == []
    session = alice.ok(alice.http.post("/sessions", json={"site_id": site["id"]}, headers=headers), 201)
    got = alice.http.post(f"/sessions/{session['id']}/acquire", json={"max_jobs": 10}, headers=headers)  # type: ignore[index]
    assert got.json() == []


def test_a_child_waits_unbound_for_its_parents(alice: ApiUser) -> None:
    live_site(alice, "alpha")
    live_site(alice, "beta", app="other")
    [parent] = alice.jobs([{"app": "echo", "workdir": "p", "parameters": {"n": 1}}])
    [child] = alice.jobs(
        [{"app": "echo", "workdir": "c", "parameters": {"n": 2}, "parent_ids": [parent["id"]]}]
    )
    assert child["state"] == "AWAITING_PARENTS" and child["awaiting_placement"] is True
    assert placement_events(alice, child["id"]) == []  # decided when it can run
    orphan = {"app": "other", "workdir": "c", "parameters": {"n": 2}, "parent_ids": [parent["id"]]}
    response = alice.http.post("/jobs", json=[{**orphan, "sites": ["alpha"]}])
    assert response.status_code == 422 and "alpha: app 'other' is not registered" in response.text


def test_a_bulk_of_alike_jobs_is_placed_as_one_group_and_each_job_still_says_why(alice: ApiUser) -> None:
    """600 alike jobs by name to three sites: one survey of the sites, the jobs spread over all three as
    each placement raises its site's predicted wait (not all to the best one); the group is written as
    ONE placement event, and each job's history shows it as that job's decision: its site chosen, the
    site's figures, the group's spread; the group's first job's shows every site's estimate."""
    sites = {name: live_site(alice, name)["id"] for name in ("alpha", "beta", "gamma")}
    specs = [{"app": "echo", "workdir": f"g/{i}", "parameters": {"n": i}} for i in range(600)]
    jobs = alice.jobs(specs)
    counts = {name: sum(job["site_id"] == site_id for job in jobs) for name, site_id in sites.items()}
    assert all(count >= 100 for count in counts.values()), counts  # water-filling spreads the group
    first = jobs[0]["id"]
    names = {site_id: name for name, site_id in sites.items()}
    stored = alice.ok(alice.http.get("/events", params={"actor": "placement", "limit": 1000}))
    assert len(stored["items"]) == 1 and stored["items"][0]["job_id"] == first  # type: ignore[index]
    for job in jobs:
        [data] = placement_events(alice, job["id"])
        decision = data["decision"]
        assert data["placement"] == "placed" and decision["policy"] == "fastest_finish"
        assert decision["job"] == job["id"] and decision["site"] == names[job["site_id"]]
        group = decision["group"]
        assert (
            group["jobs"] == 600 and group["first_job"] == first and group["ids"] == [[first, jobs[-1]["id"]]]
        )
        assert {s["site"]: s["jobs"] for s in group["sites"]} == counts
        shown = {e["site"]: e for e in decision["estimates"]}
        assert set(shown) == set(sites)  # every site's estimate, the job's own site chosen
        assert [e["site"] for e in decision["estimates"] if e["status"] == "chosen"] == [decision["site"]]
        assert shown[decision["site"]]["finish_s"] > 0
        if job["id"] != first:
            assert f"went to {decision['site']!r}" in decision["reason"]
    at = {s["site"]: s for s in placement_events(alice, first)[0]["decision"]["group"]["sites"]}
    for name, entry in at.items():  # each site's first and last job: the wait grew as the site filled
        assert entry["last"]["finish_s"] >= entry["first"]["finish_s"]
        ids = [job["id"] for job in jobs if names[job["site_id"]] == name]
        assert sum(last - begin + 1 for begin, last in entry["ids"]) == len(ids)
        assert entry["ids"][0][0] == ids[0] and entry["ids"][-1][1] == ids[-1]


def test_a_job_of_a_group_keeps_its_decision_when_the_first_job_is_deleted(alice: ApiUser) -> None:
    """The group's row and event live on its first job: deleting that job hands them to the next."""
    live_site(alice, "alpha"), live_site(alice, "beta")
    specs = [{"app": "echo", "workdir": f"d/{i}", "parameters": {"n": i}} for i in range(20)]
    jobs = alice.jobs(specs)
    alice.ok(alice.http.delete(f"/jobs/{jobs[0]['id']}"), 204)
    for job in jobs[1:]:
        [data] = placement_events(alice, job["id"])
        assert data["decision"]["job"] == job["id"] and data["decision"]["group"]["jobs"] == 20
    stored = alice.ok(alice.http.get("/events", params={"actor": "placement", "limit": 1000}))
    assert [e["job_id"] for e in stored["items"]] == [jobs[1]["id"]]  # type: ignore[index]
