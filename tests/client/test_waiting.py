"""wait() and as_completed(): jobs come back as they end, pushed by the event long-poll."""

from __future__ import annotations

import threading
import time

import pytest

from beambridge.client import Client, NotFound, WaitTimeout, waiting
from beambridge.states import JobState
from tests.client.conftest import Launcher, RecordingTransport, Workspace


def _make(client: Client, ws: Workspace, count: int) -> list[int]:
    return [
        j.id
        for j in client.jobs.bulk_create([{"app_id": ws.app.id, "workdir": f"w/{i}"} for i in range(count)])
    ]


def test_as_completed_yields_each_job_when_it_ends(client: Client, ws: Workspace) -> None:
    ids = _make(client, ws, 3)
    allowed = {job_id: threading.Event() for job_id in ids}
    launcher = Launcher(client, ws.site.id, len(ids), gate=lambda job_id: allowed[job_id].wait(20))
    launcher.start()
    completed = client.jobs.as_completed(ids, timeout=30)
    order = []
    for _ in ids:
        # the launcher may finish one job only after we have been handed the previous one
        for event in allowed.values():
            if not event.is_set():
                event.set()
                break
        job = next(completed)
        assert job.state is JobState.JOB_FINISHED
        assert job.id not in order
        order.append(job.id)
        assert len(launcher.finished) <= len(order)
    launcher.join(timeout=20)  # its last report may still be on its way back to it
    assert sorted(order) == ids and order == launcher.finished
    with pytest.raises(StopIteration):
        next(completed)
    launcher.check()


def test_wait_returns_all_in_the_order_given(
    client: Client, ws: Workspace, recorder: RecordingTransport
) -> None:
    ids = _make(client, ws, 4)
    launcher = Launcher(client, ws.site.id, len(ids))
    launcher.start()
    started = time.monotonic()
    jobs = client.jobs.wait(list(reversed(ids)), timeout=30)
    assert [job.id for job in jobs] == list(reversed(ids))
    assert {job.state for job in jobs} == {JobState.JOB_FINISHED}
    assert time.monotonic() - started < 15
    long_polls = [r for r in recorder.calls("GET", "/events") if "wait_s" in r.url.params]
    assert long_polls and all(
        sorted(r.url.params.get_list("to_state")) == ["FAILED", "JOB_FINISHED", "KILLED"] for r in long_polls
    )
    launcher.check()


def test_killed_and_failed_jobs_count_as_completed(client: Client, ws: Workspace) -> None:
    parent, other = _make(client, ws, 2)
    client.jobs.update(parent, retry_limit=0)  # its failed run is not retried
    child = client.jobs.create(ws.app.id, "w/child", parent_ids=[parent]).id
    client.jobs.cancel(other)
    completed = client.jobs.as_completed([other, parent, child], timeout=30)
    first = next(completed)
    assert (first.id, first.state) == (other, JobState.KILLED)  # had ended before we asked
    session = client.sessions.open(ws.site.id)
    assert [j.id for j in client.sessions.acquire(session.id, max_jobs=5)] == [parent]
    client.sessions.report(session.id, [{"id": parent, "state": "RUNNING"}])
    client.sessions.report(session.id, [{"id": parent, "state": "RUN_ERROR", "error": "boom"}])
    rest = {job.id: job.state for job in completed}
    assert rest == {parent: JobState.FAILED, child: JobState.FAILED}  # a failed parent fails its child


def test_many_pending_jobs_are_watched_without_naming_them(
    client: Client, ws: Workspace, recorder: RecordingTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "FILTERED_POLL_MAX", 1)  # as if the ids were too many for a URL
    ids = _make(client, ws, 3)
    launcher = Launcher(client, ws.site.id, len(ids))
    launcher.start()
    assert sorted(job.id for job in client.jobs.as_completed(ids, timeout=30)) == ids
    unnamed = [r for r in recorder.calls("GET", "/events") if not r.url.params.get_list("job_id")]
    assert unnamed and all("since" in r.url.params for r in unnamed)
    launcher.check()


def test_wait_times_out_with_what_is_still_pending(client: Client, ws: Workspace) -> None:
    ids = _make(client, ws, 2)
    client.jobs.cancel(ids[0])
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        client.jobs.wait(ids, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 10
    assert isinstance(info.value, TimeoutError)
    assert info.value.pending_ids == [ids[1]] and list(info.value.finished) == [ids[0]]


def test_waiting_for_an_unknown_job_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="1 job\\(s\\) not found: 987654321"):
        client.jobs.wait([987654321], timeout=5)
