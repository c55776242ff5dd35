"""Report batches are idempotent: a batch sent again after its answer was lost is applied once, quietly.

Found from outside: after a server restart the launcher resent a batch the server had already saved; the
409 was logged at ERROR as "…; dropped" although nothing was lost.
"""

from __future__ import annotations

import logging

import pytest

from beambridge.client import Client
from beambridge.client.errors import ConnectionFailed
from beambridge.launcher.reporter import Reporter
from tests.conftest import ApiUser
from tests.server.helpers import acquire, event_path, states


def _held_jobs(user: ApiUser, count: int) -> tuple[int, list[int]]:
    site = user.site()
    app = user.app(site["id"])
    ids = [j["id"] for j in user.jobs([{"app_id": app["id"], "workdir": "w"}] * count)]
    session = user.session(site["id"])
    assert len(acquire(user, session["id"], max_jobs=count)) == count
    return session["id"], ids


def _post(user: ApiUser, session_id: int, reports: list[dict], batch_id: str | None) -> tuple[int, dict]:
    body: dict = {"reports": reports}
    if batch_id is not None:
        body["batch_id"] = batch_id
    response = user.http.post(f"/sessions/{session_id}/report", json=body)
    return response.status_code, response.json()


def test_a_batch_sent_twice_is_applied_once(alice: ApiUser) -> None:
    session_id, ids = _held_jobs(alice, 2)
    running = [{"id": i, "state": "RUNNING"} for i in ids]
    done = [{"id": i, "state": "RUN_DONE", "result": {"n": i}} for i in ids]
    assert _post(alice, session_id, running, "b-1")[0] == 200
    assert _post(alice, session_id, running, "b-1") == (200, {"count": 2, "ids": ids})
    assert _post(alice, session_id, done, "b-2")[0] == 200
    status, body = _post(alice, session_id, done, "b-2")  # the jobs have left the session by now
    assert status == 200 and body["ids"] == ids, body
    assert set(states(alice, ids).values()) == {"JOB_FINISHED"}
    for job_id in ids:  # one run in the history, not two
        assert event_path(alice, job_id).count("RUNNING") == 1
    # without a batch id a repeated report is refused as before, naming the job's state
    status, body = _post(alice, session_id, done, None)
    assert status == 409 and "JOB_FINISHED" in str(body), body


def test_a_batch_id_is_remembered_only_once_applied(alice: ApiUser) -> None:
    session_id, [job] = _held_jobs(alice, 1)
    status, _ = _post(alice, session_id, [{"id": job, "state": "RUN_DONE"}], "b-1")  # illegal: not RUNNING
    assert status == 409
    assert _post(alice, session_id, [{"id": job, "state": "RUNNING"}], "b-1")[0] == 200
    assert states(alice, [job])[job] == "RUNNING"


@pytest.mark.parametrize("batch_id", ["", "x" * 65, "no spaces"])
def test_batch_ids_are_short_plain_tokens(alice: ApiUser, batch_id: str) -> None:
    session_id, [job] = _held_jobs(alice, 1)
    status, body = _post(alice, session_id, [{"id": job, "state": "RUNNING"}], batch_id)
    assert status == 422 and "batch_id" in body["detail"], body


def test_reporter_resending_a_saved_batch_is_not_an_error(
    alice: ApiUser, caplog: pytest.LogCaptureFixture
) -> None:
    session_id, ids = _held_jobs(alice, 3)
    client = Client(alice.base_url, access_token=alice.token)
    real_report = client.sessions.report
    calls: list[str | None] = []

    def lose_first_answer(session: int, reports: list, batch_id: str | None = None):  # type: ignore[no-untyped-def]
        calls.append(batch_id)
        answer = real_report(session, reports, batch_id=batch_id)
        if len(calls) == 1:
            raise ConnectionFailed("the connection closed before the answer came")
        return answer

    client.sessions.report = lose_first_answer  # type: ignore[method-assign]
    reporter = Reporter(client, interval_s=0.01, batch=100)
    reporter.start()
    caplog.set_level(logging.INFO, logger="beambridge.launcher.reporter")
    try:
        for job_id in ids:
            reporter.put(session_id, {"id": job_id, "state": "RUNNING"})
        assert reporter.drain(30)
    finally:
        reporter.stop()
        client.close()
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0], calls  # the same batch, sent again
    assert reporter.refused == 0 and reporter.sent == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "dropped" not in caplog.text
    assert set(states(alice, ids).values()) == {"RUNNING"}
