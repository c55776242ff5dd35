"""Live updates over server-sent events: own events only, resumable, batched, bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from beambridge.server.console.live import MAX_BATCH, MAX_STREAMS_PER_USER
from tests.conftest import ApiUser
from tests.server.console.client import Browser

BrowserFor = Callable[[ApiUser], Browser]


def messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an event stream into {event, id, data} messages."""
    message: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            message.setdefault("comment", line)
        else:
            field, _, value = line.partition(":")
            message[field] = value.lstrip(" ")


def collect(
    browser: Browser, after: int, until: Callable[[list[dict[str, Any]]], bool], **headers: str
) -> list:
    """Events of the stream (with their message ids) until ``until`` holds for the events so far."""
    got: list[dict[str, Any]] = []
    with browser.http.stream("GET", f"/ui/live/events?after={after}", headers=headers, timeout=20) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for message in messages(stream):
            if message.get("event") == "events":
                batch = json.loads(message["data"])
                assert int(message["id"]) == batch[-1]["id"]
                got.append({"batch": batch, "id": int(message["id"])})
                if until([e for m in got for e in m["batch"]]):
                    return got
    raise AssertionError("stream ended early")


def latest(user: ApiUser) -> int:
    return user.ok(user.http.get("/events/latest"))["id"]  # type: ignore[index]


def test_stream_sends_own_events_as_they_happen(
    browser_for: BrowserFor, alice: ApiUser, bob: ApiUser
) -> None:
    app = alice.app(alice.site()["id"])
    bob_app = bob.app(bob.site()["id"])
    browser = browser_for(alice)
    after = latest(alice)
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    bob.jobs([{"app_id": bob_app["id"], "workdir": "x"}])
    alice.http.post("/jobs/cancel", json={"ids": [job["id"]]})
    got = collect(browser, after, lambda evs: any(e["to"] == "KILLED" for e in evs))
    seen = [e for m in got for e in m["batch"]]
    assert {e["job_id"] for e in seen} == {job["id"]}
    assert seen[-1]["reason"] == "cancelled by user"
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)


def test_stream_wakes_on_a_change_without_polling(browser_for: BrowserFor, alice: ApiUser) -> None:
    app = alice.app(alice.site()["id"])
    browser = browser_for(alice)
    after = latest(alice)
    arrived: list[float] = []

    def read_first() -> None:
        collect(browser, after, lambda evs: bool(evs))
        arrived.append(time.monotonic())

    reader = threading.Thread(target=read_first)
    reader.start()
    time.sleep(0.5)
    created = time.monotonic()
    alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    reader.join(timeout=20)
    # an unwoken stream waits KEEPALIVE_S (15 s) and has no polling fallback, so 5 s still proves the wake-up
    # (0.5 s failed a run at load 20; the speed is benchmarks/console.py's event-to-screen figure)
    assert arrived and arrived[0] - created < 5.0


def test_stream_resumes_from_last_event_id(browser_for: BrowserFor, alice: ApiUser) -> None:
    app = alice.app(alice.site()["id"])
    browser = browser_for(alice)
    after = latest(alice)
    jobs = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(2)])
    first = collect(browser, after, lambda evs: bool(evs))
    resume_from = first[0]["batch"][0]["id"]
    rest = collect(browser, 0, lambda evs: len(evs) >= 3, **{"last-event-id": str(resume_from)})
    assert all(e["id"] > resume_from for m in rest for e in m["batch"])
    assert {e["job_id"] for m in rest for e in m["batch"]} <= {j["id"] for j in jobs}


def test_a_burst_arrives_in_few_batches(browser_for: BrowserFor, alice: ApiUser) -> None:
    app = alice.app(alice.site()["id"])
    browser = browser_for(alice)
    after = latest(alice)
    alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(3000)])
    expected = 2 * 3000  # each job: CREATED → STAGED_IN → PREPROCESSED (no stage-ins, no hooks)
    got = collect(browser, after, lambda evs: len(evs) >= expected)
    assert sum(len(m["batch"]) for m in got) == expected
    assert all(len(m["batch"]) <= MAX_BATCH for m in got)
    assert len(got) <= expected // MAX_BATCH + 3, [len(m["batch"]) for m in got]


def test_bad_cursor_and_no_login(browser_for: BrowserFor, alice: ApiUser) -> None:
    browser = browser_for(alice)
    assert browser.http.get("/ui/live/events?after=abc").status_code == 422
    assert browser.http.get(f"/ui/live/events?after={2**64}").status_code == 422
    with httpx.Client(base_url=browser.base_url) as anonymous:
        assert anonymous.get("/ui/live/events").status_code == 303


def test_streams_per_user_are_bounded(browser_for: BrowserFor, alice: ApiUser) -> None:
    browser = browser_for(alice)
    after = latest(alice)
    opened = []
    try:
        for _ in range(MAX_STREAMS_PER_USER):
            stream = browser.http.stream("GET", f"/ui/live/events?after={after}", timeout=20)
            lines = stream.__enter__().iter_lines()
            next(lines)  # the stream has started (its slot is taken); kept, or httpx closes it
            opened.append((stream, lines))
        with browser.http.stream("GET", f"/ui/live/events?after={after}", timeout=20) as extra:
            refusal = next(m for m in messages(extra) if "event" in m)
            assert refusal["event"] == "refused" and "too many" in refusal["data"]
    finally:
        for stream, _lines in opened:
            stream.__exit__(None, None, None)
