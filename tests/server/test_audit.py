"""The audit trail: every event names who caused it, and access or ownership changes are logged.

Tried as an attacker would: a site token or launcher that writes an ``actor`` of its own into a report, an
update or a filter must not change what the service records, and nobody reads another user's audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from beambridge.server.dispatch.sessions import expire_silent_sessions
from beambridge.server.users import disable_user, enable_user
from tests.conftest import PASSWORD, ApiUser
from tests.server.helpers import acquire, report


def _events(user: ApiUser, job_id: int) -> list[dict[str, Any]]:
    return user.ok(user.http.get(f"/jobs/{job_id}/events"))  # type: ignore[return-value]


def _audit(user: ApiUser, query: str = "") -> list[dict[str, Any]]:
    return user.ok(user.http.get(f"/audit?limit=1000{query}"))["items"]  # type: ignore[index]


def _site_token(user: ApiUser, site_id: int) -> tuple[int, str]:
    made = user.ok(user.http.post(f"/sites/{site_id}/tokens", json={"name": "agent"}), 201)
    return made["id"], made["token"]  # type: ignore[index]


def test_every_event_of_a_job_names_its_actor(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"], hooks=["preprocess"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    token_id, token = _site_token(alice, site["id"])
    with httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {token}"}) as agent:
        # the agent runs the preprocess hook; the launcher runs the job through its session
        moved = agent.patch("/jobs", json=[{"id": job["id"], "state": "PREPROCESSED"}])
        assert moved.status_code == 200, moved.text
        session = agent.post("/sessions", json={"site_id": site["id"]}).json()
        assert [j["id"] for j in agent.post(f"/sessions/{session['id']}/acquire", json={}).json()] == [
            job["id"]
        ]
        for state in ("RUNNING", "RUN_DONE"):
            done = agent.post(
                f"/sessions/{session['id']}/report", json={"reports": [{"id": job["id"], "state": state}]}
            )
            assert done.status_code == 200, done.text
    actors = [(e["from_state"], e["to_state"], e["actor"]) for e in _events(alice, job["id"])]
    agent_actor = f"site:polaris (token {token_id})"
    launcher = f"launcher:polaris (session {session['id']})"
    assert actors == [
        ("CREATED", "STAGED_IN", f"user:{alice.name}"),
        ("STAGED_IN", "PREPROCESSED", agent_actor),
        ("PREPROCESSED", "RUNNING", launcher),
        ("RUNNING", "RUN_DONE", launcher),
        ("RUN_DONE", "POSTPROCESSED", "system"),  # default hooks: the service by its own rules
        ("POSTPROCESSED", "JOB_FINISHED", "system"),
    ]


def test_a_client_cannot_choose_its_actor(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job, other] = alice.jobs([{"app_id": app["id"], "workdir": "w"}, {"app_id": app["id"], "workdir": "v"}])
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    # an actor smuggled into the report's data, or as an extra field, is data or refused: never the actor
    forged = alice.http.post(
        f"/sessions/{session['id']}/report",
        json={"reports": [{"id": job["id"], "state": "RUNNING", "actor": "user:root"}]},
    )
    assert forged.status_code == 422 and "actor" in forged.text, forged.text
    report(
        alice, session["id"], [{"id": job["id"], "state": "RUNNING", "state_data": {"actor": "user:root"}}]
    )
    running = _events(alice, job["id"])[-1]
    assert running["actor"] == f"launcher:polaris (session {session['id']})"
    assert running["data"] == {"actor": "user:root"}
    cancel = alice.http.patch("/jobs", json=[{"id": other["id"], "state": "KILLED", "actor": "system"}])
    assert cancel.status_code == 422 and "actor" in cancel.text, cancel.text


def test_cancel_retry_expiry_and_children_name_who_caused_them(alice: ApiUser, server_app: FastAPI) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [parent] = alice.jobs([{"app_id": app["id"], "workdir": "p"}])
    [child] = alice.jobs([{"app_id": app["id"], "workdir": "c", "parent_ids": [parent["id"]]}])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [parent["id"]]}))
    assert _events(alice, parent["id"])[-1]["actor"] == f"user:{alice.name}"
    assert _events(alice, child["id"])[-1] == {
        **_events(alice, child["id"])[-1],
        "to_state": "FAILED",
        "actor": "system",
    }
    alice.ok(alice.http.post("/jobs/retry", json={"ids": [parent["id"]]}))
    [retried] = [e for e in _events(alice, parent["id"]) if "retried_by" in e["data"]]
    assert retried["from_state"] == "KILLED" and retried["actor"] == f"user:{alice.name}"
    session = alice.session(site["id"])
    [held] = acquire(alice, session["id"], max_jobs=1)
    report(alice, session["id"], [{"id": held["id"], "state": "RUNNING"}])
    later = datetime.now(UTC) + timedelta(seconds=600)
    with server_app.state.ctx.db.write() as conn:
        expire_silent_sessions(conn, 60, later, up_since=later - timedelta(seconds=3600))
    timed_out = [e for e in _events(alice, held["id"]) if e["to_state"] == "RUN_TIMEOUT"]
    assert timed_out and all(e["actor"] == "system" for e in timed_out)


def test_placement_decisions_are_the_placement_services(alice: ApiUser) -> None:
    site = alice.site("alpha")
    alice.ok(alice.http.post(f"/sites/{site['id']}/heartbeat"))
    alice.app(site["id"], "echo")
    [job] = alice.jobs([{"app": "echo", "sites": ["alpha"], "workdir": "w"}])
    by_actor = {e["actor"] for e in _events(alice, job["id"]) if "placement" in e["data"]}
    assert by_actor == {"placement"}


def test_events_filter_by_actor_prefix_literally(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    mine = alice.ok(alice.http.get("/events", params={"actor": "user:", "job_id": job["id"]}))["items"]
    assert [e["to_state"] for e in mine] == ["STAGED_IN"] and mine[0]["actor"] == f"user:{alice.name}"
    assert alice.ok(alice.http.get("/events", params={"actor": "%"}))["items"] == []  # not a LIKE pattern
    assert alice.ok(alice.http.get("/events", params={"actor": "u_er:"}))["items"] == []
    too_long = alice.http.get("/events", params={"actor": "x" * 201})
    assert too_long.status_code == 422 and "actor" in too_long.text


def test_token_site_and_job_changes_are_in_the_audit_log(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    token_id, token = _site_token(alice, site["id"])
    alice.ok(alice.http.post(f"/sites/{site['id']}/drain", json={"reason": "maintenance"}))
    alice.ok(alice.http.post(f"/sites/{site['id']}/undrain"))
    alice.ok(alice.http.delete(f"/jobs/{job['id']}"), 204)
    alice.ok(alice.http.delete(f"/sites/{site['id']}/tokens/{token_id}"), 204)
    alice.ok(alice.http.delete(f"/apps/{app['id']}"), 204)
    me = f"user:{alice.name}"
    log = [(e["actor"], e["action"], e["target"]) for e in _audit(alice)]
    assert log == [
        ("admin", "user.add", f"user {alice.name}"),  # the test's user, added as `beambridge user add` does
        (me, "site.create", "site polaris"),
        (me, "site_token.create", f"token {token_id} of site polaris"),
        (me, "site.drain", "site polaris"),
        (me, "site.undrain", "site polaris"),
        (me, "job.delete", f"job {job['id']}"),
        (me, "site_token.revoke", f"token {token_id} of site polaris"),
        (me, "app.delete", f"app echo of site {site['id']}"),
    ]
    assert [e["action"] for e in _audit(alice, "&action=site_token")] == [
        "site_token.create",
        "site_token.revoke",
    ]
    newest = alice.ok(alice.http.get("/audit?order=desc&limit=1"))["items"]
    assert [e["action"] for e in newest] == ["app.delete"]
    with httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {token}"}) as revoked:
        assert revoked.get("/audit").status_code == 401


def test_a_site_token_cannot_read_the_audit_log_and_others_see_none_of_it(
    alice: ApiUser, bob: ApiUser
) -> None:
    site = alice.site()
    _, token = _site_token(alice, site["id"])
    with httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {token}"}) as agent:
        answer = agent.get("/audit")
    assert answer.status_code == 403 and "site token" in answer.json()["detail"]
    assert [e["action"] for e in _audit(bob)] == ["user.add"]  # his own only
    assert bob.http.get("/audit", params={"action": "site_token; drop"}).status_code == 422


def test_logins_logouts_and_an_administrators_changes_are_logged(alice: ApiUser, server_app: FastAPI) -> None:
    url = alice.base_url
    pair = httpx.post(f"{url}/auth/login", json={"username": alice.name, "password": PASSWORD}).json()
    assert httpx.post(f"{url}/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    db = server_app.state.ctx.db
    disable_user(db, alice.name)
    enable_user(db, alice.name)
    pair = httpx.post(f"{url}/auth/login", json={"username": alice.name, "password": PASSWORD}).json()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {pair['access_token']}"}) as fresh:
        entries = fresh.get("/audit").json()["items"]
    me = f"user:{alice.name}"
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("admin", "user.add"),
        (me, "user.login"),
        (me, "user.logout"),
        ("admin", "user.disable"),
        ("admin", "user.enable"),
        (me, "user.login"),
    ]
    assert entries[1]["data"] == {"via": "api", "address": "127.0.0.1"}
