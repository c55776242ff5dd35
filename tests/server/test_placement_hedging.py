"""Hedged copies made by the service: a job submitted with ``hedge=True`` that passes the 95th percentile
of its predicted finish gets a copy on the other site; the first run to finish wins, the other is
cancelled, and the job finishes exactly once with both runs in its history — also when both launchers
report at the same moment. Through a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ApiUser
from tests.server.helpers import acquire, report, states
from tests.server.placement_fixtures import TwoSites, eventually

# A site whose configuration says: echo runs in 0.1 s, a pilot waits 0.1 s. Predicted p95 finish ≈ 1 s.
QUICK = {"placement": {"priors": {"run_time_s": {"echo": 0.1}, "queue_wait_s": 0.1, "dispatch_s": 0.05}}}


@contextmanager
def alive(sites: TwoSites) -> Iterator[None]:
    """Both sites keep sending heartbeats (the fast server calls a site down after 2 s of silence)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.3):
            with suppress(httpx.HTTPError):
                sites.beat()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def quick(sites: TwoSites) -> None:
    for site in (sites.a, sites.b):
        sites.user.ok(sites.user.http.patch(f"/sites/{site['id']}", json={"status": QUICK}))


def events(user: ApiUser, job_id: int) -> list[dict[str, Any]]:
    return user.ok(user.http.get(f"/jobs/{job_id}/events"))  # type: ignore[return-value]


def hedged(user: ApiUser, job_ids: list[int], timeout: float = 60.0) -> dict[int, int]:
    """Wait until every job of ``job_ids`` has a copy; original → copy."""

    def copies() -> dict[int, int] | None:
        found = {}
        for job_id in job_ids:
            marks = [e["data"] for e in events(user, job_id) if e["data"].get("placement") == "hedged"]
            if marks:
                found[job_id] = marks[0]["copy"]
        return found if len(found) == len(job_ids) else None

    return eventually(copies, "hedged copies", timeout)  # type: ignore[no-any-return]


def submit(sites: TwoSites, count: int, **extra: Any) -> list[dict[str, Any]]:
    specs = [
        {
            "app": "echo",
            "sites": ["a", "b"],
            "workdir": f"w/{i}",
            "parameters": {"n": i},
            "hedge": True,
            "tags": {"i": str(i)},
            **extra,
        }
        for i in range(count)
    ]
    return sites.user.jobs(specs)


