"""Long-poll: an idle launcher gets a new job the moment it becomes runnable, not after a poll interval."""

from __future__ import annotations

import threading
import time

from tests.conftest import ApiUser
from tests.server.helpers import acquire


def test_job_created_while_launcher_waits_is_returned_at_once(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    session = alice.session(site["id"])
    result: dict[str, object] = {}

    def wait() -> None:
        started = time.monotonic()
        result["jobs"] = acquire(alice, session["id"], max_jobs=5, wait_s=20)
        result["returned"] = time.monotonic()
        result["started"] = started

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)  # let the launcher settle into its wait
    assert "jobs" not in result
    created_at = time.monotonic()
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    waiter.join(timeout=10)
    assert [j["id"] for j in result["jobs"]] == [job["id"]]  # type: ignore[union-attr]
    latency = result["returned"] - created_at  # type: ignore[operator]
    assert latency < 0.5, f"woken after {latency:.3f} s"


def test_wait_times_out_empty(alice: ApiUser) -> None:
    site = alice.site()
    session = alice.session(site["id"])
    started = time.monotonic()
    assert acquire(alice, session["id"], max_jobs=5, wait_s=0.5) == []
    assert 0.45 <= time.monotonic() - started < 3


def test_events_long_poll(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    cursor = 0
    got: dict[str, object] = {}

    def follow() -> None:
        got["page"] = alice.ok(alice.http.get(f"/events?after={cursor}&wait_s=20&to_state=PREPROCESSED"))
        got["at"] = time.monotonic()

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.3)
    created = time.monotonic()
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    follower.join(timeout=10)
    items = got["page"]["items"]  # type: ignore[index]
    assert [(e["job_id"], e["to_state"]) for e in items] == [(job["id"], "PREPROCESSED")]
    assert got["at"] - created < 0.5  # type: ignore[operator]


def test_latest_event_cursor(alice: ApiUser) -> None:
    assert alice.ok(alice.http.get("/events/latest")) == {"id": 0}
    site = alice.site()
    app = alice.app(site["id"])
    alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    newest = alice.ok(alice.http.get("/events?limit=100"))["items"][-1]["id"]
    assert alice.ok(alice.http.get("/events/latest")) == {"id": newest}
