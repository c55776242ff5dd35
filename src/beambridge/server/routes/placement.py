"""Placement: each site's outlook (health, backlog, rates, predicted finish) and site groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from beambridge.schemas.placement import SiteGroup, SiteGroupCreate, SitePlacement
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx, UserCaller
from beambridge.server.json_body import JsonRoute
from beambridge.server.placement import groups
from beambridge.server.placement.outlook import site_outlook
from beambridge.server.routes.paging import IdPath

router = APIRouter(tags=["placement"], route_class=JsonRoute)


@router.get("/placement/sites", response_model=list[SitePlacement])
def placement_sites(ctx: Ctx, caller: Caller) -> list[dict[str, Any]]:
    """Your sites as placement sees them now: health, capacity, backlog, rates, predicted finish per app."""
    with ctx.db.read() as conn:
        return site_outlook(conn, ctx.placement, caller, utcnow())


@router.get("/site-groups", response_model=list[SiteGroup])
def list_site_groups(ctx: Ctx, caller: UserCaller) -> list[dict[str, Any]]:
    """Your site groups."""
    with ctx.db.read() as conn:
        return groups.list_groups(conn, caller)


@router.post("/site-groups", response_model=SiteGroup, status_code=201)
def create_site_group(ctx: Ctx, caller: UserCaller, body: SiteGroupCreate) -> dict[str, Any]:
    """A named set of your sites; jobs submitted with ``site_group`` are placed on one of them."""
    with ctx.db.write() as conn:
        return groups.create_group(conn, caller, body, utcnow())


@router.delete("/site-groups/{group_id}", status_code=204)
def delete_site_group(ctx: Ctx, caller: UserCaller, group_id: IdPath) -> None:
    """Delete a site group."""
    with ctx.db.write() as conn:
        groups.delete_group(conn, caller, group_id)
