"""Bad input answers a 4xx naming the problem: never a 500, never a half-applied change."""

from __future__ import annotations

import pytest

from beambridge.schemas.common import MAX_BULK_SIZE, MAX_PAGE_SIZE
from tests.conftest import ApiUser


@pytest.fixture
def world(alice: ApiUser) -> dict:
    site = alice.site()
    app = alice.app(site["id"], parameters={"n": {"type": "int"}})
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "parameters": {"n": 1}}])
    return {"site": site, "app": app, "job": job}


def detail(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["detail"]


def test_malformed_json(alice: ApiUser, world: dict) -> None:
    response = alice.http.post(
        "/jobs", content=b'[{"app_id": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in detail(response)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"app_id": 1, "workdir": "w", "colour": "red"}], "colour: Extra inputs are not permitted"),
        ([{"app_id": "one", "workdir": "w"}], "app_id: Input should be a valid integer"),
        ([{"app_id": 1, "workdir": "/etc"}], "relative POSIX path"),
        ([{"app_id": 1, "workdir": "../up"}], "no '..'"),
        (
            [{"app_id": 1, "workdir": "w", "num_nodes": 0}],
            "num_nodes: Input should be greater than or equal to 1",
        ),
        ([{"app_id": 1, "workdir": "w", "tags": {"bad key": "v"}}], "tag key 'bad key'"),
        ([{"app_id": 1, "workdir": "w", "transfers": {"raw": "no-colon"}}], "must look like 'location:/path"),
        ([], "at least 1 item"),
        ({"app_id": 1}, "valid list"),
    ],
)
def test_invalid_job_bodies(alice: ApiUser, world: dict, body: object, message: str) -> None:
    response = alice.http.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert message in detail(response)


def test_illegal_transition_names_allowed_states(alice: ApiUser, world: dict) -> None:
    response = alice.http.patch(f"/jobs/{world['job']['id']}", json={"state": "STAGED_OUT"})
    assert response.status_code == 409
    assert "cannot move from PREPROCESSED to STAGED_OUT" in detail(response)
    assert "allowed next states: FAILED, KILLED, RUNNING" in detail(response)


def test_unknown_state_name(alice: ApiUser, world: dict) -> None:
    response = alice.http.patch(f"/jobs/{world['job']['id']}", json={"state": "DONE"})
    assert response.status_code == 422 and "state" in detail(response)


@pytest.mark.parametrize(
    "url",
    [
        "/jobs/999999999",
        "/sites/999999999",
        "/apps/999999999",
        "/batch-jobs/999999999",
        "/sessions/999999999",
    ],
)
def test_unknown_ids(alice: ApiUser, url: str) -> None:
    response = alice.http.get(url)
    assert response.status_code == 404
    assert detail(response).endswith("999999999 not found")


def test_unknown_ids_in_bulk_update_change_nothing(alice: ApiUser, world: dict) -> None:
    job_id = world["job"]["id"]
    response = alice.http.patch(
        "/jobs", json=[{"id": job_id, "tags": {"x": "y"}}, {"id": 999999999, "priority": 1}]
    )
    assert response.status_code == 404 and "999999999" in detail(response)
    assert alice.ok(alice.http.get(f"/jobs/{job_id}"))["tags"] == {}


def test_over_limit_page(alice: ApiUser) -> None:
    response = alice.http.get(f"/jobs?limit={MAX_PAGE_SIZE + 1}")
    assert response.status_code == 422 and f"less than or equal to {MAX_PAGE_SIZE}" in detail(response)


def test_over_limit_bulk(alice: ApiUser, world: dict) -> None:
    body = [{"app_id": world["app"]["id"], "workdir": "w", "parameters": {"n": 1}}] * (MAX_BULK_SIZE + 1)
    response = alice.http.post("/jobs", json=body)
    assert response.status_code == 422 and f"at most {MAX_BULK_SIZE} items" in detail(response)
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 1


def test_over_limit_payload(alice: ApiUser, world: dict) -> None:
    huge = "x" * (65 * 1024 * 1024)
    response = alice.http.post("/jobs", content=huge.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "over the limit" in detail(response)


def test_chunked_payload_over_limit(alice: ApiUser, world: dict) -> None:
    def stream():  # type: ignore[no-untyped-def]
        for _ in range(70):
            yield b"x" * (1024 * 1024)

    response = alice.http.post("/jobs", content=stream(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credentials"),
        ("Bearer not-a-jwt", "invalid access token"),
        ("Bearer bbs_unknown", "unknown site token"),
        ("Basic dXNlcjpwYXNz", "missing credentials"),
    ],
)
def test_bad_credentials(alice: ApiUser, header: str | None, message: str) -> None:
    import httpx

    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{alice.base_url}/jobs", headers=headers)
    assert response.status_code in (401, 403)
    assert message in detail(response)


def test_parameter_query_types(alice: ApiUser) -> None:
    response = alice.http.get("/jobs?state=NOPE")
    assert response.status_code == 422 and "state" in detail(response)
    response = alice.http.get("/jobs?tag=nocolon")
    assert response.status_code == 422 and "key:value" in detail(response)
    response = alice.http.get("/jobs?created_after=yesterday")
    assert response.status_code == 422 and "created_after" in detail(response)


def test_duplicate_names(alice: ApiUser, world: dict) -> None:
    response = alice.http.post("/sites", json={"name": world["site"]["name"]})
    assert response.status_code == 409 and "already have a site" in detail(response)
    response = alice.http.post("/apps", json={"site_id": world["site"]["id"], "name": world["app"]["name"]})
    assert response.status_code == 409 and "already has an app" in detail(response)
