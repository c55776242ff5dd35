"""One validation of JSON input, everywhere: odd JSON answers 422 naming the field, never a 500.

Found from outside: integers beyond 64 bits, deep nesting and lone surrogates in free-form fields gave
500s (and reset the connection); NaN and Infinity were stored as null; on PostgreSQL a NUL character got
a 422 that did not name the field. Each free-form JSON field is tried with each bad value, on both
databases.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from beambridge.schemas.freejson import FREE_JSON_MAX_BYTES, FREE_JSON_MAX_DEPTH
from beambridge.server.json_body import JsonRoute
from tests.conftest import ApiUser
from tests.security.test_tenancy import _flat

V = "@V@"
"""Where the bad value goes in a body template (raw JSON text: NaN and lone surrogates cannot be built
with ``json=``)."""


@pytest.fixture
def world(alice: ApiUser) -> dict:
    site = alice.site()
    slots = {"raw": {"direction": "in", "local_path": "raw.h5"}}
    app = alice.app(site["id"], parameters={"v": {"type": "any", "required": False}}, transfer_slots=slots)
    transfers = {"raw": "aps_dtn:/data/a.h5"}
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w", "transfers": transfers}])
    [item] = alice.ok(alice.http.get(f"/transfers?job_id={job['id']}"))["items"]  # type: ignore[index]
    body = {"site_id": site["id"], "num_nodes": 1, "wall_time_min": 5, "queue": "q", "project": "p"}
    batch = alice.ok(alice.http.post("/batch-jobs", json=body), 201)
    session = alice.session(site["id"])
    return {"site": site, "app": app, "job": job, "transfer": item, "batch": batch, "session": session}


FIELDS: dict[str, Callable[[dict], tuple[str, str, str]]] = {
    # field → (method, url, body template) for a world
    "site status": lambda w: ("PATCH", f"/sites/{w['site']['id']}", '{"status": {"v": @V@}}'),
    "job parameters": lambda w: (
        "POST",
        "/jobs",
        f'[{{"app_id": {w["app"]["id"]}, "workdir": "x", "parameters": {{"v": @V@}}}}]',
    ),
    "job data": lambda w: (
        "POST",
        "/jobs",
        f'[{{"app_id": {w["app"]["id"]}, "workdir": "x", "data": {{"v": @V@}}}}]',
    ),
    "job data (update)": lambda w: ("PATCH", f"/jobs/{w['job']['id']}", '{"data": {"v": @V@}}'),
    "job result": lambda w: ("PATCH", f"/jobs/{w['job']['id']}", '{"result": {"v": @V@}}'),
    "job state_data": lambda w: (
        "PATCH",
        "/jobs",
        f'[{{"id": {w["job"]["id"]}, "state_data": {{"v": @V@}}}}]',
    ),
    "report result": lambda w: (
        "POST",
        f"/sessions/{w['session']['id']}/report",
        f'{{"reports": [{{"id": {w["job"]["id"]}, "state": "RUN_DONE", "result": @V@}}]}}',
    ),
    "app parameter default": lambda w: (
        "POST",
        "/apps",
        f'{{"site_id": {w["site"]["id"]}, "name": "odd", "parameters": {{"p": {{"default": @V@}}}}}}',
    ),
    "batch-job status_info": lambda w: (
        "PATCH",
        f"/batch-jobs/{w['batch']['id']}",
        '{"status_info": {"v": @V@}}',
    ),
    "transfer info": lambda w: (
        "PATCH",
        "/transfers",
        f'[{{"id": {w["transfer"]["id"]}, "info": {{"v": @V@}}}}]',
    ),
}

BAD_VALUES: dict[str, tuple[str, str]] = {
    # name → (raw JSON, what the error must say)
    "int beyond 64 bits": ("1180591620717411303424", "64-bit"),
    "negative int beyond 64 bits": ("-9223372036854775809", "64-bit"),
    "deep nesting": ("[" * 300 + "]" * 300, "deeper than"),
    "lone surrogate": ('"a\\ud800b"', "surrogate"),
    "lone low surrogate": ('"\\udc00"', "surrogate"),
    "NUL character": ('"a\\u0000b"', "NUL"),
    "NaN": ("NaN", "NaN"),
    "Infinity": ("-Infinity", "Infinity"),
    "overflowing float": ("1e400", "finite"),
    "too large": ('"' + "x" * (FREE_JSON_MAX_BYTES + 10) + '"', "bytes"),
}

FIELD_WORDS = {
    "site status": "status",
    "job parameters": "parameters",
    "job data": "data",
    "job data (update)": "data",
    "job result": "result",
    "job state_data": "state_data",
    "report result": "result",
    "app parameter default": "default",
    "batch-job status_info": "status_info",
    "transfer info": "info",
}


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("field", list(FIELDS))
def test_odd_json_in_every_free_form_field_is_a_422_naming_the_field(
    alice: ApiUser, world: dict, field: str, bad: str
) -> None:
    method, url, template = FIELDS[field](world)
    raw, message = BAD_VALUES[bad]
    response = alice.http.request(
        method, url, content=template.replace(V, raw).encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text[:500]
    detail = response.json()["detail"]
    assert message in detail and FIELD_WORDS[field] in detail, detail[:500]
    assert response.json()["errors"][0]["loc"][0] == "body"
    # the service is unharmed and nothing was half-written
    assert alice.http.get(f"/jobs/{world['job']['id']}").json()["data"] == {}


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ('"\\ud83d\\ude00 ok"', "\U0001f600 ok"),
        ("[" * (FREE_JSON_MAX_DEPTH - 1) + "]" * (FREE_JSON_MAX_DEPTH - 1), None),
        ("1e308", 1e308),
    ],
)
def test_edge_values_that_are_fine_round_trip(
    alice: ApiUser, world: dict, value: str, stored: object
) -> None:
    body = '{"data": {"v": @V@}}'.replace(V, value)
    response = alice.http.patch(
        f"/jobs/{world['job']['id']}", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text[:500]
    got = alice.http.get(f"/jobs/{world['job']['id']}").json()["data"]["v"]
    if stored is not None:
        assert got == stored


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("POST", "/sites", '{"name": "a\\ud800"}', "name"),
        ("POST", "/jobs", '[{"app_id": 1, "workdir": "w\\udfff"}]', "0.workdir"),
        ("POST", "/jobs", '[{"app_id": 1, "workdir": "w", "tags": {"k\\u0000": "v"}}]', "0.tags"),
        ("POST", "/auth/login", '{"username": "\\ud800", "password": "x"}', "username"),
    ],
)
def test_lone_surrogates_and_nul_in_any_string_are_refused_by_name(
    alice: ApiUser, world: dict, method: str, url: str, body: str, field: str
) -> None:
    response = alice.http.request(
        method, url, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text[:500]
    assert response.json()["detail"].startswith(field), response.json()["detail"]


def test_nesting_deeper_than_python_parses_is_a_422(alice: ApiUser, world: dict) -> None:
    body = '{"data": {"v": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = alice.http.patch(
        f"/jobs/{world['job']['id']}", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "deeper than" in response.json()["detail"], response.text[:300]


def test_invalid_utf8_is_a_422(alice: ApiUser, world: dict) -> None:
    body = b'{"data": {"v": "\xed\xa0\x80"}}'  # a surrogate encoded in UTF-8: not valid UTF-8
    response = alice.http.patch(
        f"/jobs/{world['job']['id']}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "UTF-8" in response.json()["detail"], response.text[:300]


def test_every_route_parses_its_body_through_the_one_check(server_app: FastAPI) -> None:
    plain = [
        f"{sorted(route.methods)} {route.path}"
        for route in _flat(server_app.routes)
        if isinstance(route, APIRoute) and not isinstance(route, JsonRoute)
    ]
    assert len([r for r in _flat(server_app.routes) if isinstance(r, JsonRoute)]) > 40
    assert not plain, f"routes not made with route_class=JsonRoute: {plain}"
