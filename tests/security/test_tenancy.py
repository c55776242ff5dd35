"""Tenancy: on every route, another user (or another site's token) sees nothing and changes nothing."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.conftest import ApiUser
from tests.server.console.client import Browser
from tests.server.helpers import acquire, report
from tests.servers import LiveServer

# Routes with no owned object to trespass on.
SELF_ROUTES = {
    ("get", "/health"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
    ("get", "/auth/me"),
    ("post", "/sites"),  # creates the caller's own site
    ("post", "/workflows"),  # stores the caller's own workflow (names are per user)
    ("post", "/beamline-events"),  # records the caller's own event (a foreign submission id: below)
    ("post", "/site-groups"),  # groups the caller's own sites (names resolve among them only)
}


G2 = {"kind": "xpcs.g2", "q": [0.01], "tau_s": [0.001, 0.002], "g2": [[1.3, 1.2]]}


def alice_world(alice: ApiUser) -> dict[str, Any]:
    site = alice.site()
    app = alice.app(
        site["id"], transfer_slots={"raw": {"direction": "in", "local_path": "raw.h5", "required": False}}
    )
    [job, other] = alice.jobs(
        [
            {"app_id": app["id"], "workdir": "w", "transfers": {"raw": "dtn:/raw.h5"}},
            {"app_id": app["id"], "workdir": "v"},
        ]
    )
    [running] = alice.jobs([{"app_id": app["id"], "workdir": "r", "priority": 10}])
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    report(alice, session["id"], [{"id": running["id"], "state": "RUNNING"}])
    batch = alice.ok(
        alice.http.post("/batch-jobs", json={"site_id": site["id"], "num_nodes": 1, "wall_time_min": 5}), 201
    )
    token = alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)
    [item] = alice.ok(alice.http.get(f"/transfers?job_id={job['id']}"))["items"]
    workflow = alice.ok(
        alice.http.post(
            "/workflows",
            json={
                "name": "wf",
                "steps": [
                    {"name": "quick", "app": app["name"], "quick_look": True},
                    {"name": "full", "app": app["name"], "after": ["quick"], "skip_unless_changed": True},
                ],
                "change_detection": {},
            },
        ),
        201,
    )
    submission = alice.ok(
        alice.http.post("/submissions", json={"workflow": "wf", "key": "run-1", "dataset": "d.h5"}), 201
    )["submission"]
    beamline_event = alice.ok(
        alice.http.post("/beamline-events", json={"kind": "run.aborted", "submission_id": submission["id"]}),
        201,
    )
    group = alice.ok(alice.http.post("/site-groups", json={"name": "grp", "sites": [site["name"]]}), 201)
    alice.ok(alice.http.put(f"/jobs/{job['id']}/artifacts/g2", json=G2))
    return {
        "group": group, "site": site, "app": app, "job": job, "other": other, "running": running, "session": session,
        "batch": batch, "token": token, "item": item, "workflow": workflow, "submission": submission,
        "beamline_event": beamline_event,
    }  # fmt: skip


def attempts(w: dict[str, Any]) -> dict[tuple[str, str], tuple[str, Any]]:
    """For each route: the concrete URL aimed at alice's objects, and a body that would be valid for her."""
    site, app, job, session = w["site"]["id"], w["app"]["id"], w["job"]["id"], w["session"]["id"]
    running, batch, token, item = w["running"]["id"], w["batch"]["id"], w["token"]["id"], w["item"]["id"]
    workflow, submission = w["workflow"]["id"], w["submission"]["id"]
    return {
        ("get", "/sites"): ("/sites", None),
        ("get", "/sites/{site_id}"): (f"/sites/{site}", None),
        ("patch", "/sites/{site_id}"): (f"/sites/{site}", {"description": "pwned"}),
        ("delete", "/sites/{site_id}"): (f"/sites/{site}", None),
        ("post", "/sites/{site_id}/heartbeat"): (f"/sites/{site}/heartbeat", None),
        ("post", "/sites/{site_id}/tokens"): (f"/sites/{site}/tokens", {"name": "thief"}),
        ("get", "/sites/{site_id}/tokens"): (f"/sites/{site}/tokens", None),
        ("post", "/sites/{site_id}/drain"): (f"/sites/{site}/drain", {"reason": "pwned"}),
        ("post", "/sites/{site_id}/undrain"): (f"/sites/{site}/undrain", None),
        ("get", "/placement/sites"): ("/placement/sites", None),
        ("get", "/site-groups"): ("/site-groups", None),
        ("delete", "/site-groups/{group_id}"): (f"/site-groups/{w['group']['id']}", None),
        ("delete", "/sites/{site_id}/tokens/{token_id}"): (f"/sites/{site}/tokens/{token}", None),
        ("post", "/sites/{site_id}/tokens/rotate"): (f"/sites/{site}/tokens/rotate", {"token_id": token}),
        ("get", "/sites/{site_id}/tokens/current"): (f"/sites/{site}/tokens/current", None),
        ("get", "/apps"): ("/apps", None),
        ("post", "/apps"): ("/apps", {"site_id": site, "name": "intruder"}),
        ("get", "/apps/{app_id}"): (f"/apps/{app}", None),
        ("patch", "/apps/{app_id}"): (f"/apps/{app}", {"description": "pwned"}),
        ("delete", "/apps/{app_id}"): (f"/apps/{app}", None),
        ("get", "/jobs"): (f"/jobs?id={job}", None),
        ("post", "/jobs"): ("/jobs", [{"app_id": app, "workdir": "x"}]),
        ("patch", "/jobs"): ("/jobs", [{"id": job, "state": "KILLED"}]),
        ("get", "/jobs/count"): ("/jobs/count", None),
        ("get", "/jobs/summary"): ("/jobs/summary?by_tag=run", None),
        ("post", "/jobs/cancel"): ("/jobs/cancel", {"ids": [job]}),
        ("post", "/jobs/delete"): ("/jobs/delete", {"ids": [job]}),
        ("post", "/jobs/retry"): ("/jobs/retry", {"ids": [job]}),
        ("get", "/jobs/{job_id}"): (f"/jobs/{job}", None),
        ("patch", "/jobs/{job_id}"): (f"/jobs/{job}", {"state": "KILLED"}),
        ("delete", "/jobs/{job_id}"): (f"/jobs/{job}", None),
        ("get", "/jobs/{job_id}/events"): (f"/jobs/{job}/events", None),
        ("get", "/jobs/{job_id}/artifacts"): (f"/jobs/{job}/artifacts", None),
        ("get", "/jobs/{job_id}/artifacts/{name}"): (f"/jobs/{job}/artifacts/g2", None),
        ("put", "/jobs/{job_id}/artifacts/{name}"): (f"/jobs/{job}/artifacts/g2", G2),
        ("get", "/batch-jobs"): ("/batch-jobs", None),
        ("post", "/batch-jobs"): ("/batch-jobs", {"site_id": site, "num_nodes": 1, "wall_time_min": 5}),
        ("get", "/batch-jobs/{batch_job_id}"): (f"/batch-jobs/{batch}", None),
        ("patch", "/batch-jobs/{batch_job_id}"): (f"/batch-jobs/{batch}", {"state": "pending_deletion"}),
        ("delete", "/batch-jobs/{batch_job_id}"): (f"/batch-jobs/{batch}", None),
        ("get", "/sessions"): ("/sessions", None),
        ("post", "/sessions"): ("/sessions", {"site_id": site}),
        ("get", "/sessions/{session_id}"): (f"/sessions/{session}", None),
        ("delete", "/sessions/{session_id}"): (f"/sessions/{session}", None),
        ("post", "/sessions/{session_id}/heartbeat"): (f"/sessions/{session}/heartbeat", None),
        ("post", "/sessions/{session_id}/acquire"): (f"/sessions/{session}/acquire", {"max_jobs": 10}),
        ("post", "/sessions/{session_id}/report"): (
            f"/sessions/{session}/report",
            {"reports": [{"id": running, "state": "RUN_DONE"}]},
        ),
        ("get", "/transfers"): ("/transfers", None),
        ("patch", "/transfers"): ("/transfers", [{"id": item, "state": "done"}]),
        ("get", "/transfers/{item_id}"): (f"/transfers/{item}", None),
        ("get", "/events"): ("/events", None),
        ("get", "/events/latest"): ("/events/latest", None),
        ("get", "/audit"): ("/audit", None),
        ("get", "/workflows"): ("/workflows", None),
        ("get", "/workflows/{workflow_id}"): (f"/workflows/{workflow}", None),
        ("delete", "/workflows/{workflow_id}"): (f"/workflows/{workflow}", None),
        ("post", "/submissions"): ("/submissions", {"workflow": "wf", "key": "run-2", "dataset": "d.h5"}),
        ("get", "/submissions"): ("/submissions", None),
        ("get", "/submissions/{submission_id}"): (f"/submissions/{submission}", None),
        ("post", "/submissions/{submission_id}/steps/{step}"): (
            f"/submissions/{submission}/steps/full",
            {"action": "run"},
        ),
        ("get", "/beamline-events"): ("/beamline-events", None),
        ("post", "/beamline-events#foreign"): (
            "/beamline-events",
            {"kind": "stolen", "submission_id": submission},
        ),
    }


