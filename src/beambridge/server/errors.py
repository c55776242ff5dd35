"""Typed service errors and the one place that turns them (and everything else) into HTTP answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from beambridge.logs import get_logger

log = get_logger("beambridge.server")


class ServiceError(Exception):
    """An error with the HTTP status and the fact a user needs."""

    status_code = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(ServiceError):
    """No such object, or not yours (the two are indistinguishable on purpose)."""

    status_code = 404


class ConflictError(ServiceError):
    """The request is well-formed but the object's current state forbids it."""

    status_code = 409


class ForbiddenError(ServiceError):
    """The caller's token may not do this."""

    status_code = 403


class AuthenticationError(ServiceError):
    """Missing, malformed, expired, forged or revoked credentials."""

    status_code = 401


class InvalidRequestError(ServiceError):
    """Well-formed JSON whose content does not make sense (an unknown parameter, a missing slot…)."""

    status_code = 422


class PayloadTooLargeError(ServiceError):
    """A request body over the configured limit."""

    status_code = 413


class TooManyRequestsError(ServiceError):
    """Too many requests (or failed logins) for now; ``retry_after_s`` says when to try again."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after_s: float, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"Retry-After": str(max(1, int(retry_after_s + 0.999)))}


def _error_body(detail: Any, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, **extra}


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            parts.append(
                f"request body is not valid JSON ({err.get('msg', '')} near character {err['loc'][-1]})"
            )
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answers JSON ``{"detail": ...}`` with a 4xx that names the problem; bugs answer 500
    without a traceback on the wire (it goes to the log)."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return JSONResponse(
            _error_body(exc.detail, **exc.extra), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        return JSONResponse(_error_body(_describe_validation(errors), errors=errors), status_code=422)

    @app.exception_handler(ValidationError)
    async def _model_invalid(_request: Request, exc: ValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        return JSONResponse(_error_body(_describe_validation(errors), errors=errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_error_body(exc.detail), status_code=exc.status_code, headers=exc.headers)

    # Safety nets: input validation should stop these first; if one slips through it is still the
    # client's value (or a race with another client), not a server fault.
    @app.exception_handler(sa_exc.DataError)
    async def _data_error(_request: Request, exc: sa_exc.DataError) -> JSONResponse:
        log.warning("database_refused_value", error=exc.orig)
        return JSONResponse(_error_body(f"a value does not fit the database: {_first_line(exc.orig)}"), 422)

    @app.exception_handler(sa_exc.IntegrityError)
    async def _integrity_error(_request: Request, exc: sa_exc.IntegrityError) -> JSONResponse:
        return JSONResponse(_error_body(f"conflicts with existing data: {_first_line(exc.orig)}"), 409)

    @app.exception_handler(sa_exc.OperationalError)
    async def _busy(_request: Request, exc: sa_exc.OperationalError) -> JSONResponse:
        log.warning("database_unavailable", error=exc.orig)
        return JSONResponse(
            _error_body("database temporarily unavailable; retry shortly"), 503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", method=request.method, path=request.url.path)
        return JSONResponse(_error_body(f"internal error: {type(exc).__name__}"), status_code=500)


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


MAX_REPORTED_ERRORS = 100


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in list(errors)[:MAX_REPORTED_ERRORS]:
        item = {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type", "")}
        out.append(item)
    return out