def site_of(sites: TwoSites, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's site and the other one."""
    return (sites.a, sites.b) if job["site_id"] == sites.a["id"] else (sites.b, sites.a)


def heartbeat(user: ApiUser, session_id: int) -> list[int]:
    return user.ok(user.http.post(f"/sessions/{session_id}/heartbeat"))["killed_job_ids"]  # type: ignore[index]


@dataclass
class RunningPair:
    """A hedged job whose original and copy both run, each in a launcher session of its own site."""

    job: dict[str, Any]
    home: dict[str, Any]
    other: dict[str, Any]
    original_session: int
    copy_id: int
    copy_session: int


def both_running(sites: TwoSites, **extra: Any) -> RunningPair:
    """Submit one job, run it at its site, wait for its copy and run that at the other site."""
    user = sites.user
    [job] = submit(sites, 1, **extra)
    original_session = claim(sites, job["id"], job["tags"])
    home, other = site_of(sites, sites.job(job["id"]))
    report(user, original_session, [{"id": job["id"], "state": "RUNNING"}])
    copy_id = hedged(user, [job["id"]])[job["id"]]
    copy_session = user.session(other["id"])["id"]
    assert [j["id"] for j in acquire(user, copy_session, max_jobs=5)] == [copy_id]
    report(user, copy_session, [{"id": copy_id, "state": "RUNNING"}])
    return RunningPair(job, home, other, original_session, copy_id, copy_session)


def finishes(user: ApiUser, job_id: int) -> int:
    return sum(1 for e in events(user, job_id) if e["to_state"] == "JOB_FINISHED")


def test_the_copy_finishing_first_is_adopted_and_the_original_run_is_stopped(two_sites: TwoSites) -> None:
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        pair = both_running(two_sites)
        job, other, copy_id = pair.job, pair.other, pair.copy_id
        slow, fast = {"id": pair.original_session}, {"id": pair.copy_session}
        copy = two_sites.job(copy_id)
        assert copy["site_id"] == other["id"] and copy["hedge_of"] == job["id"]
        assert copy["tags"] == {**job["tags"], "hedge_copy_of": str(job["id"])}
        assert copy["workdir"] == job["workdir"] and copy["parameters"] == job["parameters"]
        report(
            alice, fast["id"], [{"id": copy_id, "state": "RUN_DONE", "return_code": 0, "result": {"g2": 1.5}}]
        )

    done = two_sites.job(job["id"])
    assert done["state"] == "JOB_FINISHED" and done["result"] == {"g2": 1.5}
    assert done["site_id"] == other["id"], "the job is where its finished run was"
    assert states(alice, [copy_id]) == {copy_id: "KILLED"}
    assert finishes(alice, job["id"]) == 1 and finishes(alice, copy_id) == 0
    history = events(alice, job["id"])
    path = [e["to_state"] for e in history if e["from_state"] != e["to_state"]]
    assert path[-4:] == [
        "RUNNING",
        "RUN_DONE",
        "POSTPROCESSED",
        "JOB_FINISHED",
    ]  # its own run, then the copy's
    [marked] = [e for e in history if e["data"].get("placement") == "hedged"]
    assert marked["actor"] == "placement"
    [adopted] = [e for e in history if e["data"].get("hedge") == "copy won"]
    assert adopted["from_state"] == "RUNNING" and adopted["data"]["copy"] == copy_id
    assert adopted["site_id"] == other["id"]
    [won] = [e for e in events(alice, copy_id) if e["to_state"] == "KILLED"]
    assert won["data"]["hedge"] == "won" and won["data"]["job"] == job["id"]
    # the slow launcher is told to stop its run, and its late report changes nothing
    assert job["id"] in heartbeat(alice, slow["id"])
    late = alice.http.post(
        f"/sessions/{slow['id']}/report", json={"reports": [{"id": job["id"], "state": "RUN_DONE"}]}
    )
    assert late.status_code == 409 and "held by no session" in late.text
    assert two_sites.job(job["id"])["state"] == "JOB_FINISHED" and finishes(alice, job["id"]) == 1


def test_the_original_finishing_first_cancels_the_copy(two_sites: TwoSites) -> None:
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        pair = both_running(two_sites)
        job, home, copy_id = pair.job, pair.home, pair.copy_id
        first, second = {"id": pair.original_session}, {"id": pair.copy_session}
        report(alice, first["id"], [{"id": job["id"], "state": "RUN_DONE", "return_code": 0}])
    assert states(alice, [job["id"], copy_id]) == {job["id"]: "JOB_FINISHED", copy_id: "KILLED"}
    assert two_sites.job(job["id"])["site_id"] == home["id"]
    assert copy_id in heartbeat(alice, second["id"])  # its launcher stops the copy
    late = alice.http.post(
        f"/sessions/{second['id']}/report", json={"reports": [{"id": copy_id, "state": "RUN_DONE"}]}
    )
    assert late.status_code == 409 and "killed" in late.text
    [lost] = [e for e in events(alice, copy_id) if e["to_state"] == "KILLED"]
    assert lost["data"]["hedge"] == "lost"
    assert any(e["data"].get("hedge") == "original won" for e in events(alice, job["id"]))
    assert finishes(alice, job["id"]) == 1


def test_a_copy_waiting_for_a_slot_wins_over_an_original_never_started(two_sites: TwoSites) -> None:
    """The original was never acquired (its site's pilots are busy): the copy runs and the original adopts it
    from PREPROCESSED; nothing is left for the first site to run."""
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        [job] = submit(two_sites, 1)
        home, other = site_of(two_sites, job)
        copy_id = hedged(alice, [job["id"]])[job["id"]]
        session = alice.session(other["id"])
        assert [j["id"] for j in acquire(alice, session["id"], max_jobs=5)] == [copy_id]
        report(alice, session["id"], [{"id": copy_id, "state": "RUNNING"}])
        report(alice, session["id"], [{"id": copy_id, "state": "RUN_DONE", "return_code": 0}])
        assert acquire(alice, alice.session(home["id"])["id"], max_jobs=5) == []
    assert states(alice, [job["id"], copy_id]) == {job["id"]: "JOB_FINISHED", copy_id: "KILLED"}
    [adopted] = [e for e in events(alice, job["id"]) if e["data"].get("hedge") == "copy won"]
    assert adopted["from_state"] == "PREPROCESSED"


def test_cancelling_the_original_cancels_its_copy_and_a_failed_copy_leaves_the_original(
    two_sites: TwoSites,
) -> None:
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        jobs = submit(two_sites, 2, retry_limit=0)
        copies = hedged(alice, [j["id"] for j in jobs])
    cancelled, kept = jobs
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [cancelled["id"]]}))
    assert states(alice, [cancelled["id"], copies[cancelled["id"]]]) == {
        cancelled["id"]: "KILLED",
        copies[cancelled["id"]]: "KILLED",
    }
    copy = two_sites.job(copies[kept["id"]])
    session = alice.session(copy["site_id"])
    acquire(alice, session["id"], max_jobs=5)
    report(alice, session["id"], [{"id": copy["id"], "state": "RUNNING"}])
    report(alice, session["id"], [{"id": copy["id"], "state": "RUN_ERROR", "return_code": 3}])
    assert states(alice, [kept["id"], copy["id"]]) == {kept["id"]: "PREPROCESSED", copy["id"]: "FAILED"}


