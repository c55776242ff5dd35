"""Per-user quotas: jobs created per minute, jobs in the system, open event long-polls — a clear 429 with
``Retry-After``, nothing half done, one user's use never limiting another's, and one count for every server
process (two servers on one database here).

Tried as an abusive client would: many concurrent creates racing for the last places, a request bigger
than the whole quota, a burst just under it followed by one job more.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from beambridge.client import Client, RateLimited
from beambridge.server.app import create_app
from beambridge.server.quotas import check_job_creation
from beambridge.server.users import add_user
from tests.conftest import PASSWORD, ApiUser, make_settings
from tests.servers import LiveServer

PER_MINUTE, IN_SYSTEM = 20, 30


@pytest.fixture
def quota_servers(
    own_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer, FastAPI]]:
    """Two server processes' worth of apps on one database of their own, with small quotas."""
    apps = [
        create_app(
            make_settings(
                tmp_path_factory.mktemp("quota"),
                own_database_url,
                quota_jobs_per_minute=PER_MINUTE,
                quota_jobs_in_system=IN_SYSTEM,
                quota_event_waits=2,
            )
        )
        for _ in range(2)
    ]
    with LiveServer(apps[0]) as first, LiveServer(apps[1]) as second:
        yield first, second, apps[0]
    for app in apps:
        app.state.ctx.db.dispose()


def _user(server: LiveServer, app: FastAPI, password_hash: str) -> ApiUser:
    name = f"q{uuid.uuid4().hex[:10]}"
    user_id = add_user(app.state.ctx.db, name, PASSWORD, password_hash=password_hash)
    return ApiUser(server.url, name, app.state.ctx.tokens.issue(user_id))


def _specs(app_id: int, n: int, prefix: str = "w") -> list[dict]:
    return [{"app_id": app_id, "workdir": f"{prefix}/{uuid.uuid4().hex[:8]}"} for _ in range(n)]


def _count(user: ApiUser) -> int:
    return user.ok(user.http.get("/jobs/count"))["count"]  # type: ignore[index,no-any-return]


def test_jobs_per_minute_are_one_count_across_processes_and_refused_whole(
    quota_servers: tuple[LiveServer, LiveServer, FastAPI], password_hash: str
) -> None:
    first, second, app = quota_servers
    alice = _user(first, app, password_hash)
    on_second = ApiUser(second.url, alice.name, alice.token)
    site = alice.site()
    app_id = alice.app(site["id"])["id"]
    alice.jobs(_specs(app_id, 12))
    on_second.jobs(_specs(app_id, 8))  # 20 in this minute, through two processes
    refused = on_second.http.post("/jobs", json=_specs(app_id, 1))
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["quota"] == "jobs_per_minute" and body["limit"] == PER_MINUTE
    assert "at most 20 jobs created per minute" in body["detail"] and "try again in" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 120 and body["retry_after"] == int(
        refused.headers["Retry-After"]
    )
    assert _count(alice) == 20  # nothing of the refused request was created
    too_big = alice.http.post("/jobs", json=_specs(app_id, PER_MINUTE + 1))
    assert too_big.status_code == 429 and "send at most 20 at a time" in too_big.json()["detail"]
    bob = _user(first, app, password_hash)  # one user's quota is not another's
    bob_site = bob.site()
    bob.jobs(_specs(bob.app(bob_site["id"])["id"], 5))


def test_the_window_slides(quota_servers: tuple[LiveServer, LiveServer, FastAPI], password_hash: str) -> None:
    _, _, app = quota_servers
    ctx = app.state.ctx
    owner = 10_000 + uuid.uuid4().int % 1_000_000
    start = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)  # half way into a minute
    with ctx.db.write() as conn:
        check_job_creation(conn, owner, 20, start, per_minute=PER_MINUTE, in_system=0)
    # 0:50: all 20 within the last minute; 1:15: 15 of them still count; 1:30: 10 do, so 10 more fit
    for seconds, allowed in ((20, False), (45, False), (60, True)):
        try:
            with ctx.db.write() as conn:
                check_job_creation(
                    conn, owner, 10, start + timedelta(seconds=seconds), per_minute=PER_MINUTE, in_system=0
                )
        except Exception as exc:
            assert not allowed, (seconds, exc)
            assert getattr(exc, "status_code", None) == 429
        else:
            assert allowed, seconds


def test_concurrent_creates_never_overshoot(
    quota_servers: tuple[LiveServer, LiveServer, FastAPI], password_hash: str
) -> None:
    first, second, app = quota_servers
    alice = _user(first, app, password_hash)
    site = alice.site()
    app_id = alice.app(site["id"])["id"]
    statuses: list[int] = []
    lock = threading.Lock()

    def create(url: str) -> None:  # 12 clients × 4 jobs race for 30 places (and 20 per minute)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=60
        ) as http:
            status = http.post("/jobs", json=_specs(app_id, 4)).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=create, args=((first, second)[i % 2].url,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [201, 429], statuses
    assert _count(alice) == 4 * statuses.count(201) <= PER_MINUTE  # each refused request left nothing


def test_jobs_in_the_system_quota_names_what_to_do(tmp_path: Path, password_hash: str) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = create_app(make_settings(tmp_path / "home", url, quota_jobs_per_minute=0, quota_jobs_in_system=5))
    with LiveServer(app) as server:
        alice = _user(server, app, password_hash)
        site = alice.site()
        app_id = alice.app(site["id"])["id"]
        made = alice.jobs(_specs(app_id, 5))
        refused = alice.http.post("/jobs", json=_specs(app_id, 1))
        assert refused.status_code == 429 and refused.json()["quota"] == "jobs_in_system"
        assert "you have 5" in refused.json()["detail"] and "cancel" in refused.json()["detail"]
        alice.ok(alice.http.post("/jobs/cancel", json={"ids": [made[0]["id"]]}))  # an ended job frees a place
        alice.jobs(_specs(app_id, 1))
        sdk = Client(server.url, access_token=alice.token, retries=1)
        with sdk, pytest.raises(RateLimited) as caught:  # the SDK's typed error
            sdk.jobs.bulk_create(_specs(app_id, 1))
        assert caught.value.quota == "jobs_in_system" and caught.value.retry_after_s == 30
        assert caught.value.status_code == 429 and "you have 5" in caught.value.detail
    app.state.ctx.db.dispose()


def alice_id(app: FastAPI, user: ApiUser) -> int:
    return int(app.state.ctx.tokens.verify(user.token))


def test_event_long_polls_per_user(
    quota_servers: tuple[LiveServer, LiveServer, FastAPI], password_hash: str
) -> None:
    first, _, app = quota_servers
    alice = _user(first, app, password_hash)
    results: list[int] = []

    def wait() -> None:
        with httpx.Client(
            base_url=first.url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=60
        ) as http:
            results.append(http.get("/events", params={"wait_s": 10}).status_code)

    threads = [threading.Thread(target=wait) for _ in range(2)]
    for thread in threads:
        thread.start()
    import time

    deadline = time.monotonic() + 30
    while (
        app.state.ctx.long_polls.held(alice_id(app, alice)) < 2
    ):  # both are waiting (slow on a loaded machine)
        assert time.monotonic() < deadline, "the two long-polls never opened"
        time.sleep(0.05)
    third = alice.http.get("/events", params={"wait_s": 3})
    assert third.status_code == 429 and third.json()["quota"] == "event_waits", third.text
    assert alice.http.get("/events").status_code == 200  # a plain read is never limited
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    assert alice.http.get("/events", params={"wait_s": 0.1}).status_code == 200  # places free again
