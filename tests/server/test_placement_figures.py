"""What a site's agent reports for placement (``status.placement``: scheduler-command failures, timed
transfer tasks, the configured priors) and how the service uses it — including reports it must ignore.
Through the tests' shared server (sites go down after 180 s of silence, so only the reports count)."""

from __future__ import annotations

import math
import re
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.placement import HealthState, HealthThresholds
from beambridge.server.db.tables import BACKLOG_SQL, users
from beambridge.server.placement.snapshot import WAITING_STATES, build_snapshot
from tests.conftest import ApiUser
from tests.server.helpers import acquire, report
from tests.server.placement_fixtures import eventually
from tests.server.test_placement_service import live_site, placement_events


def set_figures(user: ApiUser, site: dict[str, Any], figures: Any) -> None:
    user.ok(user.http.patch(f"/sites/{site['id']}", json={"status": {"placement": figures}}))


def outlook(user: ApiUser) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in user.ok(user.http.get("/placement/sites"))}  # type: ignore[union-attr]


def site_with_a_pilot(user: ApiUser) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A live site ``a``, its app, and a launcher session of a one-node pilot there."""
    a = live_site(user, "a")
    [app] = [x for x in user.ok(user.http.get("/apps"))["items"] if x["site_id"] == a["id"]]  # type: ignore[index]
    body = {"site_id": a["id"], "num_nodes": 1, "wall_time_min": 30, "queue": "q", "project": "p"}
    batch = user.ok(user.http.post("/batch-jobs", json=body), 201)
    session = user.ok(
        user.http.post("/sessions", json={"site_id": a["id"], "batch_job_id": batch["id"]}), 201
    )
    return a, app, session  # type: ignore[return-value]


def job(user: ApiUser, job_id: int) -> dict[str, Any]:
    return user.ok(user.http.get(f"/jobs/{job_id}"))  # type: ignore[return-value]


def test_failing_scheduler_commands_take_a_site_down_and_its_unclaimed_jobs_leave(alice: ApiUser) -> None:
    a, b = live_site(alice, "a"), live_site(alice, "b")
    error = "sbatch: error: Batch job submission failed"
    set_figures(alice, a, {"scheduler_failures": 3, "scheduler_error": error})
    seen = outlook(alice)["a"]
    assert seen["health"] == "degraded" and seen["accepts_work"]
    assert seen["reasons"] == [f"3 scheduler commands failed in a row (last: {error})"]
    spec = {"app": "echo", "sites": ["a", "b"], "parameters": {"n": 1}, "policy": "round_robin"}
    placed = alice.jobs([{**spec, "workdir": f"w/{i}"} for i in range(2)])
    [moving] = [j for j in placed if j["site_id"] == a["id"]]
    set_figures(alice, a, {"scheduler_failures": 10, "scheduler_error": "squeue: timeout"})
    seen = outlook(alice)["a"]
    assert seen["health"] == "down" and not seen["accepts_work"]
    assert eventually(lambda: job(alice, moving["id"])["site_id"] == b["id"], "re-placement", 20)
    [moved] = [d for d in placement_events(alice, moving["id"]) if d["placement"] == "re-placed"]
    assert "scheduler commands failed" in str(moved["decision"]["estimates"])
    [later] = alice.jobs([{**spec, "workdir": "w/later"}])
    assert later["site_id"] == b["id"], "no new work for a site whose scheduler fails"
    set_figures(alice, a, {"scheduler_failures": 0})  # one command succeeded: up again
    assert outlook(alice)["a"]["health"] == "up"


def test_configured_priors_reach_the_decision(alice: ApiUser) -> None:
    a, b = live_site(alice, "a"), live_site(alice, "b")
    set_figures(
        alice, a, {"priors": {"run_time_s": {"echo": 42.0}, "queue_wait_s": 7.0, "run_time_spread": 1.0}}
    )
    set_figures(alice, b, {"priors": {"run_time_s": {"echo": 4200.0}}})
    [placed] = alice.jobs([{"app": "echo", "workdir": "w", "parameters": {"n": 1}}])
    assert placed["site_id"] == a["id"], "the site its configuration says is quicker"
    [data] = placement_events(alice, placed["id"])
    est = {e["site"]: e for e in data["decision"]["estimates"]}
    assert est["a"]["run_s"] == pytest.approx(42.0) and est["a"]["run_basis"] == "prior"
    assert est["b"]["run_s"] == pytest.approx(4200.0)
    assert est["a"]["wait_s"] == pytest.approx(7.0 + 1.0)  # a new pilot's queue wait, then dispatch


@pytest.mark.parametrize(
    "figures",
    [
        "not an object",
        {"scheduler_failures": -1},
        {"scheduler_failures": "many"},
        {"scheduler_failures": 1e30},
        {"priors": {"run_time_s": {"echo": -5}}},
        {"priors": {"transfer_rate_bps": 0}},
        {"transfers": {"aps": [{"bytes": 1, "seconds": 1}]}},  # no time
        {"transfers": {"aps": "fast"}},
        {"unknown": 1},
        [1, 2, 3],
    ],
)
def test_malformed_agent_figures_are_ignored_never_an_error(alice: ApiUser, figures: Any) -> None:
    a = live_site(alice, "a")
    set_figures(alice, a, figures)
    assert outlook(alice)["a"]["health"] == "up"
    [placed] = alice.jobs([{"app": "echo", "sites": ["a"], "workdir": "w", "parameters": {"n": 1}}])
    [data] = placement_events(alice, placed["id"])
    [est] = data["decision"]["estimates"]
    assert est["run_basis"] == "prior" and math.isfinite(est["finish_s"])


def test_a_measured_transfer_rate_is_used_for_stage_in(alice: ApiUser) -> None:
    """The agent's timed transfer tasks from location ``aps_dtn`` give the route's model at a (1 s per task
    plus 1 MB/s); b, with none, keeps the prior (5 s per task, 100 MB/s). The job's size is unknown to the
    service, so its stage-in is the per-task overhead: measured at a, configured at b."""
    slot = {"in": {"direction": "in", "local_path": "in.dat"}}
    a = live_site(alice, "a", app="copyin", transfer_slots=slot)  # both sites have the alias aps_dtn
    live_site(alice, "b", app="copyin", transfer_slots=slot)
    samples = [
        {"bytes": n * 1e6, "seconds": 1.0 + n, "at": time.time() - 10, "ok": True} for n in (1, 2, 4, 8, 16)
    ]
    set_figures(alice, a, {"transfers": {"aps_dtn": samples}})
    [placed] = alice.jobs(
        [{"app": "copyin", "workdir": "t", "parameters": {"n": 1}, "transfers": {"in": "aps_dtn:/x.dat"}}]
    )
    [data] = placement_events(alice, placed["id"])
    est = {e["site"]: e for e in data["decision"]["estimates"]}
    assert est["a"]["stage_in_s"] == pytest.approx(1.0) and est["b"]["stage_in_s"] == pytest.approx(5.0)


def test_a_site_at_its_pilot_limit_is_not_credited_with_a_new_pilot(alice: ApiUser) -> None:
    """An agent says how many nodes its elastic queue may hold: a site that may submit no pilot (limit 0)
    and has none running cannot take work; one with room is credited a new pilot's queue wait."""
    a, b = live_site(alice, "a"), live_site(alice, "b")
    set_figures(alice, a, {"max_total_nodes": 0, "max_pilot_nodes": 1})
    set_figures(alice, b, {"max_total_nodes": 4, "max_pilot_nodes": 2, "priors": {"queue_wait_s": 30.0}})
    [placed] = alice.jobs([{"app": "echo", "workdir": "w", "parameters": {"n": 1}}])
    assert placed["site_id"] == b["id"]
    [data] = placement_events(alice, placed["id"])
    est = {e["site"]: e for e in data["decision"]["estimates"]}
    assert est["a"]["status"] == "unavailable"
    assert est["a"]["reasons"] == ["no pilot is running or queued, and the site will not submit one"]
    assert est["b"]["wait_basis"] == "new_pilot" and est["b"]["wait_s"] == pytest.approx(31.0)
    for bad in ({"max_total_nodes": -1}, {"max_pilot_nodes": 0}, {"max_total_nodes": "all"}):
        set_figures(alice, a, bad)  # ignored as a whole: the site keeps the default (one more node)
        assert outlook(alice)["a"]["health"] == "up"


