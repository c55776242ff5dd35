"""The console over HTTP: login and its cookie, CSRF on every action, the jobs pages, security headers."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from beambridge.server.app import create_app
from beambridge.server.console.security import CONTENT_SECURITY_POLICY
from tests.conftest import PASSWORD, ApiUser, make_settings
from tests.server.console.client import Browser
from tests.server.helpers import acquire, report, states
from tests.servers import LiveServer

BrowserFor = Callable[[ApiUser], Browser]


def _world(user: ApiUser, n: int = 3, tags: dict[str, str] | None = None) -> list[dict]:
    site = user.site()
    app = user.app(site["id"])
    return user.jobs([{"app_id": app["id"], "workdir": f"w{i}", "tags": tags or {}} for i in range(n)])


def _row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', html)]


def test_pages_need_a_login(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as anonymous:
        for path in ("/ui/jobs", "/ui/jobs/1"):
            response = anonymous.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login?next=")
        assert anonymous.post("/ui/jobs/cancel", data={"ids": "1"}).status_code == 401
        assert anonymous.get("/").headers["location"] == "/ui/jobs"


def test_login_sets_a_secure_session_cookie(live_server: LiveServer, alice: ApiUser) -> None:
    browser = Browser(live_server.url)
    response = browser.login(alice.name)
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("bb_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; over HTTPS it is set (see the next test)
    page = browser.http.get("/ui/jobs")
    assert page.status_code == 200 and alice.name in page.text
    browser.close()


def test_cookie_is_secure_over_https(database_url: str, tmp_path: Path, alice: ApiUser) -> None:
    app = create_app(make_settings(tmp_path, database_url))  # its own app: TestClient runs its lifespan
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        page = client.get("/ui/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token is not None
        response = client.post(
            "/ui/login", data={"login_token": token.group(1), "username": alice.name, "password": PASSWORD}
        )
    assert response.status_code == 303
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("bb_session="))
    assert "; Secure" in cookie and "HttpOnly" in cookie
    app.state.ctx.db.dispose()


def test_wrong_password_and_forged_login_are_refused(live_server: LiveServer, alice: ApiUser) -> None:
    browser = Browser(live_server.url)
    assert browser.login(alice.name, "not the password").status_code == 401
    # A login form posted from another site has no login token (the cookie is SameSite, path-bound).
    with httpx.Client(base_url=live_server.url) as other:
        forged = other.post(
            "/ui/login", data={"username": alice.name, "password": "x" * 12, "login_token": "guess"}
        )
        assert forged.status_code == 400 and "bb_session" not in forged.headers.get("set-cookie", "")
        cross = other.post(
            "/ui/login", data={"username": alice.name}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
    browser.close()


def test_open_redirect_after_login_is_refused(live_server: LiveServer, alice: ApiUser) -> None:
    browser = Browser(live_server.url)
    page = browser.http.get("/ui/login?next=//evil.example/x")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None
    response = browser.http.post(
        "/ui/login",
        data={"login_token": token.group(1), "username": alice.name, "password": PASSWORD,
              "next": "https://evil.example/"},
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"
    browser.close()


def test_logout_ends_the_session_on_the_server(browser_for: BrowserFor, alice: ApiUser) -> None:
    browser = browser_for(alice)
    stolen = browser.http.cookies["bb_session"]
    assert browser.post("/ui/logout", {"csrf": browser.csrf()}).status_code == 303
    with httpx.Client(base_url=browser.base_url, cookies={"bb_session": stolen}) as thief:
        assert thief.get("/ui/jobs").status_code == 303  # back to the login page


def test_jobs_page_lists_own_jobs_newest_first_with_paging(
    browser_for: BrowserFor, alice: ApiUser, bob: ApiUser
) -> None:
    mine = [j["id"] for j in _world(alice, 5)]
    theirs = [j["id"] for j in _world(bob, 2)]
    browser = browser_for(alice)
    page = browser.http.get("/ui/jobs?limit=3")
    assert _row_ids(page.text) == sorted(mine, reverse=True)[:3]
    older = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert older is not None
    rest = browser.http.get(older.group(1).replace("&amp;", "&"))
    assert _row_ids(rest.text) == sorted(mine, reverse=True)[3:]
    assert 'rel="next"' not in rest.text
    everything = browser.http.get("/ui/jobs?limit=200").text
    assert not set(_row_ids(everything)) & set(theirs)


def test_jobs_page_filters_on_the_server(browser_for: BrowserFor, alice: ApiUser) -> None:
    site = alice.site()
    echo, other = alice.app(site["id"]), alice.app(site["id"], name="other")
    [a, b] = alice.jobs([
        {"app_id": echo["id"], "workdir": "a", "tags": {"experiment": "A001"}},
        {"app_id": other["id"], "workdir": "b", "tags": {"experiment": "B002"}},
    ])  # fmt: skip
    alice.http.post("/jobs/cancel", json={"ids": [b["id"]]})
    browser = browser_for(alice)
    assert _row_ids(browser.http.get("/ui/jobs?tag=experiment:A001").text) == [a["id"]]
    assert _row_ids(browser.http.get("/ui/jobs?state=KILLED").text) == [b["id"]]
    assert _row_ids(browser.http.get(f"/ui/jobs?app_id={other['id']}&site_id=").text) == [b["id"]]
    assert _row_ids(browser.http.get("/ui/jobs?created_after=2000-01-01T00:00:00").text) == [b["id"], a["id"]]
    assert _row_ids(browser.http.get("/ui/jobs?created_before=2000-01-01T00:00").text) == []


def test_bad_filters_get_a_page_naming_the_problem(browser_for: BrowserFor, alice: ApiUser) -> None:
    browser = browser_for(alice)
    for query, words in (
        ("state=BOGUS", "state"),
        ("tag=nocolon", "tag"),
        ("site_id=abc", "site_id"),
        ("created_after=yesterday", "created_after"),
    ):
        page = browser.http.get(f"/ui/jobs?{query}")
        assert page.status_code == 422 and words in page.text, query
    for query in ("before=abc", "limit=0", "limit=100000", f"before={2**70}"):
        page = browser.http.get(f"/ui/jobs?{query}")
        assert page.status_code == 422 and "<html" in page.text, query
    assert browser.http.get(f"/ui/jobs/{2**70}").status_code == 422
    assert browser.http.get("/ui/jobs/0").status_code == 422


def test_failure_reason_is_shown(browser_for: BrowserFor, alice: ApiUser) -> None:
    [job, other] = _world(alice, 2)
    no_retries = [{"id": j["id"], "retry_limit": 0} for j in (job, other)]
    alice.ok(alice.http.patch("/jobs", json=no_retries))  # a failed run would otherwise be retried
    session = alice.session(job["site_id"])
    acquire(alice, session["id"], max_jobs=2)
    report(alice, session["id"], [{"id": j["id"], "state": "RUNNING"} for j in (job, other)])
    report(alice, session["id"], [
        {"id": job["id"], "state": "RUN_ERROR", "error": "Traceback…\nValueError: detector mask is empty"},
        {"id": other["id"], "state": "RUN_ERROR", "state_data": {"reason": "node n7 lost"}},
    ])  # fmt: skip
    page = browser_for(alice).http.get("/ui/jobs").text
    assert "ValueError: detector mask is empty" in page
    assert "node n7 lost" in page


def test_job_page_shows_timeline_parameters_and_result(browser_for: BrowserFor, alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"], parameters={"frames": {"required": False, "default": 10}})
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"frames": 7},
                         "tags": {"experiment": "<script>alert(1)</script>"}}])  # fmt: skip
    alice.ok(alice.http.patch(f"/jobs/{job['id']}", json={"result": {"g2_0": 1.31}}))
    page = browser_for(alice).http.get(f"/ui/jobs/{job['id']}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert '"g2_0": 1.31' in text and '"frames": 7' in text
    assert job["state"] in page.text and 'id="timeline"' in page.text
    assert "<script>alert(1)</script>" not in page.text  # tags are escaped
    assert "&lt;script&gt;" in page.text


def test_another_users_job_is_not_found(browser_for: BrowserFor, alice: ApiUser, bob: ApiUser) -> None:
    [job] = _world(alice, 1)
    browser = browser_for(bob)
    assert browser.http.get(f"/ui/jobs/{job['id']}").status_code == 404
    response = browser.post("/ui/jobs/cancel", {"csrf": browser.csrf(), "ids": str(job["id"])})
    assert response.status_code == 404
    assert states(alice, [job["id"]]) == {job["id"]: job["state"]}


def test_cancel_needs_the_csrf_token(browser_for: BrowserFor, alice: ApiUser) -> None:
    [job, other] = _world(alice, 2)
    browser = browser_for(alice)
    csrf = browser.csrf()
    assert browser.post("/ui/jobs/cancel", {"ids": str(job["id"])}).status_code == 403
    assert browser.post("/ui/jobs/cancel", {"ids": str(job["id"]), "csrf": "0" * 40}).status_code == 403
    cross = browser.post(
        "/ui/jobs/cancel", {"ids": str(job["id"]), "csrf": csrf}, origin="https://evil.example"
    )
    assert cross.status_code == 403
    sec = browser.post(
        "/ui/jobs/cancel", {"ids": str(job["id"]), "csrf": csrf}, **{"sec-fetch-site": "cross-site"}
    )
    assert sec.status_code == 403
    as_json = browser.http.post("/ui/jobs/cancel", json={"ids": [job["id"]], "csrf": csrf})
    assert as_json.status_code == 415
    assert states(alice, [job["id"], other["id"]]) == {job["id"]: job["state"], other["id"]: other["state"]}
    done = browser.post("/ui/jobs/cancel", {"ids": [str(job["id"]), str(other["id"])], "csrf": csrf,
                                             "back": "/ui/jobs?state=KILLED"})  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/ui/jobs?state=KILLED"
    assert states(alice, [job["id"], other["id"]]) == {job["id"]: "KILLED", other["id"]: "KILLED"}


def test_bad_action_forms_get_pages_not_errors(browser_for: BrowserFor, alice: ApiUser) -> None:
    browser = browser_for(alice)
    csrf = browser.csrf()
    for ids in ([], ["abc"], ["-1"], [str(2**70)]):
        response = browser.post("/ui/jobs/cancel", {"ids": ids, "csrf": csrf})
        assert response.status_code == 422 and "<html" in response.text, ids
    assert browser.post("/ui/jobs/cancel", {"ids": ["999999999"], "csrf": csrf}).status_code == 404
    big = browser.http.post(
        "/ui/jobs/cancel",
        content=b"csrf=" + csrf.encode() + b"&ids=1" * 300_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413


def test_pages_carry_security_headers(
    browser_for: BrowserFor, alice: ApiUser, live_server: LiveServer
) -> None:
    browser = browser_for(alice)
    for path in ("/ui/jobs", "/ui/login", "/docs", "/ui/static/console.css"):
        response = browser.http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    with httpx.Client(base_url=live_server.url) as api:
        assert "content-security-policy" not in api.get("/health").headers


def test_docs_work_offline(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert src.startswith("/ui/static/"), src
            assert client.get(src).status_code == 200, src
        assert client.get("/openapi.json").status_code == 200


def test_every_asset_is_in_the_package(browser_for: BrowserFor, alice: ApiUser) -> None:
    """No page names an asset on another host (no CDN): everything a page loads is served here."""
    [job] = _world(alice, 1)
    browser = browser_for(alice)
    for path in ("/ui/jobs", f"/ui/jobs/{job['id']}", "/ui/login"):
        html = browser.http.get(path).text
        for src in re.findall(r'(?:src|href)="([^"#?]+)', html):
            assert src.startswith("/"), f"{path} loads {src}"
            if src.startswith("/ui/static/"):
                assert browser.http.get(src).status_code == 200, src


def test_retry_sends_cancelled_jobs_back(browser_for: BrowserFor, alice: ApiUser, bob: ApiUser) -> None:
    [job, other] = _world(alice, 2)
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [job["id"]]}))
    browser = browser_for(alice)
    csrf = browser.csrf()
    assert browser.post("/ui/jobs/retry", {"ids": str(job["id"])}).status_code == 403  # no CSRF token
    done = browser.post(
        "/ui/jobs/retry", {"ids": str(job["id"]), "csrf": csrf, "back": f"/ui/jobs/{job['id']}"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/ui/jobs/{job['id']}"
    assert states(alice, [job["id"]])[job["id"]] not in ("KILLED", "FAILED")
    assert "retried by" in browser.http.get(f"/ui/jobs/{job['id']}").text
    intruder = browser_for(bob)
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [other["id"]]}))
    refused = intruder.post("/ui/jobs/retry", {"ids": str(other["id"]), "csrf": intruder.csrf()})
    assert refused.status_code == 404 and states(alice, [other["id"]]) == {other["id"]: "KILLED"}
