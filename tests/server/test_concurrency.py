"""Concurrent launchers: every job is acquired exactly once, none lost (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ApiUser

JOBS = 5000
SESSIONS = 8


def test_eight_sessions_acquire_each_job_exactly_once(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    created = alice.jobs([{"app_id": app["id"], "workdir": f"w/{i}"} for i in range(JOBS)])
    sessions = [alice.session(site["id"]) for _ in range(SESSIONS)]

    reported: list[int] = []

    def drain(session_id: int) -> list[int]:
        taken: list[int] = []
        with httpx.Client(base_url=alice.base_url, headers=alice.http.headers, timeout=60) as http:
            while True:
                response = http.post(f"/sessions/{session_id}/acquire", json={"max_jobs": 97})
                assert response.status_code == 200, response.text
                batch = [job["id"] for job in response.json()]
                if not batch:
                    return taken
                assert all(job["session_id"] == session_id for job in response.json())
                taken += batch
                # run half of them through so acquire competes with reports too
                reports = [{"id": i, "state": "RUNNING"} for i in batch[::2]]
                reported.extend(batch[::2])
                assert (
                    http.post(f"/sessions/{session_id}/report", json={"reports": reports}).status_code == 200
                )

    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(drain, [s["id"] for s in sessions]))
    everything = [job for taken in results for job in taken]
    assert len(everything) == len(set(everything)) == JOBS
    assert set(everything) == {j["id"] for j in created}
    assert all(results), "some session got nothing: acquisition was not concurrent"
    # every job is held by exactly the session that acquired it
    for session, taken in zip(sessions, results, strict=True):
        held = alice.ok(alice.http.get(f"/jobs/count?session_id={session['id']}"))["count"]
        assert held == len(taken)
    running = alice.ok(alice.http.get("/jobs/count?state=RUNNING"))["count"]
    assert running == len(reported) == len(set(reported))