def test_the_turnaround_between_runs_and_the_transfer_routes_are_measured_and_shown(
    alice: ApiUser,
) -> None:
    """Runs one after another on one slot of a pilot, each next job already waiting: the site's turnaround
    (end of one run → start of the next) is measured and shown with its transfer routes (API and CLI)."""
    a, app, session = site_with_a_pilot(alice)
    alice.jobs([{"app_id": app["id"], "workdir": f"t/{i}", "parameters": {"n": i}} for i in range(5)])
    where = {"node": "nid001", "slot": 0}
    for _ in range(5):
        [got] = acquire(alice, session["id"], max_jobs=1)
        report(alice, session["id"], [{"id": got["id"], "state": "RUNNING", "state_data": where}])
        report(alice, session["id"], [{"id": got["id"], "state": "RUN_DONE", "return_code": 0}])
        time.sleep(0.3)
    samples = [{"bytes": n * 1e6, "seconds": 1.0 + n, "at": time.time() - 10} for n in (1, 2, 4, 8, 16)]
    set_figures(alice, a, {"transfers": {"aps_dtn": samples}})
    seen = outlook(alice)["a"]
    assert 0.3 <= seen["turnaround_s"] < 30, seen["turnaround_s"]
    routes = {r["location"]: r for r in seen["routes"]}
    assert set(routes) == {"a", "aps_dtn", "dtn"}  # the aliases the site registered
    assert routes["aps_dtn"]["basis"] == "history" and routes["aps_dtn"]["samples"] == 5
    assert routes["aps_dtn"]["rate_bps"] == pytest.approx(1e6, rel=1e-3)
    assert routes["aps_dtn"]["overhead_s"] == pytest.approx(1.0, abs=1e-3)
    assert routes["dtn"]["basis"] == "prior" and routes["dtn"]["rate_bps"] == pytest.approx(100e6)


