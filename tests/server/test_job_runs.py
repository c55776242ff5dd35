"""job_runs: every run recorded with the events (node, slot, pilot, end), whatever way it ends; the
weather plot puts runs on the slot their launcher reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.server.auth.tokens import Principal
from beambridge.server.console import weather
from beambridge.server.db.tables import job_runs
from tests.conftest import ApiUser
from tests.server.helpers import acquire, report


def _runs(server_app: FastAPI, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    with server_app.state.ctx.db.read() as conn:
        rows = conn.execute(sa.select(job_runs).where(job_runs.c.job_id.in_(job_ids)).order_by(job_runs.c.id))
        out: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            out.setdefault(row.job_id, []).append(dict(row._mapping))
        return out


def test_runs_open_and_close_with_the_events(server_app: FastAPI, alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    jobs = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}", "retry_limit": 2} for i in range(4)])
    quick, retried, killed, open_ = (j["id"] for j in jobs)
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=4)
    where = {"node": "nid0007", "slot": 3}
    # one batch: a run that starts and ends, and runs that only start
    report(alice, session["id"], [
        {"id": quick, "state": "RUNNING", "state_data": where}, {"id": quick, "state": "RUN_DONE"},
        *({"id": i, "state": "RUNNING", "state_data": {"node": "nid0002", "slot": True}} for i in (retried, killed, open_)),
    ])  # fmt: skip
    report(alice, session["id"], [{"id": retried, "state": "RUN_ERROR", "error": "boom"}])
    acquire(alice, session["id"], max_jobs=1)  # the retry (RESTART_READY → acquired again)
    report(
        alice,
        session["id"],
        [{"id": retried, "state": "RUNNING", "state_data": {"node": "nid0003", "slot": 1}}],
    )
    report(alice, session["id"], [{"id": retried, "state": "RUN_DONE"}])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [killed]}))
    runs = _runs(server_app, [quick, retried, killed, open_])
    [q] = runs[quick]
    assert (q["node"], q["slot"], q["end_state"]) == ("nid0007", 3, "RUN_DONE") and q["ended_at"] >= q[
        "started_at"
    ]
    assert [(r["node"], r["slot"], r["end_state"]) for r in runs[retried]] == [
        ("nid0002", None, "RUN_ERROR"), ("nid0003", 1, "RUN_DONE"),  # a bool is no slot
    ]  # fmt: skip
    assert [r["end_state"] for r in runs[killed]] == ["KILLED"]
    assert [(r["end_state"], r["ended_at"]) for r in runs[open_]] == [(None, None)]
    # a lost session times the open run out
    alice.ok(alice.http.delete(f"/sessions/{session['id']}"), 204)
    assert [r["end_state"] for r in _runs(server_app, [open_])[open_]] == ["RUN_TIMEOUT"]
    alice.ok(alice.http.delete(f"/jobs/{quick}"), 204)
    assert _runs(server_app, [quick]) == {}


def test_weather_rows_follow_reported_slots(server_app: FastAPI, alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    jobs = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(5)])
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=5)
    places = [("a", 0), ("a", 4), ("b", 2), ("a", 4), ("b", None)]
    report(alice, session["id"], [
        {"id": j["id"], "state": "RUNNING", "state_data": {"node": n} | ({} if s is None else {"slot": s})}
        for j, (n, s) in zip(jobs, places, strict=True)
    ])  # fmt: skip
    report(alice, session["id"], [{"id": j["id"], "state": "RUN_DONE"} for j in jobs])
    now = datetime.now(UTC)
    with server_app.state.ctx.db.read() as conn:
        user_id = conn.execute(
            sa.select(job_runs.c.owner_id).where(job_runs.c.job_id == jobs[0]["id"])
        ).scalar_one()
        runs = weather.read_runs(
            conn, Principal(user_id=user_id), now - timedelta(hours=1), now + timedelta(minutes=1)
        )
    assert len(runs.start) == 5 and set(runs.outcome.tolist()) == {0}
    rows, layout = weather.assign_slots(runs)
    assert layout == [
        ("a", 0, 2),
        ("b", 2, 2),
    ]  # a: slots 0 and 4; b: slot 2 and one lane for the slotless run
    by_place = {(str(n), int(s)): int(r) for n, s, r in zip(runs.node, runs.slot, rows, strict=True)}
    assert by_place == {("a", 0): 0, ("a", 4): 1, ("b", 2): 2, ("b", -1): 3}
    assert np.all(runs.end >= runs.start)
