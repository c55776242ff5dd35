"""What JSON the service stores: the one check of free-form JSON values, shared by every field.

Free-form fields (a job's ``parameters``, ``data`` and ``result``, a site's ``status``, a transfer's
``info``…) are stored as they come, on SQLite and PostgreSQL alike. A value is accepted only if both
databases store it unchanged and the service can send it back: integers within 64 bits (signed),
finite numbers, no lone UTF-16 surrogates and no NUL characters in strings or keys, at most
:data:`FREE_JSON_MAX_DEPTH` levels of nesting and :data:`FREE_JSON_MAX_BYTES` bytes of JSON per field.
Everything else is refused with the place it was found (``v.w.3: integer … beyond the 64-bit range``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import orjson
from pydantic import BeforeValidator, Field, JsonValue

FREE_JSON_MAX_DEPTH = 32
"""Nesting levels one free-form field may hold (the field's own object or array counts as one)."""
FREE_JSON_MAX_BYTES = 1024 * 1024
"""Bytes of JSON one free-form field may hold."""
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


class NonFinite:
    """Stands for ``NaN``/``Infinity`` (or a number too large for a float) where a JSON parser met one,
    so the check can say where it was instead of the parser silently making it a float."""

    def __init__(self, text: str) -> None:
        self.text = text


def _string_problem(text: str) -> str | None:
    found = _BAD_CHAR.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds a NUL character (\\u0000), which the database cannot store"
    return f"holds a lone surrogate (\\u{ord(char):04x}), which is not a character"


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if MIN_JSON_INT <= value <= MAX_JSON_INT:
            return None
        digits = str(value)
        shown = digits if len(digits) <= 40 else f"{digits[:20]}…({len(digits)} digits)"
        return f"integer {shown} is beyond the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number (not valid JSON)"
    if isinstance(value, NonFinite):
        text = value.text if len(value.text) <= 40 else value.text[:20] + "…"
        return f"{text} is not a finite number (not valid JSON; send null or a string)"
    return f"a {type(value).__name__} is not a JSON value"


def _path(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def find_problem(value: Any, max_depth: int | None = None) -> tuple[tuple[str, ...], str] | None:
    """The first part of ``value`` the service would not store unchanged: its path and what is wrong."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if max_depth is not None and depth + 1 > max_depth:
                return path, f"nested deeper than {max_depth} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            children = []
            for key, child in pairs:
                if isinstance(key, str):
                    reason = _string_problem(key)
                    if reason is not None:
                        return path, f"key {ascii(key)[:60]} {reason}"
                children.append((child, (*path, str(key)), depth + 1))
            stack.extend(reversed(children))
            continue
        reason = _scalar_problem(item)
        if reason is not None:
            return path, reason
    return None


def describe(problem: tuple[tuple[str, ...], str]) -> str:
    """``path: reason`` (or the reason alone at the top)."""
    path, reason = problem
    return f"{_path(path)}: {reason}" if path else reason


def check_free_json(value: Any) -> Any:
    """``value`` if the service stores it unchanged, else ``ValueError`` saying where and why."""
    try:
        dumped = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        dumped = None
    if dumped is not None and len(dumped) > FREE_JSON_MAX_BYTES:
        raise ValueError(f"is {len(dumped)} bytes of JSON; at most {FREE_JSON_MAX_BYTES} are accepted")
    # orjson refuses deep nesting, big integers and lone surrogates; NUL, NaN and depth are looked for
    # only where they can be (each level of nesting needs a bracket), so most values are not walked.
    suspect = (
        dumped is None
        or b"\\u0000" in dumped
        or b"null" in dumped
        or _LONG_NUMBER.search(dumped) is not None
        or dumped.count(b"[") + dumped.count(b"{") >= FREE_JSON_MAX_DEPTH
    )
    if suspect:
        problem = find_problem(value, FREE_JSON_MAX_DEPTH)
        if problem is not None:
            raise ValueError(describe(problem))
    return value


FreeJson = Annotated[JsonValue, BeforeValidator(check_free_json)]
"""A free-form JSON value (see the module's docstring for what is accepted)."""
FreeJsonObject = Annotated[dict[str, JsonValue], BeforeValidator(check_free_json)]
"""A free-form JSON object."""


def free_json_field(description: str = "", **kwargs: Any) -> Any:
    """A ``Field`` for a free-form JSON value whose description states the limits."""
    limits = (
        f"Free-form JSON: at most {FREE_JSON_MAX_BYTES} bytes and {FREE_JSON_MAX_DEPTH} levels of nesting, "
        "integers within 64 bits, finite numbers, no NUL characters or lone surrogates."
    )
    return Field(description=f"{description} {limits}".strip(), **kwargs)
