"""Building blocks shared by every schema: strict input models, output models, pages, limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

MAX_PAGE_SIZE = 5000
"""Largest ``limit`` a list request may ask for."""
DEFAULT_PAGE_SIZE = 100
MAX_BULK_SIZE = 50_000
"""Largest number of items one bulk create or update may carry."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class InputModel(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutputModel(BaseModel):
    """A response body, built from a database row."""

    model_config = ConfigDict(from_attributes=True)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="json"),
]
"""A timestamp, always in UTC (SQLite returns naive values; they are UTC by construction)."""


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits, '_', '.', '-' (1-100 characters)"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": _NAME.pattern, "minLength": 1, "maxLength": 100}),
]
"""A short identifier for users, sites, apps and tokens."""


def check_tags(value: dict[str, str]) -> dict[str, str]:
    """``value`` if it is a valid set of tags, else ``ValueError`` naming the bad key or value."""
    if len(value) > 64:
        raise ValueError("at most 64 tags")
    for key, tag in value.items():
        if not _TAG_KEY.match(key):
            raise ValueError(f"tag key {key!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if len(tag) > 256:
            raise ValueError(f"tag {key!r} is longer than 256 characters")
    return value


Tags = Annotated[dict[str, str], AfterValidator(check_tags)]
"""String labels on a job; filters match them by containment."""

PositiveId = Annotated[int, Field(ge=1, le=2**62)]
"""An object id (bounded so that every database can store it)."""
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

T = TypeVar("T")


class Page(OutputModel, Generic[T]):
    """One page of a list, in ascending id order; pass ``next_after`` back as ``after`` for the next."""

    items: list[T]
    next_after: int | None = Field(
        default=None, description="Cursor for the next page (the last id on this one), or null at the end"
    )
