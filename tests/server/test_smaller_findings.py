"""The smaller findings of the outside review, each with the test that would have caught it."""

from __future__ import annotations

import pytest

from tests.conftest import ApiUser


@pytest.mark.parametrize("workdir", ["..name/x", "a/..b", "...", "x/..hidden/y"])
def test_workdirs_that_merely_start_with_two_dots_are_legal(alice: ApiUser, workdir: str) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": workdir}])
    assert job["workdir"] == workdir


@pytest.mark.parametrize("workdir", ["..", "../x", "a/../../x", "./..", "/abs"])
def test_workdirs_leaving_the_data_directory_are_refused(alice: ApiUser, workdir: str) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    response = alice.http.post("/jobs", json=[{"app_id": app["id"], "workdir": workdir}])
    assert response.status_code == 422 and "workdir" in response.json()["detail"], response.text


@pytest.mark.parametrize(
    ("kind", "default"),
    [("int", "ten"), ("int", 1.5), ("float", True), ("str", 3), ("list", {}), ("bool", 0)],
)
def test_an_app_parameter_default_must_have_its_type(alice: ApiUser, kind: str, default: object) -> None:
    site = alice.site()
    body = {"site_id": site["id"], "name": "typed", "parameters": {"p": {"type": kind, "default": default}}}
    response = alice.http.post("/apps", json=body)
    assert response.status_code == 422, response.text
    assert "parameters.p" in response.json()["detail"] and kind in response.json()["detail"]


def test_an_app_parameter_default_of_its_type_is_fine(alice: ApiUser) -> None:
    site = alice.site()
    params = {"n": {"type": "int", "default": 3}, "x": {"type": "float", "default": 2}, "s": {"type": "str"}}
    app = alice.ok(
        alice.http.post("/apps", json={"site_id": site["id"], "name": "ok", "parameters": params}), 201
    )
    assert app["parameters"]["n"]["default"] == 3  # type: ignore[index]


def test_transfer_states_never_go_backwards(alice: ApiUser) -> None:
    site = alice.site()
    slots = {
        "raw": {"direction": "in", "local_path": "raw.h5"},
        "out": {"direction": "out", "local_path": "o"},
    }
    app = alice.app(site["id"], transfer_slots=slots)
    transfers = {"raw": "aps_dtn:/data/a.h5", "out": "aps_dtn:/results/o"}
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "transfers": transfers}])
    items = {i["slot"]: i for i in alice.ok(alice.http.get(f"/transfers?job_id={job['id']}"))["items"]}  # type: ignore[index]
    stage_in = items["raw"]["id"]
    for state in ("active", "done"):
        alice.ok(alice.http.patch("/transfers", json=[{"id": stage_in, "state": state}]))
    for state in ("awaiting_job", "pending", "active", "error"):
        response = alice.http.patch("/transfers", json=[{"id": stage_in, "state": state}])
        assert response.status_code == 409, (state, response.text)
        assert "done" in response.json()["detail"] and state in response.json()["detail"]
    assert alice.ok(alice.http.get(f"/transfers/{stage_in}"))["state"] == "done"  # type: ignore[index]
    # nothing returns to awaiting_job; a retry (error -> pending) is fine; info alone may change any time
    stage_out = items["out"]["id"]
    alice.ok(alice.http.patch("/transfers", json=[{"id": stage_out, "state": "pending"}]))
    assert (
        alice.http.patch("/transfers", json=[{"id": stage_out, "state": "awaiting_job"}]).status_code == 409
    )
    alice.ok(alice.http.patch("/transfers", json=[{"id": stage_out, "state": "error"}]))
    alice.ok(alice.http.patch("/transfers", json=[{"id": stage_out, "state": "pending"}]))
    alice.ok(alice.http.patch("/transfers", json=[{"id": stage_in, "info": {"note": "checked"}}]))
