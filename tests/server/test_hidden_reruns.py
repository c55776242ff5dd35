"""Every start the service could know of is in a job's history, so no re-run is hidden.

Found by a chaos campaign: a job that started 20–40 ms before its launcher was killed (before the RUNNING
report went out) went back to the pool silently and ran again; its history showed one run. A job handed to
a session that is then lost may have started: its history says so (RUNNING, unconfirmed, then RUN_TIMEOUT)
before it runs again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conftest import ApiUser
from tests.server.helpers import acquire, event_path, report, run_to, states
from tests.server.test_sessions import make_jobs, start_fast_expiry_server
from tests.servers import LiveServer

__all__ = ["start_fast_expiry_server"]


def test_jobs_handed_to_a_lost_session_show_a_possible_run(
    alice: ApiUser, start_fast_expiry_server: Callable[[], LiveServer]
) -> None:
    site, [reported, handed] = make_jobs(alice, 2)
    dying = alice.session(site["id"])
    assert len(acquire(alice, dying["id"], max_jobs=2)) == 2
    report(alice, dying["id"], [{"id": reported, "state": "RUNNING"}])
    # `handed` may have started, but its RUNNING report never left the launcher before it was killed
    fast_expiry_server = start_fast_expiry_server()
    deadline = time.monotonic() + 15
    while set(states(alice, [reported, handed]).values()) != {"RESTART_READY"}:
        assert time.monotonic() < deadline, states(alice, [reported, handed])
        time.sleep(0.1)
    # its sweeper has done its part: left running, it expired the next session too whenever more than
    # 1 s passed between its opening and its first acquire (CI, loaded)
    fast_expiry_server.stop()
    assert event_path(alice, handed)[-4:] == ["PREPROCESSED", "RUNNING", "RUN_TIMEOUT", "RESTART_READY"]
    events = alice.ok(alice.http.get(f"/jobs/{handed}/events"))
    running = next(e for e in events if e["to_state"] == "RUNNING")
    assert running["data"]["unconfirmed"] is True
    assert f"session {dying['id']}" in running["data"]["reason"]
    assert alice.ok(alice.http.get(f"/jobs/{handed}"))["retry_count"] == 1  # counted like any lost run
    # its next run is the second in its history
    second = alice.session(site["id"])
    assert sorted(j["id"] for j in acquire(alice, second["id"], max_jobs=2)) == [reported, handed]
    run_to(alice, second["id"], [handed], "RUN_DONE", return_code=0)
    assert event_path(alice, handed).count("RUNNING") == 2
    assert states(alice, [handed])[handed] == "JOB_FINISHED"


def test_a_closed_session_returns_unstarted_jobs_without_a_run(alice: ApiUser) -> None:
    """A launcher closes its session only after it has stopped its jobs and sent its reports: what it
    held but had not reported as started never ran."""
    site, [job] = make_jobs(alice, 1)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    alice.ok(alice.http.delete(f"/sessions/{session['id']}"), 204)
    assert event_path(alice, job).count("RUNNING") == 0
    assert states(alice, [job])[job] == "PREPROCESSED"
