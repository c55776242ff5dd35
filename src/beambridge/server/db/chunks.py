"""Id lists in SQL: chunks under every backend's bound-parameter limit, and ``IN`` as cheap as it gets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

T = TypeVar("T")

CHUNK = 5000


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def id_in(column: sa.ColumnElement[Any], ids: Sequence[int], dialect: str) -> sa.ColumnElement[bool]:
    """``column IN ids``.

    On PostgreSQL as ``column IN (SELECT unnest(:array))``: one parameter whatever the count, so the
    statement text (and its parse) is the same for every call, and a plan of primary-key lookups even on a
    table that has just grown by thousands of rows and not yet been analysed (``= ANY(:array)`` then gets
    a scan of every row of the owner).
    """
    if dialect == "postgresql":
        array = sa.bindparam(None, list(ids), type_=ARRAY(sa.BigInteger))
        return column.in_(sa.select(sa.func.unnest(array)).scalar_subquery())
    return column.in_(list(ids))
