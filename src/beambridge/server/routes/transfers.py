"""Transfer items: the records the site's transfer service works through."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Query

from beambridge.schemas.common import MAX_BULK_SIZE, Page
from beambridge.schemas.jobs import BulkResult
from beambridge.schemas.queries import TransferQuery
from beambridge.schemas.transfers import TransferItem, TransferItemUpdate
from beambridge.server.context import utcnow
from beambridge.server.db.chunks import chunked
from beambridge.server.db.tables import transfer_items
from beambridge.server.deps import Caller, Ctx
from beambridge.server.errors import NotFoundError
from beambridge.server.ownership import get_owned, list_owned, owned
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/transfers", tags=["transfers"])


@router.get("", response_model=Page[TransferItem])
def list_transfers(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[TransferQuery, Query()],
) -> dict[str, Any]:
    """The caller's transfer items, filtered."""
    where: list[sa.ColumnElement[bool]] = []
    if filters.job_id:
        where.append(transfer_items.c.job_id.in_(filters.job_id))
    if filters.site_id is not None:
        where.append(transfer_items.c.site_id == filters.site_id)
    if filters.state:
        where.append(transfer_items.c.state.in_([s.value for s in filters.state]))
    if filters.direction is not None:
        where.append(transfer_items.c.direction == filters.direction.value)
    if filters.location is not None:
        where.append(transfer_items.c.location == filters.location)
    with ctx.db.read() as conn:
        return page(list_owned(conn, transfer_items, caller, where, after=after, limit=limit), limit)


@router.get("/{item_id}", response_model=TransferItem)
def get_transfer(ctx: Ctx, caller: Caller, item_id: IdPath) -> dict[str, Any]:
    """One transfer item."""
    with ctx.db.read() as conn:
        return get_owned(conn, transfer_items, caller, item_id, "transfer item")


@router.patch("", response_model=BulkResult)
def update_transfers(
    ctx: Ctx,
    caller: Caller,
    body: Annotated[list[TransferItemUpdate], Body(min_length=1, max_length=MAX_BULK_SIZE)],
) -> dict[str, Any]:
    """Record progress of transfer items in bulk, all or none."""
    ids = sorted({item.id for item in body})
    now = utcnow()
    with ctx.db.write() as conn:
        found: set[int] = set()
        for chunk in chunked(ids):
            query = sa.select(transfer_items.c.id).where(
                transfer_items.c.id.in_(chunk), *owned(transfer_items, caller)
            )
            found.update(conn.execute(query).scalars())
        missing = sorted(set(ids) - found)
        if missing:
            raise NotFoundError(f"transfer item {missing[0]} not found", ids=missing[:1000])
        for item in body:
            values = item.model_dump(mode="json", exclude_unset=True, exclude={"id"})
            conn.execute(
                transfer_items.update()
                .where(transfer_items.c.id == item.id)
                .values({**values, "updated_at": now})
            )
    return {"count": len(ids), "ids": ids}
