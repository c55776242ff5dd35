"""Every list route reads its filters from one model of ``beambridge.schemas.queries``, and the OpenAPI
document describes each of the model's fields as a query parameter."""

from __future__ import annotations

import types
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

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
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import jobs
from tests.conftest import ApiUser

PAGING = {"after", "limit", "order"}
PAGED = {"after", "limit"}
ROUTES: list[tuple[str, type[QueryModel], set[str]]] = [
    ("/jobs", JobQuery, PAGING),
    ("/jobs/count", JobQuery, set()),
    ("/events", EventQuery, PAGING | {"wait_s"}),
    ("/sites", SiteQuery, PAGED),
    ("/apps", AppQuery, PAGED),
    ("/batch-jobs", BatchJobQuery, PAGED),
    ("/transfers", TransferQuery, PAGED),
    ("/sessions", SessionQuery, PAGED),
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


def _sample(annotation: Any, name: str) -> Any:
    """A value a query parameter of this type accepts (the first of a list, the non-None of an option)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _sample(get_args(annotation)[0], name)
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in get_args(annotation) if a is not type(None)), name)
    if origin is list:
        return _sample(get_args(annotation)[0], name)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(iter(annotation)).value
    if annotation is bool:
        return "true"
    if annotation is datetime:
        return "2026-01-01T00:00:00Z"
    if annotation is int:
        return 1
    return "run:1" if name == "tag" else "x"


@pytest.mark.parametrize(("path", "model", "others"), ROUTES, ids=[route[0] for route in ROUTES])
def test_every_filter_at_once(alice: ApiUser, path: str, model: type[QueryModel], others: set[str]) -> None:
    """Each filter reaches the SQL (none is left without a condition: that would be a TypeError)."""
    params = [(name, _sample(field.annotation, name)) for name, field in model.model_fields.items()]
    body = alice.ok(alice.http.get(path, params=params))
    empty = {"count": 0} if path.endswith("/count") else {"items": [], "next_after": None}
    assert body == empty


def test_a_filter_without_sql_is_an_error_not_ignored() -> None:
    class Coloured(BaseModel):
        state: list[str] = ["READY"]
        colour: str | None = None

    assert len(column_conditions(jobs, Coloured(), handled={"colour"})) == 1
    with pytest.raises(TypeError, match=r"Coloured\.colour is neither a column of jobs nor handled"):
        column_conditions(jobs, Coloured())