def snapshot(alice: ApiUser) -> dict[str, Any]:
    """Everything alice can see, for before/after comparison."""
    out = {}
    for path in (
        "/sites", "/apps", "/jobs", "/batch-jobs", "/sessions", "/transfers", "/events", "/workflows",
        "/submissions", "/beamline-events", "/audit",
    ):  # fmt: skip
        out[path] = alice.ok(alice.http.get(f"{path}?limit=1000"))["items"]
    out["tokens"] = alice.ok(alice.http.get(f"/sites/{out['/sites'][0]['id']}/tokens"))
    return out


def _check_trespass(
    intruder: httpx.Client, plan: dict[tuple[str, str], tuple[str, Any]], victim: dict[str, Any]
) -> None:
    for (method, _route), (url, body) in plan.items():
        response = intruder.request(method.upper(), url, json=body)
        if method == "get" and response.status_code == 200 and "items" in response.json():
            theirs = {item["id"] for item in victim[url.split("?")[0]]}
            seen = {item["id"] for item in response.json()["items"]}
            assert not seen & theirs, f"{method} {url} leaked {response.text}"
        elif method == "get" and url == "/jobs/count":
            assert response.json() == {"count": 0}
        elif method == "get" and url.startswith("/jobs/summary"):
            assert response.json()["total"] == 0 and response.json()["groups"] == [], response.text
        elif method == "get" and url in ("/placement/sites", "/site-groups") and response.status_code == 200:
            theirs = {site["id"] for site in victim["/sites"]}
            seen = {item.get("site_id") for item in response.json()}
            assert not seen & theirs and not any(item.get("name") == "grp" for item in response.json()), url
        elif method == "get" and url == "/events/latest":
            assert response.json()["id"] not in {e["id"] for e in victim["/events"]}
        else:
            assert response.status_code in (403, 404), (
                f"{method.upper()} {url}: {response.status_code} {response.text}"
            )


