"""Every list route reads its filters from one model of ``beambridge.schemas.queries``, and the OpenAPI
document describes each of the model's fields as a query parameter."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from beambridge.schemas.queries import (
    AppQuery,
    BatchJobQuery,
    EventQuery,
    JobQuery,
    QueryModel,
    SessionQuery,
    SiteQuery,
    TransferQuery,
)
from tests.conftest import ApiUser

PAGING = {"after", "limit"}
ROUTES: list[tuple[str, type[QueryModel], set[str]]] = [
    ("/jobs", JobQuery, PAGING),
    ("/jobs/count", JobQuery, set()),
    ("/events", EventQuery, PAGING | {"wait_s"}),
    ("/sites", SiteQuery, PAGING),
    ("/apps", AppQuery, PAGING),
    ("/batch-jobs", BatchJobQuery, PAGING),
    ("/transfers", TransferQuery, PAGING),
    ("/sessions", SessionQuery, PAGING),
]


@pytest.mark.parametrize(("path", "model", "others"), ROUTES, ids=[route[0] for route in ROUTES])
def test_the_openapi_document_lists_every_filter(
    server_app: FastAPI, path: str, model: type[QueryModel], others: set[str]
) -> None:
    parameters = server_app.openapi()["paths"][path]["get"]["parameters"]
    assert all(p["in"] == "query" for p in parameters)
    assert [p["name"] for p in parameters] == [
        *sorted(others & PAGING),
        *model.model_fields,
        *others - PAGING,
    ]
    for parameter in parameters:
        field = model.model_fields.get(parameter["name"])
        if field is not None and field.description:
            assert parameter["description"] == field.description


def test_bad_tag_filters_name_the_problem(alice: ApiUser) -> None:
    for query, message in (
        ("tag=nocolon", "tag filter 'nocolon' must look like 'key:value'"),
        ("tag=bad%20key:v", "tag key 'bad key'"),
        ("tag=k:" + "v" * 300, "longer than 256 characters"),
    ):
        response = alice.http.get(f"/jobs/count?{query}")
        assert response.status_code == 422 and message in response.json()["detail"], response.text
    assert alice.ok(alice.http.get("/jobs/count?tag=url:http://x:80&other=ignored")) == {"count": 0}
