"""Sites, their heartbeats and their tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from beambridge.schemas.auth import (
    SiteToken,
    SiteTokenCreate,
    SiteTokenCreated,
    SiteTokenRotate,
    SiteTokenRotated,
)
from beambridge.schemas.common import Page
from beambridge.schemas.placement import SiteDrain
from beambridge.schemas.queries import SiteQuery
from beambridge.schemas.sites import Site, SiteCreate, SiteUpdate
from beambridge.server import sites
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx, UserCaller
from beambridge.server.json_body import JsonRoute
from beambridge.server.placement.service import PLACEMENT_WAKE
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/sites", tags=["sites"], route_class=JsonRoute)


@router.get("", response_model=Page[Site])
def list_sites(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[SiteQuery, Query()],
) -> dict[str, Any]:
    """The caller's sites."""
    with ctx.db.read() as conn:
        return page(sites.list_sites(conn, caller, filters, after=after, limit=limit), limit)


@router.post("", response_model=Site, status_code=201)
def create_site(ctx: Ctx, caller: UserCaller, body: SiteCreate) -> dict[str, Any]:
    """Register a site."""
    with ctx.db.write() as conn:
        return sites.create_site(conn, caller, body, utcnow())


@router.get("/{site_id}", response_model=Site)
def get_site(ctx: Ctx, caller: Caller, site_id: IdPath) -> dict[str, Any]:
    """One site."""
    with ctx.db.read() as conn:
        return sites.get_site(conn, caller, site_id)


@router.patch("/{site_id}", response_model=Site)
def update_site(ctx: Ctx, caller: Caller, site_id: IdPath, body: SiteUpdate) -> dict[str, Any]:
    """Change a site's description or status."""
    with ctx.db.write() as conn:
        return sites.update_site(conn, caller, site_id, body)


@router.post("/{site_id}/heartbeat", response_model=Site)
def heartbeat(ctx: Ctx, caller: Caller, site_id: IdPath) -> dict[str, Any]:
    """The site's agent is alive."""
    with ctx.db.write() as conn:
        return sites.record_heartbeat(conn, caller, site_id, utcnow())


@router.post("/{site_id}/drain", response_model=Site)
def drain(ctx: Ctx, caller: UserCaller, site_id: IdPath, body: SiteDrain | None = None) -> dict[str, Any]:
    """Send no new work to the site (planned maintenance); its jobs not yet claimed move to other sites."""
    with ctx.db.write() as conn:
        site = sites.drain_site(conn, caller, site_id, body.reason if body else "", utcnow())
    ctx.wakeups.notify([PLACEMENT_WAKE])
    return site


@router.post("/{site_id}/undrain", response_model=Site)
def undrain(ctx: Ctx, caller: UserCaller, site_id: IdPath) -> dict[str, Any]:
    """Let the site take new work again."""
    with ctx.db.write() as conn:
        site = sites.undrain_site(conn, caller, site_id, utcnow())
    ctx.wakeups.notify([PLACEMENT_WAKE])
    return site


@router.delete("/{site_id}", status_code=204)
def delete_site(ctx: Ctx, caller: UserCaller, site_id: IdPath) -> None:
    """Delete a site with its apps, jobs, batch jobs, sessions and tokens."""
    with ctx.db.write() as conn:
        sites.delete_site(conn, caller, site_id, utcnow())


@router.post("/{site_id}/tokens", response_model=SiteTokenCreated, status_code=201)
def create_site_token(ctx: Ctx, caller: UserCaller, site_id: IdPath, body: SiteTokenCreate) -> dict[str, Any]:
    """A long-lived token that acts for you on this site only (shown once; store it with the site)."""
    with ctx.db.write() as conn:
        ttl_s = body.expires_in_days * 86400 if body.expires_in_days else ctx.settings.site_token_ttl_s
        return sites.create_site_token(conn, caller, site_id, body.name, utcnow(), ttl_s)


@router.post("/{site_id}/tokens/rotate", response_model=SiteTokenRotated, status_code=201)
def rotate_site_token(
    ctx: Ctx, caller: Caller, site_id: IdPath, body: SiteTokenRotate | None = None
) -> dict[str, Any]:
    """Replace a site token with a new one, shown once. A site token rotates itself (its agent does so
    before it expires); a user names the token. The old token keeps working for the service's grace
    period (``site_token_rotation_grace_s``), then gets a 401 naming its replacement."""
    settings = ctx.settings
    with ctx.db.write() as conn:
        return sites.rotate_site_token(
            conn,
            caller,
            site_id,
            body.token_id if body else None,
            utcnow(),
            ttl_s=settings.site_token_ttl_s,
            grace_s=settings.site_token_rotation_grace_s,
        )


@router.get("/{site_id}/tokens/current", response_model=SiteToken)
def current_site_token(ctx: Ctx, caller: Caller, site_id: IdPath) -> dict[str, Any]:
    """The record of the site token making this request: when it expires (for its agent)."""
    with ctx.db.read() as conn:
        return sites.current_site_token(conn, caller, site_id)


@router.get("/{site_id}/tokens", response_model=list[SiteToken])
def list_site_tokens(ctx: Ctx, caller: UserCaller, site_id: IdPath) -> list[dict[str, Any]]:
    """The site's tokens (without their secrets)."""
    with ctx.db.read() as conn:
        return sites.list_site_tokens(conn, caller, site_id)


@router.delete("/{site_id}/tokens/{token_id}", status_code=204)
def revoke_site_token(ctx: Ctx, caller: UserCaller, site_id: IdPath, token_id: IdPath) -> None:
    """Revoke a site token; it stops working at once."""
    with ctx.db.write() as conn:
        sites.revoke_site_token(conn, caller, site_id, token_id, utcnow())
