"""Transfer items: the records the site's transfer service works through."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from beambridge.schemas.common import MAX_BULK_SIZE, Page
from beambridge.schemas.jobs import BulkResult
from beambridge.schemas.queries import TransferQuery
from beambridge.schemas.transfers import TransferItem, TransferItemUpdate
from beambridge.server import transfers
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/transfers", tags=["transfers"], route_class=JsonRoute)


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
    with ctx.db.read() as conn:
        return page(transfers.list_transfers(conn, caller, filters, after=after, limit=limit), limit)


@router.get("/{item_id}", response_model=TransferItem)
def get_transfer(ctx: Ctx, caller: Caller, item_id: IdPath) -> dict[str, Any]:
    """One transfer item."""
    with ctx.db.read() as conn:
        return transfers.get_transfer(conn, caller, item_id)


@router.patch("", response_model=BulkResult)
def update_transfers(
    ctx: Ctx,
    caller: Caller,
    body: Annotated[list[TransferItemUpdate], Body(min_length=1, max_length=MAX_BULK_SIZE)],
) -> dict[str, Any]:
    """Record progress of transfer items in bulk, all or none."""
    with ctx.db.write() as conn:
        ids = transfers.update_transfers(conn, caller, body, utcnow())
    return {"count": len(ids), "ids": ids}
