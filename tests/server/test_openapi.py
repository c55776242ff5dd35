"""The OpenAPI description agrees with the service: each error status it answers is documented for the
operation, and the body it sends validates against the documented schema.

Found from outside: 422 bodies were described as an array but are a string plus ``errors``;
401/403/404/409/413 were undocumented.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from tests.conftest import ApiUser, make_settings
from tests.servers import LiveServer


def _check(schema: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    status = str(response.status_code)
    operation = schema["paths"][path][method]
    assert status in operation["responses"], f"{method.upper()} {path} answers {status}, undocumented"
    documented = operation["responses"][status]["content"]["application/json"]["schema"]
    resolver_schema = {**documented, "components": schema["components"]}
    jsonschema.validate(response.json(), resolver_schema)


def test_no_operation_documents_fastapis_default_422(server_app: FastAPI) -> None:
    schema = server_app.openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                continue
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }, (method, path)
            if path not in ("/auth/login", "/auth/refresh", "/auth/logout"):
                assert {"401", "403", "404"} <= operation["responses"].keys(), (method, path)


def test_real_error_answers_match_the_description(alice: ApiUser, server_app: FastAPI) -> None:
    schema = server_app.openapi()
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    token = alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)["token"]  # type: ignore[index]
    as_site = httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {token}"})
    anonymous = httpx.Client(base_url=alice.base_url)
    cases = [
        ("/jobs/{job_id}", "get", anonymous.get(f"/jobs/{job['id']}"), 401),
        ("/jobs/{job_id}", "get", alice.http.get("/jobs/999999999"), 404),
        (
            "/jobs/{job_id}",
            "patch",
            alice.http.patch(f"/jobs/{job['id']}", json={"state": "JOB_FINISHED"}),
            409,
        ),
        ("/jobs", "post", alice.http.post("/jobs", json=[{"app_id": app["id"], "workdir": "/abs"}]), 422),
        (
            "/jobs",
            "post",
            alice.http.post("/jobs", content=b"[{", headers={"content-type": "application/json"}),
            422,
        ),
        ("/sites", "post", as_site.post("/sites", json={"name": "another"}), 403),
        (
            "/auth/login",
            "post",
            anonymous.post("/auth/login", json={"username": "nobody", "password": "x" * 9}),
            401,
        ),
    ]
    for path, method, response, status in cases:
        assert response.status_code == status, (path, response.status_code, response.text)
        _check(schema, path, method, response)
    as_site.close()
    anonymous.close()


@pytest.fixture
def small_server(
    own_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, FastAPI]]:
    app = create_app(
        make_settings(
            tmp_path_factory.mktemp("small"),
            own_database_url,  # its failed logins lock 127.0.0.1 out
            max_body_bytes=1000,
            login_free_failures_per_user=1,
        )
    )
    with LiveServer(app) as server:
        yield server, app
    app.state.ctx.db.dispose()


def test_413_and_429_match_the_description(small_server: tuple[LiveServer, FastAPI]) -> None:
    server, app = small_server
    schema = app.openapi()
    with httpx.Client(base_url=server.url) as http:
        too_big = http.post("/auth/login", json={"username": "x", "password": "y" * 5000})
        assert too_big.status_code == 413, too_big.text
        _check(schema, "/auth/login", "post", too_big)
        for _ in range(2):
            locked = http.post("/auth/login", json={"username": "nobody", "password": "wrong pass"})
        assert locked.status_code == 429, locked.text
        _check(schema, "/auth/login", "post", locked)


def test_names_and_ids_carry_their_limits(server_app: FastAPI) -> None:
    schema = server_app.openapi()
    name = schema["components"]["schemas"]["SiteCreate"]["properties"]["name"]
    assert name["pattern"].startswith("^[A-Za-z0-9]") and name["maxLength"] == 100
    [job_id] = schema["paths"]["/jobs/{job_id}"]["get"]["parameters"]
    assert job_id["schema"]["minimum"] == 1 and job_id["schema"]["maximum"] == 2**62
