"""Query parameters shared by every list route."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query

from beambridge.schemas.common import MAX_PAGE_SIZE

MAX_ID = 2**62
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="An object id")]
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="The cursor: objects after this id in the page's order (greater ids; smaller with desc)",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}")]


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page body: the items and, when the page is full, the cursor for the next one."""
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


Order = Annotated[
    Literal["asc", "desc"],
    Query(description="Id order: asc (oldest first, the default) or desc (newest first)"),
]
