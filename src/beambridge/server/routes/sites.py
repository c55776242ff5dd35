"""Sites, their heartbeats and their tokens."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from beambridge.schemas.auth import SiteToken, SiteTokenCreate, SiteTokenCreated
from beambridge.schemas.common import Page
from beambridge.schemas.queries import SiteQuery
from beambridge.schemas.sites import Site, SiteCreate, SiteUpdate
from beambridge.server.auth.tokens import SITE_TOKEN_PREFIX, hash_secret, new_secret
from beambridge.server.context import utcnow
from beambridge.server.db.tables import site_tokens, sites
from beambridge.server.deps import Caller, Ctx, UserCaller
from beambridge.server.errors import ConflictError, NotFoundError
from beambridge.server.jobs.removal import delete_events_of_site
from beambridge.server.ownership import get_owned, list_owned
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/sites", tags=["sites"])


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
    where = [sites.c.name == filters.name] if filters.name else []
    with ctx.db.read() as conn:
        return page(list_owned(conn, sites, caller, where, after=after, limit=limit), limit)


@router.post("", response_model=Site, status_code=201)
def create_site(ctx: Ctx, caller: UserCaller, body: SiteCreate) -> dict[str, Any]:
    """Register a site."""
    now = utcnow()
    with ctx.db.write() as conn:
        taken = conn.execute(
            sa.select(sites.c.id).where(sites.c.owner_id == caller.user_id, sites.c.name == body.name)
        ).first()
        if taken:
            raise ConflictError(f"you already have a site named {body.name!r} (id {taken.id})")
        values = {**body.model_dump(), "owner_id": caller.user_id, "status": {}, "created_at": now}
        site_id = conn.execute(sites.insert().values(values).returning(sites.c.id)).scalar_one()
        return get_owned(conn, sites, caller, site_id, "site")


@router.get("/{site_id}", response_model=Site)
def get_site(ctx: Ctx, caller: Caller, site_id: IdPath) -> dict[str, Any]:
    """One site."""
    with ctx.db.read() as conn:
        return get_owned(conn, sites, caller, site_id, "site")


@router.patch("/{site_id}", response_model=Site)
def update_site(ctx: Ctx, caller: Caller, site_id: IdPath, body: SiteUpdate) -> dict[str, Any]:
    """Change a site's description or status."""
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, site_id, "site", lock=True)
        values = body.model_dump(exclude_unset=True, exclude_none=True)
        if values:
            conn.execute(sites.update().where(sites.c.id == site_id).values(values))
        return get_owned(conn, sites, caller, site_id, "site")


@router.post("/{site_id}/heartbeat", response_model=Site)
def heartbeat(ctx: Ctx, caller: Caller, site_id: IdPath) -> dict[str, Any]:
    """The site's agent is alive."""
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, site_id, "site", lock=True)
        conn.execute(sites.update().where(sites.c.id == site_id).values(last_heartbeat=utcnow()))
        return get_owned(conn, sites, caller, site_id, "site")


@router.delete("/{site_id}", status_code=204)
def delete_site(ctx: Ctx, caller: UserCaller, site_id: IdPath) -> None:
    """Delete a site with its apps, jobs, batch jobs, sessions and tokens."""
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, site_id, "site", lock=True)
        delete_events_of_site(conn, site_id)
        conn.execute(sites.delete().where(sites.c.id == site_id))


@router.post("/{site_id}/tokens", response_model=SiteTokenCreated, status_code=201)
def create_site_token(ctx: Ctx, caller: UserCaller, site_id: IdPath, body: SiteTokenCreate) -> dict[str, Any]:
    """A long-lived token that acts for you on this site only (shown once; store it with the site)."""
    secret = new_secret(SITE_TOKEN_PREFIX)
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, site_id, "site")
        values = {
            "site_id": site_id,
            "owner_id": caller.user_id,
            "name": body.name,
            "token_hash": hash_secret(secret),
            "created_at": utcnow(),
        }
        token_id = conn.execute(site_tokens.insert().values(values).returning(site_tokens.c.id)).scalar_one()
    return {**values, "id": token_id, "token": secret, "revoked_at": None}


@router.get("/{site_id}/tokens", response_model=list[SiteToken])
def list_site_tokens(ctx: Ctx, caller: UserCaller, site_id: IdPath) -> list[dict[str, Any]]:
    """The site's tokens (without their secrets)."""
    with ctx.db.read() as conn:
        get_owned(conn, sites, caller, site_id, "site")
        rows = conn.execute(
            sa.select(site_tokens).where(site_tokens.c.site_id == site_id).order_by(site_tokens.c.id)
        )
        return [dict(r._mapping) for r in rows]


@router.delete("/{site_id}/tokens/{token_id}", status_code=204)
def revoke_site_token(ctx: Ctx, caller: UserCaller, site_id: IdPath, token_id: IdPath) -> None:
    """Revoke a site token; it stops working at once."""
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, site_id, "site")
        done = conn.execute(
            site_tokens.update()
            .where(
                site_tokens.c.id == token_id,
                site_tokens.c.site_id == site_id,
                site_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )
        if done.rowcount == 0:
            raise NotFoundError(f"active token {token_id} of site {site_id} not found")
