"""Launcher sessions: acquiring what fits, priorities, heartbeats, expiry and recovery."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from tests.conftest import ApiUser, make_settings
from tests.server.helpers import acquire, event_path, report, run_to, states
from tests.servers import LiveServer


def make_jobs(user: ApiUser, count: int = 1, **fields: object) -> tuple[dict, list[int]]:
    site = user.site()
    app = user.app(site["id"])
    jobs = user.jobs([{"app_id": app["id"], "workdir": "w", **fields}] * count)
    return site, [j["id"] for j in jobs]


def test_acquire_highest_priority_first(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    low = alice.jobs([{"app_id": app["id"], "workdir": "low", "priority": 0}] * 3)
    high = alice.jobs([{"app_id": app["id"], "workdir": "high", "priority": 10}] * 2)
    session = alice.session(site["id"])
    got = acquire(alice, session["id"], max_jobs=3)
    assert [j["id"] for j in got] == [high[0]["id"], high[1]["id"], low[0]["id"]]
    assert all(j["session_id"] == session["id"] for j in got)
    # acquired jobs are not handed out twice
    rest = acquire(alice, session["id"], max_jobs=10)
    assert [j["id"] for j in rest] == [low[1]["id"], low[2]["id"]]


def test_acquire_fits_free_nodes(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    big = alice.jobs([{"app_id": app["id"], "workdir": "mpi", "num_nodes": 3, "priority": 5}])
    packed = alice.jobs([{"app_id": app["id"], "workdir": "p", "node_packing_count": 4}] * 10)
    session = alice.session(site["id"])
    # two nodes: the 3-node job cannot fit; 4 packed jobs fill a node each
    got = acquire(alice, session["id"], max_jobs=100, free_nodes=[1.0, 0.5])
    assert [j["id"] for j in got] == [j["id"] for j in packed[:6]]
    got = acquire(alice, session["id"], max_jobs=100, free_nodes=[1.0, 1.0, 1.0])
    assert got[0]["id"] == big[0]["id"] and len(got) == 1  # the big job takes all three nodes
    assert (
        acquire(alice, session["id"], max_jobs=5, serial_only=True, free_nodes=[0.25])[0]["id"]
        == packed[6]["id"]
    )


def test_acquire_respects_wall_time_and_tags(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    long_job = alice.jobs(
        [{"app_id": app["id"], "workdir": "l", "wall_time_limit_min": 120, "tags": {"q": "a"}}]
    )
    short = alice.jobs([{"app_id": app["id"], "workdir": "s", "wall_time_limit_min": 10, "tags": {"q": "b"}}])
    session = alice.session(site["id"])
    assert acquire(alice, session["id"], max_jobs=5, filter_tags={"q": "a"}, time_left_min=60) == []
    got = acquire(alice, session["id"], max_jobs=5, time_left_min=60)
    assert [j["id"] for j in got] == [short[0]["id"]]
    assert [j["id"] for j in acquire(alice, session["id"], max_jobs=5)] == [long_job[0]["id"]]


def test_a_launcher_near_its_end_gets_no_job_without_a_limit(alice: ApiUser) -> None:
    """A job with no limit (0) could outlast any allocation: it goes only to a launcher that takes such jobs."""
    site = alice.site()
    app = alice.app(site["id"])
    [unlimited] = alice.jobs([{"app_id": app["id"], "workdir": "u", "priority": 5}])
    [fits, too_long] = alice.jobs(
        [
            {"app_id": app["id"], "workdir": "f", "wall_time_limit_min": 3},
            {"app_id": app["id"], "workdir": "t", "wall_time_limit_min": 30},
        ]
    )
    session = alice.session(site["id"])
    near_end = {"max_jobs": 5, "time_left_min": 4, "unlimited_jobs": False}
    assert [j["id"] for j in acquire(alice, session["id"], **near_end)] == [fits["id"]]
    assert acquire(alice, session["id"], **near_end) == []
    [got] = acquire(alice, session["id"], max_jobs=5, time_left_min=4)  # plenty left: unlimited jobs too
    assert got["id"] == unlimited["id"] and got["wall_time_limit_min"] == 0
    no_end_but_bounded = acquire(alice, session["id"], max_jobs=5, unlimited_jobs=False)
    assert [j["id"] for j in no_end_but_bounded] == [too_long["id"]]


def test_the_old_name_of_the_job_limit_is_refused_with_the_new_one(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    answer = alice.http.post("/jobs", json=[{"app_id": app["id"], "workdir": "w", "wall_time_min": 5}])
    assert answer.status_code == 422
    assert "wall_time_limit_min" in answer.text


def test_error_fails_and_timeout_retries_until_limit(alice: ApiUser) -> None:
    site, [job] = make_jobs(alice, retry_limit=1)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    run_to(alice, session["id"], [job], "RUN_TIMEOUT")
    assert states(alice, [job])[job] == "RESTART_READY"
    acquire(alice, session["id"], max_jobs=1)
    run_to(alice, session["id"], [job], "RUN_TIMEOUT")
    assert states(alice, [job])[job] == "FAILED"
    assert alice.ok(alice.http.get(f"/jobs/{job}"))["retry_count"] == 1
    assert event_path(alice, job)[-3:] == ["RUNNING", "RUN_TIMEOUT", "FAILED"]


def test_app_hooks_leave_decisions_to_the_site(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"], hooks=["handle_error", "postprocess"])
    ids = [j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "w"}] * 2)]
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=2)
    run_to(alice, session["id"], ids[:1], "RUN_ERROR", return_code=1)
    run_to(alice, session["id"], ids[1:], "RUN_DONE", return_code=0)
    assert states(alice, ids) == {ids[0]: "RUN_ERROR", ids[1]: "RUN_DONE"}
    alice.ok(alice.http.patch("/jobs", json=[{"id": ids[0], "state": "RESTART_READY"}]))
    alice.ok(alice.http.patch("/jobs", json=[{"id": ids[1], "state": "POSTPROCESSED"}]))
    assert states(alice, ids) == {ids[0]: "RESTART_READY", ids[1]: "JOB_FINISHED"}


def test_heartbeat_reports_cancelled_jobs(alice: ApiUser) -> None:
    site, ids = make_jobs(alice, 2)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=2)
    report(alice, session["id"], [{"id": i, "state": "RUNNING"} for i in ids])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [ids[0]]}))
    beat = alice.ok(alice.http.post(f"/sessions/{session['id']}/heartbeat"))
    assert beat == {"session_id": session["id"], "killed_job_ids": [ids[0]]}
    body = report(alice, session["id"], [{"id": ids[0], "state": "RUN_DONE"}], status=409)
    assert "killed" in body["detail"]


def test_close_session_returns_unstarted_and_times_out_running(alice: ApiUser) -> None:
    site, ids = make_jobs(alice, 2)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=2)
    report(alice, session["id"], [{"id": ids[0], "state": "RUNNING"}])
    alice.ok(alice.http.delete(f"/sessions/{session['id']}"), 204)
    assert states(alice, ids) == {ids[0]: "RESTART_READY", ids[1]: "PREPROCESSED"}
    job = alice.ok(alice.http.get(f"/jobs/{ids[1]}"))
    assert job["session_id"] is None
    response = alice.http.post(f"/sessions/{session['id']}/acquire", json={"max_jobs": 1})
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    fresh = alice.session(site["id"])
    assert sorted(j["id"] for j in acquire(alice, fresh["id"], max_jobs=5)) == ids


@pytest.fixture
def start_fast_expiry_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], LiveServer]]:
    """Starts, when called, a second server on the same database whose sweeper expires sessions silent
    for 1 s. Started only once the session under test has done its part: started earlier, it expired
    that session between its opening and its first acquire whenever the machine was loaded."""
    with ExitStack() as stack:

        def start() -> LiveServer:
            app: FastAPI = create_app(
                make_settings(tmp_path_factory.mktemp("fast"), database_url, session_timeout_s=1.0)
            )
            stack.callback(app.state.ctx.db.dispose)
            return stack.enter_context(LiveServer(app))

        yield start


def test_silent_session_expires_and_job_runs_again(
    alice: ApiUser, start_fast_expiry_server: Callable[[], LiveServer]
) -> None:
    site, [job] = make_jobs(alice)
    dying = alice.session(site["id"])
    acquire(alice, dying["id"], max_jobs=1)
    report(alice, dying["id"], [{"id": job, "state": "RUNNING"}])
    # The launcher dies: no more heartbeats. The fast server's sweeper expires the session.
    fast_expiry_server = start_fast_expiry_server()
    fast = httpx.Client(base_url=fast_expiry_server.url, headers=alice.http.headers, timeout=30)
    deadline = time.monotonic() + 15
    while states(alice, [job])[job] != "RESTART_READY":
        assert time.monotonic() < deadline, "session never expired"
        time.sleep(0.1)
    events = alice.ok(alice.http.get(f"/jobs/{job}/events"))
    assert [e["to_state"] for e in events[-2:]] == ["RUN_TIMEOUT", "RESTART_READY"]
    assert "no heartbeat" in events[-2]["data"]["reason"]
    # a late report from the dead session is refused: the job finishes exactly once
    late = fast.post(f"/sessions/{dying['id']}/report", json={"reports": [{"id": job, "state": "RUN_DONE"}]})
    assert late.status_code == 409
    fast.close()
    fast_expiry_server.stop()  # or its 1 s sweeper may expire the next session before its first acquire
    second = alice.session(site["id"])
    assert [j["id"] for j in acquire(alice, second["id"], max_jobs=1)] == [job]
    run_to(alice, second["id"], [job], "RUN_DONE", return_code=0)
    assert states(alice, [job])[job] == "JOB_FINISHED"
    finished = [e for e in alice.ok(alice.http.get(f"/jobs/{job}/events")) if e["to_state"] == "JOB_FINISHED"]
    assert len(finished) == 1


def test_batch_job_lifecycle(alice: ApiUser) -> None:
    site = alice.site()
    body = {"site_id": site["id"], "num_nodes": 2, "wall_time_min": 30, "queue": "debug", "project": "XPCS"}
    batch = alice.ok(alice.http.post("/batch-jobs", json=body), 201)
    assert batch["state"] == "pending_submission"
    patch = {"state": "queued", "scheduler_id": "12345.polaris-pbs"}
    batch = alice.ok(alice.http.patch(f"/batch-jobs/{batch['id']}", json=patch))
    assert batch["scheduler_id"] == "12345.polaris-pbs"
    alice.ok(alice.http.patch(f"/batch-jobs/{batch['id']}", json={"state": "finished"}))
    response = alice.http.patch(f"/batch-jobs/{batch['id']}", json={"state": "running"})
    assert response.status_code == 409
    listed = alice.ok(alice.http.get(f"/batch-jobs?site_id={site['id']}&state=finished"))["items"]
    assert [b["id"] for b in listed] == [batch["id"]]
    session = alice.ok(
        alice.http.post("/sessions", json={"site_id": site["id"], "batch_job_id": batch["id"]}), 201
    )
    assert session["batch_job_id"] == batch["id"]


def test_skewed_launcher_clock_never_reverses_history(alice: ApiUser) -> None:
    site, [job] = make_jobs(alice)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    report(alice, session["id"], [{"id": job, "state": "RUNNING", "at": "2001-01-01T00:00:00Z"}])
    report(alice, session["id"], [{"id": job, "state": "RUN_DONE", "at": "2999-01-01T00:00:00Z"}])
    times = [e["timestamp"] for e in alice.ok(alice.http.get(f"/jobs/{job}/events"))]
    assert times == sorted(times)
    assert not times[-1].startswith("2999")


def test_silence_while_the_service_was_down_does_not_expire_sessions(
    alice: ApiUser, server_app: FastAPI
) -> None:
    from datetime import UTC, datetime, timedelta

    from beambridge.server.dispatch.sessions import expire_silent_sessions

    site, [job] = make_jobs(alice)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    report(alice, session["id"], [{"id": job, "state": "RUNNING"}])
    later = datetime.now(UTC) + timedelta(seconds=120)  # two minutes of silence, timeout one minute
    db = server_app.state.ctx.db
    with db.write() as conn:  # the service came back 30 s ago: the launcher still has time to reconnect
        outcome = expire_silent_sessions(conn, 60, later, up_since=later - timedelta(seconds=30))
    assert not outcome.wake_keys and states(alice, [job])[job] == "RUNNING"
    with db.write() as conn:  # up for longer than the timeout: now the silence counts
        expire_silent_sessions(conn, 60, later, up_since=later - timedelta(seconds=90))
    assert states(alice, [job])[job] == "RESTART_READY"
