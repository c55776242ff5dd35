"""SQL conditions that several resources' queries share."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def column_conditions(
    table: sa.Table, query: BaseModel, *, handled: Collection[str] = ()
) -> list[sa.ColumnElement[bool]]:
    """The filters of ``query`` that name a column of ``table``: ``column = value``, or ``column IN
    (values)`` for a list; filters not given (None, empty list) add nothing.

    Every other field must be in ``handled`` (the caller turns it into SQL itself), so that a filter
    added to a query model is never silently ignored.
    """
    where: list[sa.ColumnElement[bool]] = []
    for name, value in query:
        if name in handled:
            continue
        if name not in table.c:
            raise TypeError(f"{type(query).__name__}.{name} is neither a column of {table.name} nor handled")
        if value is None or (isinstance(value, list) and not value):
            continue
        column = table.c[name]
        where.append(
            column.in_([_plain(v) for v in value]) if isinstance(value, list) else column == _plain(value)
        )
    return where


def time_window(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """``since <= column < until``, for the bounds given."""
    where: list[sa.ColumnElement[bool]] = []
    if since is not None:
        where.append(column >= since)
    if until is not None:
        where.append(column < until)
    return where
