"""The audit log of the caller's account: who made, rotated or revoked tokens, deleted things, logged in."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from beambridge.schemas.audit import AuditEntry
from beambridge.schemas.common import Page
from beambridge.schemas.queries import AuditQuery
from beambridge.server import audit
from beambridge.server.deps import Ctx, UserCaller
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, Limit, Order, page

router = APIRouter(prefix="/audit", tags=["audit"], route_class=JsonRoute)


@router.get("", response_model=Page[AuditEntry])
def list_audit(
    ctx: Ctx,
    caller: UserCaller,
    after: After = None,
    limit: Limit = 100,
    order: Order = "asc",
    *,
    filters: Annotated[AuditQuery, Query()],
) -> dict[str, Any]:
    """Actions on your account and your objects (tokens made, rotated, revoked; sites, apps, jobs deleted;
    logins; an administrator disabling you), in id order (``order=desc``: newest first). Only a user's
    own token may read it, not a site token."""
    with ctx.db.read() as conn:
        rows = audit.list_audit(conn, caller, filters, after=after, limit=limit, newest_first=order == "desc")
    return page(rows, limit)
