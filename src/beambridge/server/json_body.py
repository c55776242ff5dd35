"""Request bodies are parsed once, here, for every route: odd JSON is a 422 that names where it was.

The standard parser accepts what the service cannot store or send back: ``NaN`` and ``Infinity``,
numbers too large for a float (``1e400`` becomes infinity), integers of any size, lone surrogates
(``"\\ud800"``) and NUL characters, and it overflows the stack on deep nesting. Every route is a
:class:`JsonRoute`, which parses the body with those caught and answers 422 with the path
(``0.parameters.v: integer … is beyond the 64-bit range``); a test checks that no route is another kind.
Each free-form field then applies its own size and depth limits (``beambridge.schemas.freejson``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from beambridge.schemas.freejson import NonFinite, describe, find_problem
from beambridge.server.errors import InvalidRequestError

_SUSPECT = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)|[0-9]{19}")
"""Text that may hold a lone surrogate, a NUL or an integer beyond 64 bits: only then is the parsed body
walked (valid UTF-8 cannot encode a surrogate, so an escape is the only way one gets in)."""


class _Parse:
    """One parse, remembering whether a non-finite number was met."""

    def __init__(self) -> None:
        self.non_finite = False

    def constant(self, name: str) -> NonFinite:
        self.non_finite = True
        return NonFinite(name)

    def number(self, text: str) -> float | NonFinite:
        value = float(text)
        if math.isfinite(value):
            return value
        self.non_finite = True
        return NonFinite(text)


def _refuse(loc: list[Any], detail: str, kind: str = "value_error") -> InvalidRequestError:
    return InvalidRequestError(detail, errors=[{"loc": ["body", *loc], "msg": detail, "type": kind}])


def parse_json_body(raw: bytes) -> Any:
    """The parsed body, or :class:`InvalidRequestError` (422) naming what is wrong and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse([], f"request body is not valid UTF-8 (byte {exc.start})", "json_invalid") from None
    parse = _Parse()
    try:
        value = json.loads(text, parse_constant=parse.constant, parse_float=parse.number)
    except json.JSONDecodeError as exc:
        raise _refuse(
            [exc.pos], f"request body is not valid JSON ({exc.msg} near character {exc.pos})", "json_invalid"
        ) from None
    except RecursionError:
        raise _refuse([], "request body is nested deeper than the service parses", "json_invalid") from None
    if parse.non_finite or _SUSPECT.search(text):
        problem = find_problem(value)
        if problem is not None:
            raise _refuse(list(problem[0]), describe(problem))
    return value


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonRoute(APIRoute):
    """An API route whose JSON body goes through :func:`parse_json_body` before FastAPI reads it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if _is_json(request.headers.get("content-type")):
                raw = await request.body()
                if raw:
                    # Starlette's Request.json() returns this instead of parsing again.
                    request._json = parse_json_body(raw)
            return await handler(request)

        return checked