def test_a_quiet_site_is_seen_with_the_time_until_it_would_be_called_down(
    alice: ApiUser, server_app: FastAPI
) -> None:
    """The snapshot of a site whose agent has been silent past the degraded threshold carries the seconds
    left until it would be called down (placement adds them to its wait); a site just heard from, none."""
    live_site(alice, "a")
    ctx = server_app.state.ctx
    thresholds = HealthThresholds(heartbeat_degraded_s=90.0, heartbeat_down_s=180.0)
    with ctx.db.read() as conn:
        owner = conn.execute(sa.select(users.c.id).where(users.c.name == alice.name)).scalar_one()
        now = time.time()
        quiet = build_snapshot(conn, owner, now + 100.0, thresholds=thresholds).snapshot.by_name["a"]
        fresh = build_snapshot(conn, owner, now, thresholds=thresholds).snapshot.by_name["a"]
        gone = build_snapshot(conn, owner, now + 200.0, thresholds=thresholds).snapshot.by_name["a"]
    assert quiet.health.state is HealthState.DEGRADED and quiet.silent_s == pytest.approx(80.0, abs=5.0)
    assert fresh.health.state is HealthState.UP and fresh.silent_s == 0.0
    assert gone.health.state is HealthState.DOWN and gone.silent_s == 0.0  # down: it takes no work at all


