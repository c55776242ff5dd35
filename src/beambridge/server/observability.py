"""Per-request observability: a request id, a latency histogram per route, one key=value log line
(INFO; WARNING for a 5xx) in place of uvicorn's access log.

Every request gets an id (the caller's ``X-Request-ID`` when it is a short plain token, else a new one),
echoed in the response and attached to every log record written while the request is handled, so a
line in the server's log can be matched to the client's error message.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beambridge.logs import KeyValueFormatter, get_logger
from beambridge.server.metrics import ServiceMetrics, status_class

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = get_logger("beambridge.server.access")


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope["path"].startswith("/ui/static/"):
        return "/ui/static"
    return "<unmatched>"  # 404s: never the raw path (unbounded)


class ObservabilityMiddleware:
    """Request id, latency histogram and access log for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        rid = given.decode() if given is not None and _VALID_ID.match(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope)
            self.metrics.requests.labels(scope["method"], route, status_class(status)).observe(elapsed)
            # agents and launchers poll all day: their requests log at DEBUG unless they fail
            level = (
                logging.WARNING if status >= 500 else logging.DEBUG if _site_token(scope) else logging.INFO
            )
            access_log.log(
                level,
                "request",
                method=scope["method"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            request_id.reset(token)


def _site_token(scope: Any) -> bool:
    """Whether the request carries a site token (``Bearer bbs_…``): an agent's or a launcher's."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return bool(value[:11].lower() == b"bearer bbs_")
    return False


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on each record (``-`` outside a request); for log handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


def server_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``beambridge server up``: logfmt lines
    (:class:`beambridge.logs.KeyValueFormatter`) with the request id on stderr, for beambridge's loggers
    and uvicorn's (whose own access log this replaces)."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kv": {"()": KeyValueFormatter}},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "kv",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "beambridge": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
