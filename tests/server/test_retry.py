"""Retries: a failed run is retried until the retry limit unless the app says ``retry_on_error=False``;
``POST /jobs/retry`` sends FAILED or KILLED jobs back to run (by ids, tags, state) with an event naming who
asked, their failed-while-waiting children with them."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiUser
from tests.server.helpers import acquire, event_path, run_to, states


def _fail_once(user: ApiUser, session: int, ids: list[int]) -> None:
    taken = acquire(user, session, max_jobs=len(ids))
    assert sorted(j["id"] for j in taken) == sorted(ids)
    run_to(user, session, ids, "RUN_ERROR", return_code=3)


def _retry(user: ApiUser, body: dict[str, Any], status: int = 200) -> Any:
    return user.ok(user.http.post("/jobs/retry", json=body), status)


def test_a_failed_run_is_retried_until_the_limit_unless_the_app_says_not(alice: ApiUser) -> None:
    site = alice.site()
    retrying = alice.app(site["id"], "retrying")
    once = alice.app(site["id"], "once", retry_on_error=False)
    assert retrying["retry_on_error"] is True and once["retry_on_error"] is False
    [job] = [j["id"] for j in alice.jobs([{"app_id": retrying["id"], "workdir": "r", "retry_limit": 2}])]
    [single] = [j["id"] for j in alice.jobs([{"app_id": once["id"], "workdir": "o", "retry_limit": 2}])]
    session = alice.session(site["id"])["id"]

    for attempt in (1, 2):
        _fail_once(alice, session, [job])
        assert states(alice, [job])[job] == "RESTART_READY"
        last = alice.ok(alice.http.get(f"/jobs/{job}/events"))[-1]  # type: ignore[index]
        assert last["data"] == {"auto": "run failed; retrying", "retry": f"{attempt} of 2"}
    _fail_once(alice, session, [job])
    assert states(alice, [job])[job] == "FAILED"
    assert event_path(alice, job)[-3:] == ["RUNNING", "RUN_ERROR", "FAILED"]
    assert alice.ok(alice.http.get(f"/jobs/{job}"))["retry_count"] == 2  # type: ignore[index]

    _fail_once(alice, session, [single])
    assert states(alice, [single])[single] == "FAILED"
    last = alice.ok(alice.http.get(f"/jobs/{single}/events"))[-1]  # type: ignore[index]
    assert "retry_on_error=False" in last["data"]["auto"]


def test_retry_by_id_resets_the_count_records_who_and_skips_live_jobs(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    ids = [
        j["id"]
        for j in alice.jobs([{"app_id": app["id"], "workdir": f"w{i}", "retry_limit": 0} for i in range(3)])
    ]
    session = alice.session(site["id"])["id"]
    _fail_once(alice, session, ids[:1])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [ids[1]]}))
    assert states(alice, ids) == {ids[0]: "FAILED", ids[1]: "KILLED", ids[2]: "PREPROCESSED"}

    answer = _retry(alice, {"ids": ids})
    assert answer["count"] == 2 and answer["ids"] == ids[:2]
    assert answer["skipped"] == [
        {
            "id": ids[2],
            "state": "PREPROCESSED",
            "reason": "PREPROCESSED: only FAILED or KILLED jobs can be retried",
        }
    ]
    assert states(alice, ids) == dict.fromkeys(ids, "PREPROCESSED")
    job = alice.ok(alice.http.get(f"/jobs/{ids[0]}"))
    assert (job["retry_count"], job["error"], job["return_code"]) == (0, None, None)  # type: ignore[index]
    events = alice.ok(alice.http.get(f"/jobs/{ids[0]}/events"))
    retried = [e for e in events if e["from_state"] == "FAILED"]  # type: ignore[union-attr]
    assert [(e["to_state"], e["data"]["retried_by"]) for e in retried] == [("STAGED_IN", alice.name)]
    assert retried[0]["data"]["reason"] == f"retried by {alice.name}"

    # back in the pool: a launcher gets them again, and the second run counts from zero
    again = acquire(alice, session, max_jobs=5)
    assert sorted(j["id"] for j in again) == sorted(ids)


def test_retry_by_tag_and_state(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    specs = [
        {"app_id": app["id"], "workdir": f"w{i}", "retry_limit": 0, "tags": {"run": str(i % 2)}}
        for i in range(4)
    ]
    ids = [j["id"] for j in alice.jobs(specs)]
    session = alice.session(site["id"])["id"]
    _fail_once(alice, session, ids[:2])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": ids[2:]}))

    assert _retry(alice, {"tags": {"run": "0"}, "state": ["FAILED"]})["ids"] == [ids[0]]
    assert _retry(alice, {"tags": {"run": "1"}})["ids"] == [ids[1], ids[3]]
    assert _retry(alice, {"state": ["KILLED"]})["ids"] == [ids[2]]
    assert _retry(alice, {"state": ["KILLED"]}) == {"count": 0, "ids": [], "skipped": []}


def test_children_that_failed_waiting_follow_their_parent(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [parent] = [j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "p", "retry_limit": 0}])]
    [child] = [j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "c", "parent_ids": [parent]}])]
    [grandchild] = [
        j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "g", "parent_ids": [child]}])
    ]
    session = alice.session(site["id"])["id"]
    _fail_once(alice, session, [parent])
    assert states(alice, [parent, child, grandchild]) == dict.fromkeys([parent, child, grandchild], "FAILED")

    refused = alice.http.post("/jobs/retry", json={"ids": [child]})
    assert refused.status_code == 409
    assert f"parent job {parent}, which is FAILED" in refused.json()["detail"]
    assert states(alice, [child])[child] == "FAILED"

    answer = _retry(alice, {"ids": [parent]})
    assert answer["ids"] == [parent, child, grandchild]
    assert states(alice, [parent, child, grandchild]) == {
        parent: "PREPROCESSED",
        child: "AWAITING_PARENTS",
        grandchild: "AWAITING_PARENTS",
    }
    last = alice.ok(alice.http.get(f"/jobs/{child}/events"))[-1]  # type: ignore[index]
    assert last["data"]["reason"] == f"retried by {alice.name} with its parent job {parent}"
    acquire(alice, session, max_jobs=1)
    run_to(alice, session, [parent], "RUN_DONE", return_code=0)
    assert states(alice, [parent, child])[child] == "PREPROCESSED"


def test_a_retried_job_stages_its_results_again(alice: ApiUser) -> None:
    site = alice.site()
    slots = {
        "raw": {"direction": "in", "local_path": "raw.h5"},
        "result": {"direction": "out", "local_path": "result.h5"},
    }
    app = alice.app(site["id"], transfer_slots=slots, hooks=["preprocess"])
    spec = {"app_id": app["id"], "workdir": "w", "transfers": {"raw": "a:/r.h5", "result": "a:/o.h5"}}
    [job] = [j["id"] for j in alice.jobs([spec])]
    items = alice.ok(alice.http.get(f"/transfers?job_id={job}"))["items"]  # type: ignore[index]
    alice.ok(alice.http.patch("/transfers", json=[{"id": i["id"], "state": "error"} for i in items]))
    alice.ok(alice.http.patch(f"/jobs/{job}", json={"state": "FAILED", "state_data": {"reason": "no input"}}))

    assert _retry(alice, {"ids": [job]})["ids"] == [job]
    assert states(alice, [job])[job] == "READY"
    after = {
        i["direction"]: i["state"] for i in alice.ok(alice.http.get(f"/transfers?job_id={job}"))["items"]
    }  # type: ignore[index]
    assert after == {"in": "pending", "out": "awaiting_job"}


def test_bad_retries_are_refused_with_the_reason(alice: ApiUser, bob: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = [j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "w"}])]
    for body, words in (
        ({}, "name the jobs to retry"),
        ({"state": ["RUNNING"]}, "only FAILED and KILLED jobs can be retried, not RUNNING"),
        ({"ids": "x"}, "ids"),
    ):
        response = alice.http.post("/jobs/retry", json=body)
        assert response.status_code == 422 and words in response.text, response.text
    assert alice.http.post("/jobs/retry", json={"ids": [job, 10**9]}).status_code == 404
    assert bob.http.post("/jobs/retry", json={"ids": [job]}).status_code == 404
    assert bob.ok(bob.http.post("/jobs/retry", json={"state": ["FAILED", "KILLED"]}))["count"] == 0  # type: ignore[index]
    # an update cannot do what only a retry may
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [job]}))
    refused = alice.http.patch(f"/jobs/{job}", json={"state": "READY"})
    assert refused.status_code == 409 and "a retry sends it back to run" in refused.json()["detail"]
