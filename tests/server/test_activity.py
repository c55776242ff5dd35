"""activity_minutes: the per-minute counts of state changes match the event log, written in the same
transaction (a refused batch counts nothing), per site, app and experiment tag."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.server.db.tables import activity_minutes, events, jobs, users
from beambridge.server.jobs.activity import minute_of
from tests.conftest import ApiUser
from tests.server.helpers import acquire, report


def _owner(server_app: FastAPI, user: ApiUser) -> int:
    with server_app.state.ctx.db.read() as conn:
        return int(conn.execute(sa.select(users.c.id).where(users.c.name == user.name)).scalar_one())


def _counts(server_app: FastAPI, owner_id: int) -> Counter[tuple]:
    a = activity_minutes.c
    with server_app.state.ctx.db.read() as conn:
        rows = conn.execute(
            sa.select(a.to_state, a.minute, a.site_id, a.app_id, a.experiment, a.count).where(
                a.owner_id == owner_id
            )
        )
        return Counter(
            {(r.to_state, minute_of(r.minute), r.site_id, r.app_id, r.experiment): r.count for r in rows}
        )


def _from_events(server_app: FastAPI, owner_id: int) -> Counter[tuple]:
    with server_app.state.ctx.db.read() as conn:
        rows = conn.execute(
            sa.select(events.c.to_state, events.c.timestamp, events.c.site_id, jobs.c.app_id, jobs.c.tags)
            .join(jobs, jobs.c.id == events.c.job_id)
            .where(events.c.owner_id == owner_id, events.c.from_state != events.c.to_state)
        )
        return Counter(
            (r.to_state, minute_of(r.timestamp), r.site_id, r.app_id, r.tags.get("experiment", ""))
            for r in rows
        )


def test_counts_follow_the_events(server_app: FastAPI, alice: ApiUser, bob: ApiUser) -> None:
    owner = _owner(server_app, alice)
    site = alice.site()
    app, other = alice.app(site["id"], name="One"), alice.app(site["id"], name="Two")
    made = alice.jobs([
        {"app_id": app["id"], "workdir": "a", "tags": {"experiment": "A001", "scan": "1"}},
        {"app_id": app["id"], "workdir": "b", "tags": {"experiment": "A001"}},
        {"app_id": other["id"], "workdir": "c", "tags": {"experiment": "B002"}},
        {"app_id": other["id"], "workdir": "d"},
    ])  # fmt: skip
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=4)
    ids = [j["id"] for j in made]
    report(alice, session["id"], [{"id": i, "state": "RUNNING"} for i in ids])
    report(alice, session["id"], [{"id": ids[0], "state": "RUN_DONE"}, {"id": ids[2], "state": "RUN_ERROR"}])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [ids[3]]}))
    # a refused batch (a job already killed) changes nothing, counts included
    before = _counts(server_app, owner)
    refused = alice.http.post(
        f"/sessions/{session['id']}/report", json={"reports": [{"id": ids[1], "state": "RUN_DONE"},
                                                                {"id": ids[3], "state": "RUN_DONE"}]}
    )  # fmt: skip
    assert refused.status_code == 409
    assert _counts(server_app, owner) == before
    counts = _counts(server_app, owner)
    assert counts == _from_events(server_app, owner)
    by_experiment = Counter()
    for (state, _minute, _site, _app, experiment), n in counts.items():
        by_experiment[(state, experiment)] += n
    assert by_experiment[("RUNNING", "A001")] == 2 and by_experiment[("RUNNING", "B002")] == 1
    assert by_experiment[("RUNNING", "")] == 1 and by_experiment[("KILLED", "")] == 1
    assert by_experiment[("RUN_ERROR", "B002")] == 1
    assert {k[3] for k in counts if k[4] == "B002"} == {other["id"]}
    assert _counts(server_app, _owner(server_app, bob)) == Counter()
    # a deleted site takes its counts along
    alice.ok(alice.http.delete(f"/sites/{site['id']}"), 204)
    assert _counts(server_app, owner) == Counter()