def claim(sites: TwoSites, job_id: int, tags: dict[str, str]) -> int:
    """A new session at the job's site that acquired exactly that job (its ``tags`` name it and, once it is
    hedged, its copy; a loaded machine may have let a site go quiet and the job move, so its site is read
    afresh)."""

    def take() -> int | None:
        session = sites.user.session(sites.job(job_id)["site_id"])
        got = [j["id"] for j in acquire(sites.user, session["id"], max_jobs=50, filter_tags=tags)]
        if got and got != [job_id]:
            # on a loaded machine the job may be hedged before it is claimed: its copy carries its tags
            assert [sites.job(j)["tags"].get("hedge_copy_of") for j in got] == [str(job_id)], got
            sites.user.ok(sites.user.http.delete(f"/sessions/{session['id']}"), 204)  # copy goes back unrun
            return None
        return session["id"] if got else None

    return eventually(take, f"a launcher holding job {job_id}")  # type: ignore[no-any-return]


def report_together(user: ApiUser, runs: list[tuple[int, int]]) -> dict[int, int]:
    """``RUN_DONE`` of every (session, job) of ``runs``, sent by one thread each, released together; the
    answer's status per job."""
    barrier = threading.Barrier(len(runs))
    codes: dict[int, int] = {}
    errors: dict[int, str] = {}

    def finish(session_id: int, job_id: int) -> None:
        # httpx's default 5 s is too short for 8 writers released together on a loaded machine
        with httpx.Client(base_url=str(user.http.base_url), headers=user.http.headers, timeout=60) as http:
            barrier.wait()
            body = {"reports": [{"id": job_id, "state": "RUN_DONE", "return_code": 0, "result": job_id}]}
            try:
                codes[job_id] = http.post(f"/sessions/{session_id}/report", json=body).status_code
            except httpx.HTTPError as exc:
                errors[job_id] = repr(exc)

    threads = [threading.Thread(target=finish, args=run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return codes


@pytest.mark.parametrize("rounds", [3])
def test_both_runs_reported_at_the_same_moment_finish_the_job_exactly_once(
    two_sites: TwoSites, rounds: int
) -> None:
    """Both launchers of every pair report RUN_DONE at once, from threads released together: per pair one
    report is taken and the other refused (409, never a 5xx), and the job finishes exactly once."""
    alice = two_sites.user
    quick(two_sites)
    pairs: dict[int, int] = {}
    with alive(two_sites):
        for r in range(rounds):
            specs = [
                {"app": "echo", "sites": ["a", "b"], "workdir": f"w/{r}/{i}", "parameters": {"n": i}, "hedge": True,
                 "policy": "round_robin", "tags": {"run": f"{r}.{i}"}}
                for i in range(4)
            ]  # fmt: skip
            jobs = alice.jobs(specs)
            for job in jobs:  # each run in a session of its own, holding exactly that job
                job["session"] = claim(two_sites, job["id"], job["tags"])
                report(alice, job["session"], [{"id": job["id"], "state": "RUNNING"}])
            copies = hedged(alice, [j["id"] for j in jobs])
            runs: list[tuple[int, int]] = []
            for job in jobs:
                copy_id = copies[job["id"]]
                session_id = claim(two_sites, copy_id, {"hedge_copy_of": str(job["id"])})
                report(alice, session_id, [{"id": copy_id, "state": "RUNNING"}])
                runs += [(job["session"], job["id"]), (session_id, copy_id)]
            pairs.update(copies)
            codes = report_together(alice, runs)
            assert set(codes.values()) <= {200, 409}, f"round {r}: {codes}"
            for job in jobs:
                taken = [codes[job["id"]], codes[copies[job["id"]]]]
                assert sorted(taken) == [200, 409], f"round {r}, job {job['id']}: {taken}"
    for original, copy in pairs.items():
        assert states(alice, [original, copy]) == {original: "JOB_FINISHED", copy: "KILLED"}
        assert finishes(alice, original) == 1 and finishes(alice, copy) == 0
        result = two_sites.job(original)["result"]
        assert result in (original, copy)  # the winner's result, whichever it was


def test_a_copy_is_marked_carries_the_tags_and_listings_can_leave_copies_out(two_sites: TwoSites) -> None:
    """A copy is a job of its own: it says whose copy it is (``hedge_of``), ``GET /jobs`` can leave copies
    out or list only them, and it carries the original's tags, so a launcher that takes only jobs with
    some tags takes the copy too."""
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        [job, plain] = submit(two_sites, 2)
        copy_id = hedged(alice, [job["id"]])[job["id"]]
        copy = two_sites.job(copy_id)
        assert copy["hedge_of"] == job["id"] and two_sites.job(job["id"])["hedge_of"] is None
        mine = {job["id"], plain["id"], copy_id}

        def listed(query: str) -> set[int]:
            page = alice.ok(alice.http.get(f"/jobs?{query}&limit=100"))
            return {j["id"] for j in page["items"]} & mine  # type: ignore[index]

        copies = hedged(alice, [plain["id"]])  # the other job's copy too, so both kinds are listed
        mine.add(copies[plain["id"]])
        assert listed("copies=false") == {job["id"], plain["id"]}
        assert listed("copies=true") == {copy_id, copies[plain["id"]]}
        assert listed(f"hedge_of={job['id']}") == {copy_id}
        count = alice.ok(alice.http.get(f"/jobs/count?copies=true&hedge_of={job['id']}"))
        assert count == {"count": 1}
        for bad in ("copies=maybe", "hedge_of=0", "hedge_of=x"):
            response = alice.http.get(f"/jobs?{bad}")
            assert response.status_code == 422, bad
        # a launcher at the copy's site that takes only jobs tagged i=0 takes the copy
        session = alice.session(copy["site_id"])
        got = acquire(alice, session["id"], max_jobs=5, filter_tags={"i": "0"})
        assert [j["id"] for j in got] == [copy_id]


def test_a_failed_original_never_adopts_its_copy_and_a_retried_original_is_hedged_again(
    two_sites: TwoSites,
) -> None:
    """The original's run fails for good while its copy runs: the copy is cancelled with it (a FAILED job
    never takes a run over), and the copy's late result is refused. A copy is never retried; retrying the
    original sends it back to run, and it can get a new copy when it is late again."""
    alice = two_sites.user
    quick(two_sites)
    with alive(two_sites):
        pair = both_running(two_sites, retry_limit=0)
        job, copy_id = pair.job, pair.copy_id
        first, second = pair.original_session, {"id": pair.copy_session}
        report(alice, first, [{"id": job["id"], "state": "RUN_ERROR", "return_code": 1}])
        assert states(alice, [job["id"], copy_id]) == {job["id"]: "FAILED", copy_id: "KILLED"}
        late = alice.http.post(
            f"/sessions/{second['id']}/report", json={"reports": [{"id": copy_id, "state": "RUN_DONE"}]}
        )
        assert late.status_code == 409
        assert two_sites.job(job["id"])["state"] == "FAILED" and finishes(alice, job["id"]) == 0
        [ended] = [e for e in events(alice, copy_id) if e["to_state"] == "KILLED"]
        assert ended["data"]["hedge"] == "ended"

        refused = alice.ok(alice.http.post("/jobs/retry", json={"ids": [copy_id]}))
        assert refused["count"] == 0  # type: ignore[index]
        assert "a hedged copy of job" in refused["skipped"][0]["reason"]  # type: ignore[index]
        by_tag = alice.ok(alice.http.post("/jobs/retry", json={"tags": {"hedge_copy_of": str(job["id"])}}))
        assert by_tag["count"] == 0  # type: ignore[index]
        assert states(alice, [copy_id]) == {copy_id: "KILLED"}

        retried = alice.ok(alice.http.post("/jobs/retry", json={"ids": [job["id"]]}))
        assert retried["ids"] == [job["id"]]  # type: ignore[index]

        def second_copy() -> int | None:
            marks = [
                e["data"]["copy"] for e in events(alice, job["id"]) if e["data"].get("placement") == "hedged"
            ]
            return marks[1] if len(marks) == 2 else None

        again = eventually(second_copy, "a new copy after the retry", 20)
    assert again != copy_id and two_sites.job(again)["hedge_of"] == job["id"]
    assert states(alice, [copy_id]) == {copy_id: "KILLED"}