def test_every_route_is_covered(server_app: FastAPI) -> None:
    routes = {(m, p) for p, ops in server_app.openapi()["paths"].items() for m in ops}
    names = (
        "site", "app", "job", "session", "running", "batch", "token", "item", "workflow", "submission", "group",
    )  # fmt: skip
    planned = {(m, p.split("#")[0]) for m, p in attempts({k: {"id": 1} for k in names})}
    assert routes - SELF_ROUTES == planned - SELF_ROUTES, "a route has no tenancy check: add it to attempts()"


def test_another_user_sees_and_changes_nothing(alice: ApiUser, bob: ApiUser) -> None:
    world = alice_world(alice)
    bob.site()  # bob has objects of his own: still sees none of alice's
    before = snapshot(alice)
    _check_trespass(bob.http, attempts(world), before)
    assert snapshot(alice) == before


def test_site_token_is_confined_to_its_site(alice: ApiUser, make_user: Any) -> None:
    world = alice_world(alice)
    other_site = alice.site("other-site")
    token = alice.ok(alice.http.post(f"/sites/{other_site['id']}/tokens", json={"name": "agent"}), 201)[
        "token"
    ]
    before = snapshot(alice)
    with httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {token}"}) as agent:
        _check_trespass(agent, attempts(world), {**before, "/sites": [world["site"]]})
        # …while it works on its own site
        assert agent.get(f"/sites/{other_site['id']}").status_code == 200
        assert agent.post(f"/sites/{other_site['id']}/heartbeat").status_code == 200
    after = snapshot(alice)
    for path in before:
        if path != "/sites":
            assert after[path] == before[path], path
    assert [s["id"] for s in after["/sites"]] == [s["id"] for s in before["/sites"]]


@pytest.mark.parametrize("route", ["/sites", "/apps", "/jobs", "/events"])
def test_lists_are_empty_for_a_new_user(bob: ApiUser, alice: ApiUser, route: str) -> None:
    alice_world(alice)
    assert bob.ok(bob.http.get(route))["items"] == []


