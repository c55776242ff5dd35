"""Jobs through the real HTTP API: creation, validation, filters, pagination, updates, DAG, deletion."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.conftest import ApiUser
from tests.server.helpers import acquire, event_path, report, run_to, states

PARAMS = {"n": {"type": "int"}, "mode": {"type": "str", "required": False, "default": "fast"}}
SLOTS = {
    "raw": {"direction": "in", "local_path": "raw.h5"},
    "result": {"direction": "out", "local_path": "result.hdf", "required": False},
}


def setup(user: ApiUser, **app_fields: object) -> tuple[dict, dict]:
    site = user.site()
    app = user.app(site["id"], parameters=PARAMS, **app_fields)
    return site, app


def test_new_job_skips_what_it_does_not_need(alice: ApiUser) -> None:
    _, app = setup(alice)
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "a/1", "parameters": {"n": 1}, "tags": {"k": "v"}}])
    assert job["state"] == "PREPROCESSED"
    assert job["parameters"] == {"n": 1, "mode": "fast"}  # default filled in
    assert event_path(alice, job["id"]) == ["CREATED", "STAGED_IN", "PREPROCESSED"]


def test_app_with_preprocess_hook_waits_in_staged_in(alice: ApiUser) -> None:
    _, app = setup(alice, hooks=["preprocess"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "a", "parameters": {"n": 1}}])
    assert job["state"] == "STAGED_IN"


def test_stage_ins_start_ready_and_create_transfer_items(alice: ApiUser) -> None:
    _site, app = setup(alice, transfer_slots=SLOTS)
    transfers = {"raw": "aps_dtn:/data/A001.h5", "result": "aps_dtn:/results/A001.hdf"}
    [job] = alice.jobs(
        [{"app_id": app["id"], "workdir": "a", "parameters": {"n": 1}, "transfers": transfers}]
    )
    assert job["state"] == "READY"
    items = alice.ok(alice.http.get(f"/transfers?job_id={job['id']}"))["items"]
    assert {(i["slot"], i["direction"], i["state"], i["remote_path"]) for i in items} == {
        ("raw", "in", "pending", "/data/A001.h5"),
        ("result", "out", "awaiting_job", "/results/A001.hdf"),
    }
    first = items[0]["id"]
    alice.ok(alice.http.patch("/transfers", json=[{"id": first, "state": "active", "task_id": "t1"}]))
    assert alice.ok(alice.http.get(f"/transfers/{first}"))["task_id"] == "t1"


def test_an_input_may_declare_its_sha256(alice: ApiUser) -> None:
    _site, app = setup(alice, transfer_slots=SLOTS)
    digest = "ab" * 32
    transfers = {"raw": {"ref": "aps_dtn:/data/A001.h5", "sha256": digest}, "result": "aps_dtn:/r/A001.hdf"}
    [job] = alice.jobs(
        [{"app_id": app["id"], "workdir": "a", "parameters": {"n": 1}, "transfers": transfers}]
    )
    assert job["transfers"] == transfers
    items = alice.ok(alice.http.get(f"/transfers?job_id={job['id']}"))["items"]
    assert {i["slot"]: i["sha256"] for i in items} == {"raw": digest, "result": None}
    assert {i["slot"]: i["remote_path"] for i in items} == {"raw": "/data/A001.h5", "result": "/r/A001.hdf"}


def test_a_declared_sha256_is_checked(alice: ApiUser) -> None:
    _, app = setup(alice, transfer_slots=SLOTS)
    good = {"raw": "aps_dtn:/x", "result": "aps_dtn:/y"}
    cases = [
        ({**good, "raw": {"ref": "aps_dtn:/x", "sha256": "AB" * 32}}, "String should match pattern"),
        ({**good, "raw": {"ref": "aps_dtn:/x", "sha256": "ab"}}, "String should match pattern"),
        ({**good, "raw": {"ref": "aps_dtn:/x", "md5": "ab"}}, "Extra inputs are not permitted"),
        (
            {**good, "result": {"ref": "aps_dtn:/y", "sha256": "ab" * 32}},
            "transfer 'result': a sha256 is declared for inputs only",
        ),
        ({**good, "raw": {"ref": "nowhere:/x", "sha256": "ab" * 32}}, "has no location 'nowhere'"),
    ]
    for transfers, message in cases:
        response = alice.http.post(
            "/jobs",
            json=[{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}, "transfers": transfers}],
        )
        assert response.status_code == 422, response.text
        assert message in response.text, response.text
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0


def test_parameters_and_transfers_are_checked(alice: ApiUser) -> None:
    _, app = setup(alice, transfer_slots=SLOTS)
    cases = [
        ({"parameters": {"n": 1, "bogus": 2}, "transfers": {"raw": "a:/x"}}, "unknown parameter 'bogus'"),
        ({"parameters": {}, "transfers": {"raw": "a:/x"}}, "requires parameter 'n'"),
        ({"parameters": {"n": "one"}, "transfers": {"raw": "a:/x"}}, "must be int"),
        ({"parameters": {"n": 1}}, "requires transfer slot 'raw'"),
        ({"parameters": {"n": 1}, "transfers": {"raw": "a:/x", "other": "a:/y"}}, "unknown transfer slot"),
        (
            {"parameters": {"n": 1}, "transfers": {"raw": "nersc_dtn:/x"}},
            "site 'polaris' has no location 'nersc_dtn' (it has: a, aps_dtn, dtn)",
        ),
    ]
    for fields, message in cases:
        response = alice.http.post("/jobs", json=[{"app_id": app["id"], "workdir": "w", **fields}])
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0  # nothing half-created


def test_bulk_create_is_all_or_nothing(alice: ApiUser) -> None:
    _, app = setup(alice)
    good = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    response = alice.http.post("/jobs", json=[good] * 50 + [{**good, "app_id": 999_999}])
    assert response.status_code == 404
    assert response.json()["detail"] == "app 999999 not found"
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0


def test_filters(alice: ApiUser) -> None:
    site_a, app_a = setup(alice)
    site_b = alice.site("other")
    app_b = alice.app(site_b["id"], "other")
    before = datetime.now(UTC)
    jobs_a = alice.jobs(
        [{"app_id": app_a["id"], "workdir": f"a/{i}", "parameters": {"n": i}, "tags": {"run": str(i % 2)}}
         for i in range(6)]
    )  # fmt: skip
    jobs_b = alice.jobs([{"app_id": app_b["id"], "workdir": "b", "tags": {"run": "1", "x": "y"}}])
    ids_a = [j["id"] for j in jobs_a]

    def ids(query: str) -> list[int]:
        return [j["id"] for j in alice.ok(alice.http.get(f"/jobs?{query}"))["items"]]

    assert ids(f"site_id={site_a['id']}") == ids_a
    assert ids(f"app_id={app_b['id']}") == [jobs_b[0]["id"]]
    assert ids("tag=run:1") == [*ids_a[1::2], jobs_b[0]["id"]]
    assert ids("tag=run:1&tag=x:y") == [jobs_b[0]["id"]]
    assert ids(f"id={ids_a[0]}&id={ids_a[3]}") == [ids_a[0], ids_a[3]]
    assert ids("state=PREPROCESSED&workdir_prefix=a/") == ids_a
    assert ids(f"created_after={before.isoformat().replace('+00:00', 'Z')}") == [*ids_a, jobs_b[0]["id"]]
    assert ids(f"created_before={before.isoformat().replace('+00:00', 'Z')}") == []
    assert alice.ok(alice.http.get("/jobs/count?tag=run:0"))["count"] == 3


def test_pagination_is_stable_while_jobs_are_added(alice: ApiUser) -> None:
    _, app = setup(alice)
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    created = [j["id"] for j in alice.jobs([spec] * 25)]
    seen: list[int] = []
    after = None
    while True:
        query = "limit=10" + (f"&after={after}" if after else "")
        body = alice.ok(alice.http.get(f"/jobs?{query}"))
        seen += [j["id"] for j in body["items"]]
        if len(seen) == 10:
            alice.jobs([spec] * 3)  # new jobs land after the cursor, nothing is skipped or repeated
        after = body["next_after"]
        if after is None:
            break
    assert seen[:25] == created
    assert len(seen) == len(set(seen)) == 28


def test_bulk_update_validates_every_transition(alice: ApiUser) -> None:
    _, app = setup(alice, hooks=["preprocess"])
    jobs = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}] * 3)
    ids = [j["id"] for j in jobs]
    response = alice.http.patch(
        "/jobs",
        json=[
            {"id": ids[0], "state": "PREPROCESSED", "tags": {"done": "yes"}},
            {"id": ids[1], "state": "JOB_FINISHED"},  # illegal from STAGED_IN
        ],
    )
    assert response.status_code == 409
    body = response.json()
    assert "cannot move from STAGED_IN to JOB_FINISHED" in body["detail"]
    assert body["errors"][0]["allowed"] == ["FAILED", "KILLED", "PREPROCESSED"]
    assert states(alice, ids) == dict.fromkeys(ids, "STAGED_IN")  # nothing applied
    assert alice.ok(alice.http.get(f"/jobs/{ids[0]}"))["tags"] == {}
    done = alice.ok(alice.http.patch("/jobs", json=[{"id": i, "state": "PREPROCESSED"} for i in ids]))
    assert done["count"] == 3
    assert states(alice, ids) == dict.fromkeys(ids, "PREPROCESSED")


def test_launcher_states_cannot_be_set_by_update(alice: ApiUser) -> None:
    _, app = setup(alice)
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}])
    response = alice.http.patch(f"/jobs/{job['id']}", json={"state": "RUNNING"})
    assert response.status_code == 422
    assert "reported by the launcher session" in response.json()["detail"]


def test_dag_children_released_when_all_parents_finish(alice: ApiUser) -> None:
    site, app = setup(alice)
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    parents = [j["id"] for j in alice.jobs([spec, spec])]
    [child] = alice.jobs([{**spec, "parent_ids": parents}])
    assert child["state"] == "AWAITING_PARENTS"
    assert alice.ok(alice.http.get(f"/jobs?parent_id={parents[0]}"))["items"][0]["id"] == child["id"]
    session = alice.session(site["id"])
    acquired = acquire(alice, session["id"], max_jobs=10)
    assert sorted(j["id"] for j in acquired) == parents  # the child is not runnable yet
    run_to(alice, session["id"], parents[:1], "RUN_DONE", return_code=0)
    assert states(alice, [child["id"]])[child["id"]] == "AWAITING_PARENTS"
    run_to(alice, session["id"], parents[1:], "RUN_DONE", return_code=0)
    assert states(alice, [*parents, child["id"]]) == {
        parents[0]: "JOB_FINISHED",
        parents[1]: "JOB_FINISHED",
        child["id"]: "PREPROCESSED",
    }
    assert event_path(alice, child["id"]) == ["CREATED", "AWAITING_PARENTS", "STAGED_IN", "PREPROCESSED"]
    # a child created after its parents finished starts runnable at once
    [late] = alice.jobs([{**spec, "parent_ids": parents}])
    assert late["state"] == "PREPROCESSED"


def test_failed_parent_fails_descendants(alice: ApiUser) -> None:
    site, app = setup(alice)
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    [parent] = alice.jobs([{**spec, "retry_limit": 0}])  # a failed run is otherwise retried
    [child] = alice.jobs([{**spec, "parent_ids": [parent["id"]]}])
    [grandchild] = alice.jobs([{**spec, "parent_ids": [child["id"]]}])
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=1)
    run_to(alice, session["id"], [parent["id"]], "RUN_ERROR", return_code=3, error="segfault")
    assert states(alice, [parent["id"], child["id"], grandchild["id"]]) == {
        parent["id"]: "FAILED",
        child["id"]: "FAILED",
        grandchild["id"]: "FAILED",
    }
    job = alice.ok(alice.http.get(f"/jobs/{parent['id']}"))
    assert job["return_code"] == 3 and job["error"] == "segfault"
    events = alice.ok(alice.http.get(f"/jobs/{child['id']}/events"))
    assert events[-1]["data"]["reason"] == f"parent job {parent['id']} is FAILED"
    response = alice.http.post("/jobs", json=[{**spec, "parent_ids": [parent["id"]]}])
    assert response.status_code == 409 and "is FAILED" in response.json()["detail"]


def test_cancel_kills_and_fails_waiting_children(alice: ApiUser) -> None:
    _, app = setup(alice)
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    [parent] = alice.jobs([spec])
    [child] = alice.jobs([{**spec, "parent_ids": [parent["id"]]}])
    result = alice.ok(alice.http.post("/jobs/cancel", json={"ids": [parent["id"]]}))
    assert result == {"count": 1, "ids": [parent["id"]]}
    assert states(alice, [parent["id"], child["id"]]) == {parent["id"]: "KILLED", child["id"]: "FAILED"}
    again = alice.ok(alice.http.post("/jobs/cancel", json={"ids": [parent["id"]]}))
    assert again["count"] == 0  # already ended: nothing to do, not an error


def test_delete_refuses_to_orphan_children(alice: ApiUser) -> None:
    _, app = setup(alice)
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    [parent] = alice.jobs([spec])
    [child] = alice.jobs([{**spec, "parent_ids": [parent["id"]]}])
    response = alice.http.delete(f"/jobs/{parent['id']}")
    assert response.status_code == 409 and f"unfinished child job {child['id']}" in response.json()["detail"]
    alice.ok(alice.http.post("/jobs/delete", json={"ids": [parent["id"], child["id"]]}))
    assert alice.http.get(f"/jobs/{parent['id']}").status_code == 404
    assert alice.http.get(f"/jobs/{child['id']}/events").status_code == 404


def test_timestamps_and_update_fields(alice: ApiUser) -> None:
    _, app = setup(alice)
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}])
    time.sleep(0.01)
    updated = alice.ok(
        alice.http.patch(f"/jobs/{job['id']}", json={"priority": 5, "data": {"note": 1}, "tags": {"a": "b"}})
    )
    assert updated["priority"] == 5 and updated["data"] == {"note": 1} and updated["tags"] == {"a": "b"}
    assert updated["updated_at"] > job["updated_at"]
    assert updated["created_at"] == job["created_at"]


def test_report_refused_for_job_not_held(alice: ApiUser) -> None:
    site, app = setup(alice)
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}])
    holder = alice.session(site["id"])
    other = alice.session(site["id"])
    assert [j["id"] for j in acquire(alice, holder["id"], max_jobs=5)] == [job["id"]]
    body = report(alice, other["id"], [{"id": job["id"], "state": "RUNNING"}], status=409)
    assert f"held by session {holder['id']}" in body["detail"]
    assert states(alice, [job["id"]])[job["id"]] == "PREPROCESSED"


def test_deleting_jobs_apps_and_sites_removes_their_events(alice: ApiUser) -> None:
    site, app = setup(alice)
    other_app = alice.app(site["id"], "other")
    spec = {"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}
    [a, b] = alice.jobs([spec, spec])
    [c] = alice.jobs([{"app_id": other_app["id"], "workdir": "w"}])

    def events_of(job_id: int) -> list:
        return alice.ok(alice.http.get(f"/events?job_id={job_id}"))["items"]  # type: ignore[index]

    assert events_of(a["id"]) and events_of(b["id"]) and events_of(c["id"])
    alice.ok(alice.http.delete(f"/jobs/{a['id']}"), 204)
    assert events_of(a["id"]) == [] and events_of(b["id"])
    alice.ok(alice.http.delete(f"/apps/{app['id']}"), 204)
    assert events_of(b["id"]) == [] and events_of(c["id"])
    alice.ok(alice.http.delete(f"/sites/{site['id']}"), 204)
    assert events_of(c["id"]) == []
    assert alice.ok(alice.http.get("/events"))["items"] == []


def test_scalar_json_results_round_trip(alice: ApiUser) -> None:
    """SQLite stores a JSON number in a JSON column as a number; it must still read back."""
    site, app = setup(alice, hooks=["postprocess"])
    ids = [j["id"] for j in alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}] * 4)]
    session = alice.session(site["id"])
    acquire(alice, session["id"], max_jobs=4)
    report(alice, session["id"], [{"id": i, "state": "RUNNING"} for i in ids])
    results = [0, 2.5, True, "text"]
    report(
        alice,
        session["id"],
        [{"id": i, "state": "RUN_DONE", "result": r} for i, r in zip(ids, results, strict=True)],
    )
    assert [alice.ok(alice.http.get(f"/jobs/{i}"))["result"] for i in ids] == results
    alice.ok(alice.http.patch(f"/jobs/{ids[0]}", json={"result": 7}))
    assert alice.ok(alice.http.get(f"/jobs/{ids[0]}"))["result"] == 7