def test_the_backlog_index_holds_exactly_the_waiting_states() -> None:
    """ix_jobs_backlog spells the backlog as SQL text (a partial index needs literals); it must name the
    states placement calls waiting, no more and no fewer."""
    for text in BACKLOG_SQL.values():
        named = re.search(r"state IN \(([^)]*)\)", text)
        assert named is not None
        assert sorted(s.strip().strip("'") for s in named.group(1).split(",")) == sorted(
            s.value for s in WAITING_STATES
        )
        assert "session_id IS NULL" in text and "awaiting_placement IS" in text


UNIT_S = 0.8
"""Run time per unit of ``n``. The reports carry the times the runs started and ended, as a launcher's
do: timed by the service's receipt instead, a loaded CI run (4 workers) once measured runs so far off
their ``n`` (median 2.3 s for 0.8-2.4 s sleeps) that the model rightly declined ``n`` as their size."""


def test_dispatch_and_run_time_by_a_numeric_parameter_are_measured(
    alice: ApiUser, server_app: FastAPI
) -> None:
    """Jobs that each come to an idle slot (the one before has finished) give the site's measured dispatch
    (creation → start); their run times follow their parameter ``n``, which the run-time model takes for
    their size, so a job's predicted run is scaled by its own ``n``."""
    _site, app, session = site_with_a_pilot(alice)
    where = {"node": "nid001", "slot": 0}
    sizes = [1, 3, 2, 1, 3, 2]
    run_s = []  # each run as its reports say, to the microsecond
    for i, n in enumerate(sizes):
        alice.jobs([{"app_id": app["id"], "workdir": f"d/{i}", "parameters": {"n": n}}])
        [got] = acquire(alice, session["id"], max_jobs=1)
        started = datetime.now(UTC)
        report(
            alice,
            session["id"],
            [{"id": got["id"], "state": "RUNNING", "state_data": where, "at": started.isoformat()}],
        )
        time.sleep(UNIT_S * n)
        ended = datetime.now(UTC)
        report(
            alice,
            session["id"],
            [{"id": got["id"], "state": "RUN_DONE", "return_code": 0, "at": ended.isoformat()}],
        )
        run_s.append((ended - started).total_seconds())
    ctx = server_app.state.ctx
    thresholds = HealthThresholds(heartbeat_degraded_s=90.0, heartbeat_down_s=180.0)
    with ctx.db.read() as conn:
        owner = conn.execute(sa.select(users.c.id).where(users.c.name == alice.name)).scalar_one()
        seen = build_snapshot(conn, owner, time.time(), thresholds=thresholds).snapshot.by_name["a"]
    assert seen.dispatch_s is not None and 0 < seen.dispatch_s < 10, seen.dispatch_s
    model = seen.run_times["echo"]
    assert model.size_parameter == "n"
    # Theil–Sen: the median of the pairwise slopes of the runs the reports gave
    pairs = [(i, j) for i in range(len(sizes)) for j in range(len(sizes)) if sizes[i] > sizes[j]]
    slope = statistics.median((run_s[i] - run_s[j]) / (sizes[i] - sizes[j]) for i, j in pairs)
    assert model.seconds_per_byte == pytest.approx(slope, abs=3e-3)
    assert model.seconds_per_byte > UNIT_S / 2  # the sleeps alone differ by UNIT_S per unit
    [small, large] = alice.jobs(
        [{"app": "echo", "sites": ["a"], "workdir": f"p/{n}", "parameters": {"n": n}} for n in (1, 4)]
    )
    runs = {}
    for placed in (small, large):
        [data] = placement_events(alice, placed["id"])
        [est] = data["decision"]["estimates"]
        assert est["run_basis"] == "history_scaled"
        runs[placed["id"]] = est["run_s"]
    # Each prediction is the model's line at the job's own n (the intercept absorbs the service's overhead).
    assert runs[large["id"]] - runs[small["id"]] == pytest.approx(3 * model.seconds_per_byte, rel=1e-3)
    assert runs[large["id"]] > runs[small["id"]] + 1.5 * UNIT_S