# The console's pages (not in the API schema): the same rules, through a logged-in browser session.
UI_SELF_ROUTES = {
    ("get", "/"),
    ("get", "/ui"),
    ("get", "/ui/"),
    ("get", "/ui/login"),
    ("post", "/ui/login"),
    ("post", "/ui/logout"),
    ("get", "/docs"),
    ("get", "/metrics"),  # service-wide figures, no object of anyone's (BEAMBRIDGE_METRICS_TOKEN guards it)
}


def ui_attempts(w: dict[str, Any]) -> dict[tuple[str, str], tuple[str, Any]]:
    """For each console route: the URL aimed at alice's objects, and a form that would be valid for her."""
    job = w["job"]["id"]
    return {
        ("get", "/ui/jobs"): ("/ui/jobs?limit=200", None),
        ("get", "/ui/jobs/{job_id}"): (f"/ui/jobs/{job}", None),
        ("get", "/ui/jobs/{job_id}/artifacts/{name}.png"): (f"/ui/jobs/{job}/artifacts/g2.png", None),
        ("post", "/ui/jobs/cancel"): ("/ui/jobs/cancel", {"ids": [str(job)]}),
        ("post", "/ui/jobs/retry"): ("/ui/jobs/retry", {"ids": [str(job)]}),
        ("get", "/ui/live/events"): ("/ui/live/events?after=0", None),
        ("get", "/ui/overview"): ("/ui/overview?window=7d", None),
        ("get", "/ui/overview/figures"): ("/ui/overview/figures?window=7d", None),
        ("get", "/ui/sites"): ("/ui/sites", None),
        ("get", "/ui/weather"): ("/ui/weather", None),
        ("get", "/ui/throughput"): ("/ui/throughput?window=7d", None),
        ("get", "/ui/throughput/figures"): ("/ui/throughput/figures?window=7d", None),
        ("get", "/ui/weather.png"): ("/ui/weather.png", None),
    }


def _flat(routes: list[Any]) -> list[Any]:
    """Routes, with those of included routers (FastAPI may keep them as router objects) spelled out."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        out.extend(_flat(included.routes) if included is not None else [route])
    return out


def ui_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every route outside the API schema (the console's pages and actions)."""
    return {
        (method.lower(), route.path)
        for route in _flat(app.routes)
        if isinstance(route, APIRoute) and not route.include_in_schema
        for method in route.methods - {"HEAD"}
    }


def test_every_console_route_is_covered(server_app: FastAPI) -> None:
    planned = set(ui_attempts({"job": {"id": 1}}))
    assert ui_routes(server_app) - UI_SELF_ROUTES == planned, "a console route has no tenancy check"


def _streamed_job_ids(browser: Browser, url: str, seconds: float = 1.5) -> list[int]:
    ids: list[int] = []
    timeout = httpx.Timeout(5, read=seconds)
    with contextlib.suppress(httpx.ReadTimeout), browser.http.stream("GET", url, timeout=timeout) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data: ["):
                ids.extend(event["job_id"] for event in json.loads(line[6:]))
    return ids


def test_console_shows_and_changes_nothing_of_another_user(
    alice: ApiUser, bob: ApiUser, live_server: LiveServer
) -> None:
    world = alice_world(alice)
    bob.site()
    before = snapshot(alice)
    intruder = Browser(live_server.url)
    assert intruder.login(bob.name).status_code == 303
    csrf = intruder.csrf()
    theirs = {str(j["id"]) for j in before["/jobs"]}
    for (method, _route), (url, form) in ui_attempts(world).items():
        if url.startswith("/ui/live/"):  # a stream: read what it sends for a moment
            assert not set(_streamed_job_ids(intruder, url)) & {int(i) for i in theirs}, url
            continue
        if method == "get":
            response = intruder.http.get(url)
            if response.status_code == 200 and "/figures" in url:  # JSON: counts nothing of alice's
                figures = response.json()
                assert (
                    not figures["throughput"]
                    and not figures["failures_recent" if "overview" in url else "finished"]
                )
                assert all(n == 0 for _name, n in figures.get("funnel", [])), url
                assert all(stage["count"] == 0 for stage in figures["stages"]), url
                continue
            if response.status_code == 200:
                shown = set(re.findall(r'data-job-id="(\d+)"', response.text))
                assert not shown & theirs, f"{url} shows alice's jobs"
                assert str(world["site"]["id"]) not in re.findall(r'data-site-id="(\d+)"', response.text)
                assert "1 runs" not in response.text, f"{url} draws alice's run"
                continue
        else:
            response = intruder.post(url, {**form, "csrf": csrf})
        assert response.status_code in (403, 404), f"{method} {url}: {response.status_code}"
    assert snapshot(alice) == before
    intruder.close()
