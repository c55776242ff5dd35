"""Workflows and submissions: one dataset through a workflow exactly once per idempotency key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import ApiUser
from tests.server.helpers import acquire, run_to

APP_PARAMS = {
    "frames": {"required": False, "default": None, "type": "any"},
    "raw": {"required": False, "default": "raw.h5", "type": "str"},
    "sample": {"required": False, "default": "", "type": "str"},
}


def workflow(**over: Any) -> dict[str, Any]:
    body = {
        "name": "xpcs",
        "filename_pattern": r"(?P<sample>[a-z]+)_(?P<temp>\d+)C",
        "steps": [
            {
                "name": "quick",
                "app": "corr",
                "quick_look": True,
                "priority": 100,
                "parameters": {"raw": "{{ file.name }}", "frames": "{{ metadata.frames // 10 }}"},
            },
            {
                "name": "full",
                "app": "corr",
                "after": ["quick"],
                "parameters": {"raw": "{{ file.name }}", "sample": "{{ fields.sample }}-{{ fields.temp }}"},
            },
        ],
    }
    body.update(over)
    return body


def setup_user(user: ApiUser, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    site = user.site()
    app = user.app(site["id"], "corr", parameters=APP_PARAMS)
    stored = user.ok(user.http.post("/workflows", json=spec or workflow()), 201)
    return {"site": site, "app": app, "workflow": stored}


def submit(user: ApiUser, key: str, dataset: str = "/data/silica_25C_0001.h5", **over: Any) -> httpx.Response:
    body = {"workflow": "xpcs", "key": key, "dataset": dataset, "context": {"metadata": {"frames": 1000}}}
    return user.http.post("/submissions", json={**body, **over})


def test_a_submission_creates_the_workflow_jobs_with_rendered_parameters(alice: ApiUser) -> None:
    world = setup_user(alice)
    answer = alice.ok(submit(alice, "run-1"), 201)
    assert answer["created"] is True
    sub = answer["submission"]
    assert set(sub["steps"]) == {"quick", "full"} and all(
        s["status"] == "submitted" for s in sub["steps"].values()
    )
    jobs = {j["id"]: j for j in alice.ok(alice.http.get(f"/jobs?tag=submission:{sub['id']}"))["items"]}
    quick, full = jobs[sub["steps"]["quick"]["job_id"]], jobs[sub["steps"]["full"]["job_id"]]
    assert quick["parameters"]["frames"] == 100  # a whole-expression template keeps its type
    assert quick["parameters"]["raw"] == "silica_25C_0001.h5"
    assert full["parameters"]["sample"] == "silica-25"
    assert full["parent_ids"] == [quick["id"]] and full["state"] == "AWAITING_PARENTS"
    assert quick["priority"] == 100 and quick["workdir"] == "xpcs/silica_25C_0001/quick"
    assert quick["tags"]["workflow"] == "xpcs" and quick["app_id"] == world["app"]["id"]


def test_a_repeated_key_answers_with_the_existing_jobs(alice: ApiUser) -> None:
    setup_user(alice)
    first = alice.ok(submit(alice, "run-2"), 201)["submission"]
    again = alice.ok(submit(alice, "run-2", dataset="/data/other_30C.h5"), 200)
    assert again["created"] is False and again["submission"]["job_ids"] == first["job_ids"]
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 2


def test_concurrent_repeats_make_one_submission(alice: ApiUser) -> None:
    setup_user(alice)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: submit(alice, "race"), range(16)))
    assert sorted(a.status_code for a in answers) == [200] * 15 + [201]
    assert len({tuple(a.json()["submission"]["job_ids"]) for a in answers}) == 1
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 2


def test_keys_are_unique_per_user_not_globally(alice: ApiUser, bob: ApiUser) -> None:
    setup_user(alice)
    setup_user(bob)
    assert alice.ok(submit(alice, "shared-uid"), 201)["created"]
    assert bob.ok(submit(bob, "shared-uid"), 201)["created"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"workflow": "nope", "key": "k", "dataset": "d"}, 404, "workflow 'nope' not found"),
        ({"workflow": "xpcs", "key": "", "dataset": "d"}, 422, "key"),
        ({"workflow": "xpcs", "key": "k\n", "dataset": "d"}, 422, "control characters"),
        ({"workflow": "xpcs", "key": "k", "dataset": "nomatch.h5"}, 422, "filename_pattern"),
        ({"workflow": "xpcs", "key": "k", "dataset": "a_1C", "context": {}}, 422, "metadata"),
        ({"workflow": "xpcs", "key": "k", "dataset": "a_1C", "context": {"x": "\u0000"}}, 422, "NUL"),
        ({"workflow": "xpcs", "key": "k", "dataset": "a_1C", "context": {"x": "y" * 300_000}}, 422, "larger"),
        ({"workflow": "xpcs", "key": "k", "dataset": "a_1C", "oops": 1}, 422, "oops"),
        ({"workflow": "xpcs", "key": "k", "dataset": "a_1C", "closed_at": "yesterday"}, 422, "closed_at"),
    ],
)
def test_bad_submissions_are_refused_by_name_and_leave_nothing(
    alice: ApiUser, body: dict[str, Any], status: int, needle: str
) -> None:
    setup_user(alice)
    answer = alice.http.post("/submissions", json=body)
    assert answer.status_code == status, answer.text
    assert needle in answer.text
    assert alice.ok(alice.http.get("/submissions"))["items"] == []
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"steps": [{"name": "a", "app": "corr", "after": ["b"]}]}, "not an earlier step"),
        ({"steps": [{"name": "a", "app": "corr"}, {"name": "a", "app": "corr"}]}, "appears twice"),
        ({"steps": []}, "steps"),
        ({"filename_pattern": "(unclosed"}, "regular expression"),
        ({"steps": [{"name": "a", "app": "corr", "skip_unless_changed": True}]}, "change_detection"),
        (
            {
                "steps": [
                    {"name": "a", "app": "corr", "quick_look": True},
                    {"name": "b", "app": "corr", "quick_look": True},
                ]
            },
            "only one step",
        ),
    ],
)
def test_bad_workflows_are_refused_by_name(alice: ApiUser, change: dict[str, Any], needle: str) -> None:
    answer = alice.http.post("/workflows", json=workflow(**change))
    assert answer.status_code == 422 and needle in answer.text, answer.text


def test_template_errors_name_the_step_and_the_problem(alice: ApiUser) -> None:
    spec = workflow(steps=[{"name": "only", "app": "corr", "parameters": {"raw": "{{ nothing.here }}"}}])
    setup_user(alice, spec)
    answer = submit(alice, "k-t", dataset="a_1C.h5")
    assert answer.status_code == 422 and "step 'only'" in answer.text and "nothing" in answer.text
    spec["steps"][0]["parameters"] = {"raw": "{{ ''.__class__.__mro__ }}"}  # the sandbox holds
    alice.ok(alice.http.post("/workflows", json=spec), 200)
    answer = submit(alice, "k-t2", dataset="a_1C.h5")
    assert answer.status_code == 422, answer.text
    spec["steps"][0]["parameters"] = {"unknown": 1}
    alice.ok(alice.http.post("/workflows", json=spec), 200)
    answer = submit(alice, "k-t3", dataset="a_1C.h5")
    assert answer.status_code == 422 and "unknown parameter 'unknown'" in answer.text
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0


def test_an_app_on_several_sites_must_be_named_with_its_site(alice: ApiUser) -> None:
    setup_user(alice)
    other = alice.site("theta")
    alice.app(other["id"], "corr", parameters=APP_PARAMS)
    answer = submit(alice, "k-s")
    assert answer.status_code == 422 and "name one with 'site:'" in answer.text
    spec = workflow()
    for step in spec["steps"]:
        step["site"] = "theta"
    alice.ok(alice.http.post("/workflows", json=spec), 200)
    sub = alice.ok(submit(alice, "k-s"), 201)["submission"]
    job = alice.ok(alice.http.get(f"/jobs/{sub['steps']['quick']['job_id']}"))
    assert job["site_id"] == other["id"]


def gated_workflow() -> dict[str, Any]:
    spec = workflow()
    spec["steps"][1]["skip_unless_changed"] = True
    spec["steps"].append({"name": "plot", "app": "corr", "after": ["full"]})
    spec["change_detection"] = {"features": ["mean_intensity"]}
    return spec


def test_held_steps_run_or_skip_and_a_skip_is_reversible(alice: ApiUser) -> None:
    setup_user(alice, gated_workflow())
    sub = alice.ok(submit(alice, "g-1"), 201)["submission"]
    assert [sub["steps"][s]["status"] for s in ("quick", "full", "plot")] == ["submitted", "held", "held"]
    assert len(sub["job_ids"]) == 1
    url = f"/submissions/{sub['id']}/steps/full"
    skipped = alice.ok(alice.http.post(url, json={"action": "skip", "reason": "no change"}))
    assert [skipped["steps"][s]["status"] for s in ("full", "plot")] == ["skipped", "skipped"]
    assert skipped["steps"]["full"]["reason"] == "no change"
    run = alice.ok(alice.http.post(url, json={"action": "run", "reason": "operator asked"}))
    assert [run["steps"][s]["status"] for s in ("full", "plot")] == ["submitted", "submitted"]
    assert len(run["job_ids"]) == 3
    again = alice.ok(alice.http.post(url, json={"action": "run"}))
    assert again["job_ids"] == run["job_ids"]
    refused = alice.http.post(url, json={"action": "skip"})
    assert refused.status_code == 409 and "already runs" in refused.text
    kinds = [e["kind"] for e in alice.ok(alice.http.get("/beamline-events"))["items"]]
    assert kinds == ["step.skipped", "step.run"]
    assert alice.http.post(f"/submissions/{sub['id']}/steps/nope", json={"action": "run"}).status_code == 404
    blocked = alice.ok(submit(alice, "g-2"), 201)["submission"]
    answer = alice.http.post(f"/submissions/{blocked['id']}/steps/plot", json={"action": "run"})
    assert answer.status_code == 409 and "run it first" in answer.text


def test_latency_from_file_closed_to_first_and_full_result(alice: ApiUser) -> None:
    world = setup_user(alice)
    sub = alice.ok(submit(alice, "lat", closed_at="2020-01-01T00:00:00Z"), 201)["submission"]
    assert sub["first_result_s"] is None and sub["full_result_s"] is None
    session = alice.session(world["site"]["id"])
    [quick] = acquire(alice, session["id"], max_jobs=10)
    assert quick["id"] == sub["steps"]["quick"]["job_id"]
    run_to(alice, session["id"], [quick["id"]], "RUN_DONE")
    mid = alice.ok(alice.http.get(f"/submissions/{sub['id']}"))
    assert mid["first_result_s"] > 0 and mid["full_result_s"] is None
    [full] = acquire(alice, session["id"], max_jobs=10)
    run_to(alice, session["id"], [full["id"]], "RUN_DONE")
    done = alice.ok(alice.http.get("/submissions?workflow=xpcs&key=lat"))["items"][0]
    assert done["full_result_s"] >= done["first_result_s"] > 0


def test_acquire_takes_the_quick_look_first(alice: ApiUser) -> None:
    spec = workflow()
    spec["steps"][1]["after"] = []  # independent, so both are runnable at once
    spec["steps"][1]["priority"] = 0
    world = setup_user(alice, spec)
    subs = [alice.ok(submit(alice, f"p-{i}", dataset=f"/d/a_{i}C.h5"), 201)["submission"] for i in range(3)]
    session = alice.session(world["site"]["id"])
    got = acquire(alice, session["id"], max_jobs=3)
    assert {j["id"] for j in got} == {s["steps"]["quick"]["job_id"] for s in subs}


def test_site_tokens_cannot_submit(alice: ApiUser) -> None:
    world = setup_user(alice)
    token = alice.ok(alice.http.post(f"/sites/{world['site']['id']}/tokens", json={"name": "agent"}), 201)
    with httpx.Client(
        base_url=alice.base_url, headers={"Authorization": f"Bearer {token['token']}"}
    ) as agent:
        answer = agent.post("/submissions", json={"workflow": "xpcs", "key": "k", "dataset": "a_1C"})
        assert answer.status_code == 403 and "site token" in answer.text


def test_a_step_may_let_the_service_place_it_on_one_of_several_sites(alice: ApiUser) -> None:
    polaris = alice.site("polaris")
    theta = alice.site("theta")
    for site in (polaris, theta):
        alice.app(site["id"], "corr", parameters=APP_PARAMS)
        alice.ok(alice.http.post(f"/sites/{site['id']}/heartbeat"))
    spec = workflow()
    for step in spec["steps"]:
        step["sites"] = ["polaris", "theta"]
    alice.ok(alice.http.post("/workflows", json=spec), 201)
    sub = alice.ok(submit(alice, "placed"), 201)["submission"]
    quick = alice.ok(alice.http.get(f"/jobs/{sub['steps']['quick']['job_id']}"))
    assert quick["site_id"] in (polaris["id"], theta["id"])
    spec["steps"][0]["site"] = "polaris"
    answer = alice.http.post("/workflows", json=spec)
    assert answer.status_code == 422 and "one of site, sites or site_group" in answer.text


def test_list_routes_filter_by_their_query_fields(alice: ApiUser, bob: ApiUser) -> None:
    setup_user(alice)
    alice.ok(alice.http.post("/workflows", json=workflow(name="other")), 201)
    setup_user(bob)
    names = [w["name"] for w in alice.ok(alice.http.get("/workflows?name=other"))["items"]]
    assert names == ["other"]
    for key, name in (("k1", "xpcs"), ("k2", "xpcs"), ("k3", "other")):
        alice.ok(submit(alice, key, workflow=name), 201)
    bob.ok(submit(bob, "k1"), 201)
    mine = alice.ok(alice.http.get("/submissions?workflow=xpcs"))["items"]
    assert [s["key"] for s in mine] == ["k1", "k2"]
    assert [s["key"] for s in alice.ok(alice.http.get("/submissions?key=k3"))["items"]] == ["k3"]
    assert alice.ok(alice.http.get("/submissions?workflow=other&key=k1"))["items"] == []
    for kind, name in (("run.aborted", "xpcs"), ("run.failed", "xpcs"), ("run.aborted", "other")):
        alice.ok(alice.http.post("/beamline-events", json={"kind": kind, "workflow": name}), 201)
    found = alice.ok(alice.http.get("/beamline-events?kind=run.aborted&workflow=xpcs"))["items"]
    assert [(e["kind"], e["workflow"]) for e in found] == [("run.aborted", "xpcs")]
    assert bob.ok(bob.http.get("/beamline-events"))["items"] == []
    too_long = alice.http.get("/submissions", params={"key": "k" * 513})
    assert too_long.status_code == 422 and "key" in too_long.text


def test_running_a_skipped_step_re_holds_gated_steps_after_it(alice: ApiUser) -> None:
    spec = gated_workflow()
    spec["steps"][2]["skip_unless_changed"] = True  # plot waits for its own decision too
    spec["steps"].append({"name": "publish", "app": "corr", "after": ["plot"]})
    setup_user(alice, spec)
    sub = alice.ok(submit(alice, "rh-1"), 201)["submission"]
    base = f"/submissions/{sub['id']}/steps"
    order = ("full", "plot", "publish")
    skipped = alice.ok(alice.http.post(f"{base}/full", json={"action": "skip", "reason": "no change"}))
    assert [skipped["steps"][s]["status"] for s in order] == ["skipped"] * 3
    # plot was skipped only because it runs after full: running full holds it again (it waits for its
    # own decision), and publish after it.
    run = alice.ok(alice.http.post(f"{base}/full", json={"action": "run", "reason": "operator"}))
    assert [run["steps"][s]["status"] for s in order] == ["submitted", "held", "held"]
    assert run["steps"]["plot"]["reason"] == "waits for the change detector"
    assert run["steps"]["publish"]["reason"] == "runs after held step 'plot'"
    assert len(run["job_ids"]) == 2
    # A step skipped by its own decision stays skipped when an earlier step runs.
    sub2 = alice.ok(submit(alice, "rh-2"), 201)["submission"]
    base2 = f"/submissions/{sub2['id']}/steps"
    alice.ok(alice.http.post(f"{base2}/full", json={"action": "run"}))
    own = alice.ok(alice.http.post(f"{base2}/plot", json={"action": "skip", "reason": "no change"}))
    assert [own["steps"][s]["status"] for s in order] == ["submitted", "skipped", "skipped"]
    assert own["steps"]["plot"]["reason"] == "no change"
