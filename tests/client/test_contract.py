"""The SDK's keywords are the schemas' fields: a filter or a job field added to ``beambridge.schemas``
and not to the SDK (or the other way round) fails here, without a server."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from beambridge.client.jobs import JobManager
from beambridge.client.query import FilterKind, filter_fields
from beambridge.client.resources import (
    AppManager,
    BatchJobManager,
    EventManager,
    Manager,
    SiteManager,
    TransferManager,
)
from beambridge.client.sessions import SessionManager
from beambridge.schemas.jobs import JobCreate
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

MANAGERS: list[tuple[type[Manager[Any]], type[QueryModel]]] = [
    (JobManager, JobQuery),
    (EventManager, EventQuery),
    (SiteManager, SiteQuery),
    (AppManager, AppQuery),
    (BatchJobManager, BatchJobQuery),
    (TransferManager, TransferQuery),
    (SessionManager, SessionQuery),
]


def _keywords(function: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize(("manager", "model"), MANAGERS, ids=lambda item: item.__name__)
def test_filter_keywords_are_the_query_models_fields(
    manager: type[Manager[Any]], model: type[BaseModel]
) -> None:
    params = {field.param for field in manager.fields.values()}
    assert params == set(model.model_fields)
    assert _keywords(manager.filter) == set(manager.fields)  # type: ignore[attr-defined]


def test_filter_kinds_follow_the_field_types() -> None:
    fields = filter_fields(JobQuery, tags="tag")
    assert fields["tags"].param == "tag" and fields["tags"].kind is FilterKind.TAGS
    assert fields["state"].kind is FilterKind.MANY and fields["id"].kind is FilterKind.MANY
    assert fields["parent_id"].kind is FilterKind.ONE and fields["created_after"].kind is FilterKind.ONE
    with pytest.raises(ValueError, match="no field 'colour'"):
        filter_fields(JobQuery, colours="colour")


def test_create_takes_every_field_of_job_create() -> None:
    # `site` names the one site of an app given by name; the SDK resolves it to that site's app id
    assert {"app_id", "workdir"} | _keywords(JobManager.create) - {"site"} == set(JobCreate.model_fields)


def test_job_query_reads_tags() -> None:
    query = JobQuery.model_validate({"tag": ["run:1", "url:http://x:80"]})
    assert query.tags == {"run": "1", "url": "http://x:80"}
    for bad, message in (("nocolon", "must look like 'key:value'"), ("bad key:v", "tag key 'bad key'")):
        with pytest.raises(ValueError, match=message):
            JobQuery.model_validate({"tag": [bad]})
