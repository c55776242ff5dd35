"""The OpenAPI description says what the service really answers, errors included.

FastAPI documents only the success answer and a 422 shaped like its own default (an array), which this
service never sends. :func:`install_openapi` replaces that: every operation lists the error statuses it
can answer, each with :class:`~beambridge.schemas.errors.ErrorBody` (a ``detail`` line, sometimes with
``errors`` and other fields); ``tests/server/test_openapi.py`` provokes each and checks the body against
the description.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from beambridge.schemas.errors import ErrorBody

_WHY = {
    "401": "Missing, malformed, expired, forged or revoked credentials",
    "403": "The caller's token may not do this (a site token on a user-only route)",
    "404": "No such object, or not the caller's (the two are answered alike)",
    "409": "The object's current state forbids this (an illegal transition, an expired session…)",
    "413": "The request body is larger than the service accepts",
    "422": "The request is malformed or names something that does not make sense",
    "429": "Too many requests for now; see Retry-After",
}
_PUBLIC = {"/health", "/auth/login", "/auth/refresh", "/auth/logout"}


_QUOTA_LIMITED = {
    ("/auth/login", "post"),  # failed-login back-off, too many logins at once
    ("/jobs", "post"),  # jobs per minute, jobs in the system (server/quotas.py)
    ("/submissions", "post"),
    ("/submissions/{submission_id}/steps/{step}", "post"),
    ("/events", "get"),  # open long-polls
}


def error_statuses(path: str, method: str) -> list[str]:
    """The error statuses an operation can answer."""
    if path == "/health":
        return []
    statuses = {"422"}
    if path not in _PUBLIC:
        statuses |= {"401", "403", "404"}
    else:
        statuses |= {"401"}
    if method in ("post", "put", "patch", "delete"):
        statuses |= {"409", "413"} if path not in _PUBLIC else {"413"}
    if (path, method) in _QUOTA_LIMITED:
        statuses.add("429")
    return sorted(statuses)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the error answers (built once, then cached by FastAPI)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status in error_statuses(path, method):
                    responses[status] = {"description": _WHY[status], "content": body}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
