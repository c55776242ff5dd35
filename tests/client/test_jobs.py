"""Jobs through the SDK: bulk create in chunks, lazy chained queries, count, update, cancel, delete."""

from __future__ import annotations

import pytest

from beambridge.client import Client, Conflict, NotFound, ValidationError
from beambridge.client.jobs import CREATE_CHUNK
from beambridge.client.query import ID_CHUNK
from beambridge.schemas import Job, JobCreate
from beambridge.states import JobState
from tests.client.conftest import RecordingTransport, Workspace


def test_bulk_create_sends_chunks_and_returns_typed_jobs(
    client: Client, ws: Workspace, recorder: RecordingTransport
) -> None:
    total = CREATE_CHUNK + 7
    specs = [{"app_id": ws.app.id, "workdir": f"bulk/{i}", "tags": {"batch": "big"}} for i in range(total)]
    jobs = client.jobs.bulk_create(specs)
    assert len(recorder.calls("POST", "/jobs")) == 2
    assert len(jobs) == total and all(isinstance(job, Job) for job in jobs)
    assert [job.workdir for job in jobs[:3]] == ["bulk/0", "bulk/1", "bulk/2"]
    assert jobs[-1].workdir == f"bulk/{total - 1}"
    assert client.jobs.filter(tags={"batch": "big"}).count() == total


def test_create_accepts_schema_models_and_keywords(client: Client, ws: Workspace) -> None:
    [a] = client.jobs.bulk_create([JobCreate(app_id=ws.app.id, workdir="m/1", parameters={"n": 4})])
    b = client.jobs.create(ws.app.id, "m/2", parent_ids=[a.id], priority=5)
    assert a.parameters == {"n": 4} and a.state is JobState.PREPROCESSED
    assert b.parent_ids == [a.id] and b.state is JobState.AWAITING_PARENTS and b.priority == 5
    assert client.jobs.get(b.id) == b
    c = client.jobs.create(
        ws.app.id,
        "m/3",
        parameters={"n": 2},
        tags={"run": "7"},
        data={"note": "typed"},
        parent_ids=[a, b],  # Job models or ids
        num_nodes=2,
        ranks_per_node=4,
        gpus_per_rank=0.5,
        wall_time_limit_min=12.5,
        retry_limit=0,
    )
    assert (c.parameters, c.tags, c.data, c.parent_ids) == (
        {"n": 2},
        {"run": "7"},
        {"note": "typed"},
        [a.id, b.id],
    )
    assert (c.num_nodes, c.ranks_per_node, c.gpus_per_rank, c.wall_time_limit_min) == (2, 4, 0.5, 12.5)
    assert (c.retry_limit, c.priority, c.threads_per_rank) == (0, 0, 1)  # the service's defaults for the rest


def test_filters_chain_lazily_and_paginate(
    client: Client, ws: Workspace, recorder: RecordingTransport
) -> None:
    jobs = client.jobs.bulk_create(
        {"app_id": ws.app.id, "workdir": f"f/{i}", "tags": {"parity": str(i % 2), "set": "f"}}
        for i in range(230)
    )
    even = [job.id for job in jobs[::2]]
    before = len(recorder.requests)
    query = client.jobs.filter(state="PREPROCESSED").filter(tags={"set": "f"}).filter(tags={"parity": "0"})
    assert len(recorder.requests) == before, "filter() must not send anything"
    assert [job.id for job in query.page_size(40)] == even
    pages = recorder.calls("GET", "/jobs")[-3:]
    assert len(recorder.calls("GET", "/jobs")) == 3  # 115 jobs in pages of 40
    assert pages[1].url.params["after"] == str(even[39])
    assert sorted(pages[0].url.params.get_list("tag")) == ["parity:0", "set:f"]
    assert query.count() == len(even)
    assert recorder.requests[-1].url.path == "/jobs/count"
    assert query.first() is not None and query.first().id == even[0]  # type: ignore[union-attr]
    assert query.limit(5).ids() == even[:5]
    assert query.filter(id=even[3:6]).ids() == even[3:6]
    # AND semantics: two different single values, or disjoint lists, match nothing without a request
    sent = len(recorder.requests)
    assert list(query.filter(state="RUNNING")) == []
    assert query.filter(tags={"parity": "1"}).count() == 0
    assert len(recorder.requests) == sent
    with pytest.raises(TypeError, match="cannot filter /jobs by 'colour'"):
        client.jobs.all().filter(colour="red")


def test_a_filter_by_thousands_of_ids_is_sent_in_parts_in_id_order(
    client: Client, ws: Workspace, recorder: RecordingTransport
) -> None:
    jobs = client.jobs.bulk_create(
        {"app_id": ws.app.id, "workdir": f"ids/{i}"} for i in range(2 * ID_CHUNK + 30)
    )
    ids = [job.id for job in jobs]
    wanted = ids[::-1] + ids[:5]  # any order, repeats allowed
    query = client.jobs.filter(id=wanted)
    recorder.requests.clear()
    assert [job.id for job in query] == ids  # every one once, ascending
    assert len(recorder.calls("GET", "/jobs")) == 3
    assert max(len(str(r.url)) for r in recorder.requests) < 10_000
    assert query.count() == len(ids)
    assert [job.id for job in query.limit(ID_CHUNK + 3)] == ids[: ID_CHUNK + 3]
    assert query.filter(state="PREPROCESSED").count() == len(ids)
    assert query.filter(id=ids[-2:]).ids() == ids[-2:]

    events = client.events.filter(job_id=wanted)  # parts by job id, merged back into event-id order
    recorder.requests.clear()
    seen = [event.id for event in events]
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {event.job_id for event in events} == set(ids)
    assert len(seen) == events.count() == client.events.filter(site_id=ws.site.id).count()
    assert max(len(str(r.url)) for r in recorder.requests) < 10_000
    assert [e.id for e in events.limit(7)] == seen[:7]


def test_update_cancel_delete(client: Client, ws: Workspace) -> None:
    jobs = client.jobs.bulk_create([{"app_id": ws.app.id, "workdir": f"u/{i}"} for i in range(3)])
    ids = [job.id for job in jobs]
    result = client.jobs.update(jobs, priority=7, tags={"x": "1"})
    assert result.count == 3 and result.ids == ids
    assert {job.priority for job in client.jobs.filter(id=ids)} == {7}
    client.jobs.bulk_update([{"id": ids[0], "data": {"note": "first"}}])
    assert client.jobs.get(ids[0]).data == {"note": "first"}
    with pytest.raises(Conflict, match="JOB_FINISHED"):
        client.jobs.update(ids[0], state="JOB_FINISHED")
    with pytest.raises(ValidationError, match="reported by the launcher session"):
        client.jobs.update(ids[0], state="RUNNING")

    cancelled = client.jobs.cancel(ids[:2])
    assert cancelled.ids == ids[:2]
    assert client.jobs.cancel(ids[:2]).count == 0  # already ended: left alone
    assert [e.to_state for e in client.jobs.events(ids[0])][-1] is JobState.KILLED
    assert client.jobs.filter(id=ids, state="KILLED").count() == 2

    assert client.jobs.delete(ids[2]).count == 1
    with pytest.raises(NotFound, match=f"job {ids[2]} not found"):
        client.jobs.get(ids[2])
