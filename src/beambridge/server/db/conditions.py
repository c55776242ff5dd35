"""SQL conditions that several resources' queries share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa


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
