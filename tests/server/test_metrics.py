"""/metrics scraped and parsed; request ids; the access log line carries them."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from beambridge.server.app import create_app
from beambridge.server.metrics import families
from beambridge.server.observability import RequestIdFilter
from tests.conftest import ApiUser, make_settings
from tests.server.helpers import acquire
from tests.servers import LiveServer


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == x for k, x in labels.items()))


@pytest.fixture
def fresh(server_app: FastAPI) -> None:
    server_app.state.metrics.database.ttl_s = 0  # read the database on every scrape in these tests


def test_latency_by_route_template_never_by_id(live_server: LiveServer, alice: ApiUser, fresh: None) -> None:
    for job_id in (987654, 987655, 987656):
        assert alice.http.get(f"/jobs/{job_id}").status_code == 404
    for junk in ("/nope/1", "/nope/2", "/ui/static/missing.js"):
        httpx.get(live_server.url + junk)
    samples = scrape(live_server.url)
    count = "beambridge_http_request_duration_seconds_count"
    assert value(samples, count, route="/jobs/{job_id}", method="GET", status="4xx") >= 3
    routes = {labels["route"] for labels, _ in samples[count]}
    assert not any(re.search(r"\d{4,}|nope|missing", r) for r in routes), routes
    assert "<unmatched>" in routes


def test_jobs_by_state_events_acquire_and_pool(live_server: LiveServer, alice: ApiUser, fresh: None) -> None:
    before = scrape(live_server.url)
    site = alice.site()
    app = alice.app(site["id"])
    jobs = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(4)])
    session = alice.session(site["id"])
    assert len(acquire(alice, session["id"], max_jobs=2)) == 2
    after = scrape(live_server.url)
    state = jobs[0]["state"]
    assert value(after, "beambridge_jobs", state=state) >= value(before, "beambridge_jobs", state=state) + 2
    assert {labels["state"] for labels, _ in after["beambridge_jobs"]} >= {
        "RUNNING",
        "JOB_FINISHED",
        "FAILED",
    }
    assert value(after, "beambridge_events_total") >= value(before, "beambridge_events_total") + 8
    acquired = value(after, "beambridge_acquire_duration_seconds_count")
    assert acquired >= value(before, "beambridge_acquire_duration_seconds_count") + 1
    assert (
        value(after, "beambridge_acquired_jobs_total") >= value(before, "beambridge_acquired_jobs_total") + 2
    )
    assert "beambridge_db_pool_connections" in after


def test_request_id_is_echoed_or_made(live_server: LiveServer) -> None:
    given = httpx.get(f"{live_server.url}/health", headers={"x-request-id": "beamline-42.a_b"})
    assert given.headers["x-request-id"] == "beamline-42.a_b"
    for bad in ("x" * 65, "with space", "new\u00e9line"):
        made = httpx.get(f"{live_server.url}/health", headers={"x-request-id": bad.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    a, b = httpx.get(f"{live_server.url}/health"), httpx.get(f"{live_server.url}/health")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


def test_access_log_is_key_value_with_the_request_id(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="beambridge.server.access"):
        httpx.get(f"{live_server.url}/jobs/5", headers={"x-request-id": "trace-me-7"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            getattr(r, "request_id", None) == "trace-me-7" for r in caplog.records
        ):
            time.sleep(0.02)
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-me-7"]
    assert "event=request method=GET route=/jobs/{job_id} status=401 ms=" in record.getMessage()


def test_metrics_token_guards_the_endpoint(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, database_url, metrics_token="s3cret-scraper"))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"authorization": "Bearer s3cret-scraper"})
        assert ok.status_code == 200 and "beambridge_jobs" in ok.text
    app.state.ctx.db.dispose()


def test_the_app_builds_before_its_database_has_tables(tmp_path: Path) -> None:
    """Building the app reads nothing from the database: the schema may not exist yet (the fuzz suite
    builds the app at collection time; a service may start before `server migrate`)."""
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}"))
    assert "beambridge_jobs" in {m.name for m in app.state.metrics.database.describe()}
    app.state.ctx.db.dispose()
