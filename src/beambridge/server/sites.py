"""Sites: facility deployments of the agent, their heartbeats and their long-lived tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import SiteQuery
from beambridge.schemas.sites import SiteCreate, SiteUpdate
from beambridge.server import audit
from beambridge.server.auth.tokens import SITE_TOKEN_PREFIX, Principal, hash_secret, new_secret
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import site_tokens, sites
from beambridge.server.errors import ConflictError, NotFoundError
from beambridge.server.jobs.removal import delete_events_of_site
from beambridge.server.ownership import get_owned, list_owned

NOUN = "site"


def list_sites(
    conn: Connection, principal: Principal, query: SiteQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's sites matching ``query``."""
    where = column_conditions(sites, query)
    return list_owned(conn, sites, principal, where, after=after, limit=limit)


def get_site(conn: Connection, principal: Principal, site_id: int, *, lock: bool = False) -> dict[str, Any]:
    """One of the caller's sites (404 otherwise)."""
    return get_owned(conn, sites, principal, site_id, NOUN, lock=lock)


def create_site(conn: Connection, principal: Principal, request: SiteCreate, now: datetime) -> dict[str, Any]:
    """Register a site; 409 if the caller already has one of that name."""
    taken = conn.execute(
        sa.select(sites.c.id).where(sites.c.owner_id == principal.user_id, sites.c.name == request.name)
    ).first()
    if taken:
        raise ConflictError(f"you already have a site named {request.name!r} (id {taken.id})")
    values = {**request.model_dump(), "owner_id": principal.user_id, "status": {}, "created_at": now}
    site_id = conn.execute(sites.insert().values(values).returning(sites.c.id)).scalar_one()
    _audit(conn, principal, "site.create", f"site {request.name}", now, site_id=site_id)
    return get_site(conn, principal, site_id)


def _audit(
    conn: Connection, principal: Principal, action: str, target: str, now: datetime, **data: Any
) -> None:
    audit.record(
        conn,
        owner_id=principal.user_id,
        actor=principal.actor,
        action=action,
        target=target,
        now=now,
        data=data,
    )


def update_site(conn: Connection, principal: Principal, site_id: int, changes: SiteUpdate) -> dict[str, Any]:
    """Change a site's descriptive fields, its self-reported status or its location aliases."""
    get_site(conn, principal, site_id, lock=True)
    values = changes.model_dump(exclude_unset=True, exclude_none=True)
    if values:
        conn.execute(sites.update().where(sites.c.id == site_id).values(values))
    return get_site(conn, principal, site_id)


def record_heartbeat(conn: Connection, principal: Principal, site_id: int, now: datetime) -> dict[str, Any]:
    """The site's agent is alive at ``now``."""
    get_site(conn, principal, site_id, lock=True)
    conn.execute(sites.update().where(sites.c.id == site_id).values(last_heartbeat=now))
    return get_site(conn, principal, site_id)


def delete_site(conn: Connection, principal: Principal, site_id: int, now: datetime) -> None:
    """Delete a site with its apps, jobs, batch jobs, sessions, tokens and history."""
    site = get_site(conn, principal, site_id, lock=True)
    _audit(conn, principal, "site.delete", f"site {site['name']}", now, site_id=site_id)
    delete_events_of_site(conn, site_id)
    conn.execute(sites.delete().where(sites.c.id == site_id))


def create_site_token(
    conn: Connection, principal: Principal, site_id: int, name: str, now: datetime
) -> dict[str, Any]:
    """A new token acting for the caller on this site only, with its secret (which is stored hashed:
    this is the only time it can be shown)."""
    site = get_site(conn, principal, site_id)
    secret = new_secret(SITE_TOKEN_PREFIX)
    values = {
        "site_id": site_id,
        "owner_id": principal.user_id,
        "name": name,
        "token_hash": hash_secret(secret),
        "created_at": now,
    }
    token_id = conn.execute(site_tokens.insert().values(values).returning(site_tokens.c.id)).scalar_one()
    _audit(conn, principal, "site_token.create", f"token {token_id} of site {site['name']}", now, name=name)
    return {**values, "id": token_id, "token": secret, "revoked_at": None}


def list_site_tokens(conn: Connection, principal: Principal, site_id: int) -> list[dict[str, Any]]:
    """The site's tokens, revoked ones too, without their secrets."""
    get_site(conn, principal, site_id)
    rows = conn.execute(
        sa.select(site_tokens).where(site_tokens.c.site_id == site_id).order_by(site_tokens.c.id)
    )
    return [dict(r._mapping) for r in rows]


def revoke_site_token(
    conn: Connection, principal: Principal, site_id: int, token_id: int, now: datetime
) -> None:
    """Revoke a site token at once; 404 if the site has no such active token."""
    site = get_site(conn, principal, site_id)
    done = conn.execute(
        site_tokens.update()
        .where(
            site_tokens.c.id == token_id,
            site_tokens.c.site_id == site_id,
            site_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    if done.rowcount == 0:
        raise NotFoundError(f"active token {token_id} of site {site_id} not found")
    _audit(conn, principal, "site_token.revoke", f"token {token_id} of site {site['name']}", now)


def drain_site(
    conn: Connection, principal: Principal, site_id: int, reason: str, now: datetime
) -> dict[str, Any]:
    """The owner stops new work going to the site; the placement cycle moves its unclaimed jobs."""
    site = get_site(conn, principal, site_id, lock=True)
    if site["drained_at"] is None or site["drain_reason"] != reason:
        conn.execute(
            sites.update()
            .where(sites.c.id == site_id)
            .values(drained_at=site["drained_at"] or now, drain_reason=reason)
        )
        _audit(conn, principal, "site.drain", f"site {site['name']}", now, reason=reason)
    return get_site(conn, principal, site_id)


def undrain_site(conn: Connection, principal: Principal, site_id: int, now: datetime) -> dict[str, Any]:
    """The site takes new work again."""
    site = get_site(conn, principal, site_id, lock=True)
    if site["drained_at"] is not None:
        _audit(conn, principal, "site.undrain", f"site {site['name']}", now)
    conn.execute(sites.update().where(sites.c.id == site_id).values(drained_at=None, drain_reason=""))
    return get_site(conn, principal, site_id)
