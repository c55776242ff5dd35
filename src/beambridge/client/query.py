"""Lazy, chainable, paginating queries: ``client.jobs.filter(state="RUNNING").filter(tags={"a": "b"})``.

A :class:`Query` sends nothing until it is iterated (or counted). Iterating fetches one page at a time
and follows the service's ``next_after`` cursor, so a million jobs stream in constant memory.

Chained filters combine with AND, as in Django: ``filter(state=["READY", "RUNNING"]).filter(state="RUNNING")``
matches RUNNING jobs; two different single values (``filter(site_id=1).filter(site_id=2)``) match nothing.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar, get_origin

from pydantic import BaseModel

from beambridge.client.transport import Transport
from beambridge.schemas.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from beambridge.schemas.queries import QueryModel

M = TypeVar("M", bound=BaseModel)

ID_CHUNK = 500
"""At most this many values of one filter go in a request's URL; a query for more (thousands of job ids)
is sent in parts whose results are merged back into id order."""


class FilterKind(StrEnum):
    """How a filter keyword is sent and how repeated use combines."""

    MANY = "many"
    """One value or a list (any of them matches); sent as a repeated query parameter."""
    ONE = "one"
    """A single value."""
    TAGS = "tags"
    """A dict of tags that must all be present; sent as repeated ``tag=key:value``."""


@dataclass(frozen=True)
class FilterField:
    """A filter keyword of a resource: the query parameter it becomes and its kind."""

    param: str
    kind: FilterKind = FilterKind.ONE


TAG_PARAM = "tag"
"""The query parameter of tag filters (``tag=key:value``, repeated)."""


def filter_fields(model: type[QueryModel], **renamed: str) -> dict[str, FilterField]:
    """The filter keywords of a resource, read from its query model in :mod:`beambridge.schemas.queries`:
    one per field, named as the field unless ``renamed`` says otherwise (``tags="tag"``: the keyword
    ``tags`` fills the parameter ``tag``). A list field takes one value or many; ``tag`` takes a dict."""
    keyword_of = {param: keyword for keyword, param in renamed.items()}
    unknown = set(keyword_of) - set(model.model_fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no field {sorted(unknown)[0]!r}")
    fields = {}
    for param, info in model.model_fields.items():
        if param == TAG_PARAM:
            kind = FilterKind.TAGS
        elif get_origin(info.annotation) is list:
            kind = FilterKind.MANY
        else:
            kind = FilterKind.ONE
        fields[keyword_of.get(param, param)] = FilterField(param, kind)
    return fields


def _wire(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class Query(Generic[M]):
    """A lazy list of objects of one resource, matching filters; iterate it, or ask for a summary."""

    def __init__(
        self,
        transport: Transport,
        path: str,
        model: type[M],
        fields: Mapping[str, FilterField],
        *,
        count_path: str | None = None,
    ) -> None:
        self._transport = transport
        self._path = path
        self._model = model
        self._fields = fields
        self._count_path = count_path
        self._filters: dict[str, Any] = {}
        self._limit: int | None = None
        self._page_size = DEFAULT_PAGE_SIZE
        self._empty = False
        self._newest_first = False

    def _copy(self) -> Query[M]:
        clone: Query[M] = Query(
            self._transport, self._path, self._model, self._fields, count_path=self._count_path
        )
        clone._filters = dict(self._filters)
        clone._limit, clone._page_size, clone._empty = self._limit, self._page_size, self._empty
        clone._newest_first = self._newest_first
        return clone

    def filter(self, **filters: Any) -> Query[M]:
        """A new query that also matches ``filters`` (keywords as in the manager's ``filter``)."""
        clone = self._copy()
        for name, value in filters.items():
            field = self._fields.get(name)
            if field is None:
                known = ", ".join(sorted(self._fields))
                raise TypeError(f"cannot filter {self._path} by {name!r}; known filters: {known}")
            if value is None:
                continue
            clone._add(name, field.kind, value)
        return clone

    def _add(self, name: str, kind: FilterKind, value: Any) -> None:
        old = self._filters.get(name)
        if kind is FilterKind.MANY:
            values = [
                _wire(v) for v in (value if isinstance(value, list | tuple | set | frozenset) else [value])
            ]
            if old is not None:
                values = [v for v in values if v in old]
            self._filters[name] = values
            self._empty = self._empty or not values
        elif kind is FilterKind.TAGS:
            merged = dict(old or {})
            for key, tag in dict(value).items():
                if key in merged and merged[key] != tag:
                    self._empty = True
                merged[key] = str(tag)
            self._filters[name] = merged
        else:
            value = _wire(value)
            if old is not None and old != value:
                self._empty = True
            self._filters[name] = value

    def limit(self, count: int) -> Query[M]:
        """A new query yielding at most ``count`` objects."""
        if count < 0:
            raise ValueError("limit must be zero or more")
        clone = self._copy()
        clone._limit = count if clone._limit is None else min(count, clone._limit)
        return clone

    def newest_first(self) -> Query[M]:
        """A new query yielding the highest ids (the newest objects) first; jobs and events only."""
        clone = self._copy()
        clone._newest_first = True
        return clone

    def page_size(self, size: int) -> Query[M]:
        """A new query fetching ``size`` objects per request (1 to the service's maximum)."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
        clone = self._copy()
        clone._page_size = size
        return clone

    def params(self) -> list[tuple[str, Any]]:
        """The filters as query-string pairs."""
        pairs: list[tuple[str, Any]] = []
        for name, value in self._filters.items():
            field = self._fields[name]
            if field.kind is FilterKind.MANY:
                pairs.extend((field.param, v) for v in value)
            elif field.kind is FilterKind.TAGS:
                pairs.extend((field.param, f"{key}:{tag}") for key, tag in value.items())
            else:
                pairs.append((field.param, value))
        return pairs

    def _parts(self) -> list[tuple[list[tuple[str, Any]], int]]:
        """The query-string pairs and page size of each request series: one, or — when a list filter
        has more than ``ID_CHUNK`` values — one per slice of that list. An object matches one value of
        such a filter, so the parts are disjoint; a slice of ids fits in one page."""
        longest = max(
            (name for name, field in self._fields.items() if field.kind is FilterKind.MANY),
            key=lambda name: len(self._filters.get(name) or ()),
            default=None,
        )
        values = self._filters.get(longest) if longest is not None else None
        if longest is None or values is None or len(values) <= ID_CHUNK:
            return [(self.params(), self._page_size)]
        ordered = sorted(set(values))
        # a slice of ids fits one page; other slices (say 500 jobs' events) get large pages
        page_size = max(self._page_size, min(ID_CHUNK + 1 if longest == "id" else 1000, MAX_PAGE_SIZE))
        parts = []
        for start in range(0, len(ordered), ID_CHUNK):
            part = self._copy()
            part._filters[longest] = ordered[start : start + ID_CHUNK]
            parts.append((part.params(), page_size))
        return parts

    @property
    def matches_nothing(self) -> bool:
        """Whether the query is known to match nothing without asking (an empty list of values)."""
        return self._empty or self._limit == 0

    def request_params(self) -> list[list[tuple[str, Any]]]:
        """The query-string pairs of each request the query is sent as (several for a very long list of
        values, matching disjoint sets of objects)."""
        return [params for params, _ in self._parts()]

    def pages(self) -> Iterator[list[M]]:
        """Yield the matching objects one page at a time (a page is one request, except for a query
        sent in parts, whose merged results come in pages of the query's page size)."""
        if self._empty or self._limit == 0:
            return
        parts = self._parts()
        if len(parts) == 1:
            [(base, page_size)] = parts
            yield from self._pages_of(base, page_size, self._limit)
            return
        streams = [
            (item for page in self._pages_of(base, page_size, self._limit) for item in page)
            for base, page_size in parts
        ]
        merged: Iterator[M] = heapq.merge(
            *streams,
            key=lambda item: int(item.id),  # type: ignore[attr-defined]
            reverse=self._newest_first,
        )
        if self._limit is not None:
            merged = itertools.islice(merged, self._limit)
        while batch := list(itertools.islice(merged, self._page_size)):
            yield batch

    def _pages_of(
        self, base: list[tuple[str, Any]], page_size: int, remaining: int | None
    ) -> Iterator[list[M]]:
        after: int | None = None
        while True:
            size = page_size if remaining is None else min(page_size, remaining)
            params = [*base, ("limit", size)] + ([("after", after)] if after is not None else [])
            if self._newest_first:
                params.append(("order", "desc"))
            body = self._transport.request("GET", self._path, params=params)
            items = [self._model.model_validate(item) for item in body["items"]]
            if items:
                yield items
            if remaining is not None:
                remaining -= len(items)
                if remaining <= 0:
                    return
            after = body.get("next_after")
            if after is None:
                return

    def __iter__(self) -> Iterator[M]:
        for items in self.pages():
            yield from items

    def first(self) -> M | None:
        """The matching object with the lowest id (the highest with :meth:`newest_first`), or None."""
        return next(iter(self.limit(1)), None)

    def ids(self) -> list[int]:
        """The ids of every matching object."""
        return [int(item.id) for item in self]  # type: ignore[attr-defined]

    def count(self) -> int:
        """How many objects match (one request where the service can count, else by paging through)."""
        if self._empty or self._limit == 0:
            return 0
        if self._count_path is not None:
            total = sum(
                int(self._transport.request("GET", self._count_path, params=base)["count"])
                for base, _ in self._parts()
            )
            return total if self._limit is None else min(total, self._limit)
        return sum(len(items) for items in self.page_size(MAX_PAGE_SIZE).pages())

    def __repr__(self) -> str:
        return f"<Query {self._path} {self._filters!r} limit={self._limit}>"
