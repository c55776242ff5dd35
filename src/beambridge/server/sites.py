"""Sites: facility deployments of the agent, their heartbeats and their long-lived tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import SiteQuery
from beambridge.schemas.sites import SiteCreate, SiteUpdate
from beambridge.server import audit
from beambridge.server.auth.tokens import SITE_TOKEN_PREFIX, Principal, hash_secret, new_secret
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import run_stops, sessions, site_tokens, sites
from beambridge.server.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
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
    own_sessions = sa.select(sessions.c.id).where(sessions.c.site_id == site_id)
    conn.execute(run_stops.delete().where(run_stops.c.session_id.in_(own_sessions)))
    conn.execute(sites.delete().where(sites.c.id == site_id))


def create_site_token(
    conn: Connection, principal: Principal, site_id: int, name: str, now: datetime, ttl_s: float
) -> dict[str, Any]:
    """A new token acting for the caller on this site only, for ``ttl_s`` seconds, with its secret (which
    is stored hashed: this is the only time it can be shown)."""
    site = get_site(conn, principal, site_id)
    created = _insert_token(conn, principal.user_id, site_id, name, now, ttl_s)
    target = f"token {created['id']} of site {site['name']}"
    _audit(conn, principal, "site_token.create", target, now, name=name, expires_at=created["expires_at"])
    return created


def _insert_token(
    conn: Connection, owner_id: int, site_id: int, name: str, now: datetime, ttl_s: float
) -> dict[str, Any]:
    secret = new_secret(SITE_TOKEN_PREFIX)
    values = {
        "site_id": site_id,
        "owner_id": owner_id,
        "name": name,
        "token_hash": hash_secret(secret),
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl_s),
    }
    token_id = conn.execute(site_tokens.insert().values(values).returning(site_tokens.c.id)).scalar_one()
    return {**values, "id": token_id, "token": secret, "revoked_at": None, "replaced_by": None}


def rotate_site_token(
    conn: Connection,
    principal: Principal,
    site_id: int,
    token_id: int | None,
    now: datetime,
    *,
    ttl_s: float,
    grace_s: float,
) -> dict[str, Any]:
    """Replace a site token with a new one (same name, a fresh lifetime); the old one keeps working for
    ``grace_s`` seconds (never longer than it had left), so work in flight is not dropped.

    A site token rotates itself only; a user rotates any active token of their site. A token already
    rotated, revoked or expired cannot be rotated (409/404): its holder is not who the site trusts now."""
    site = get_site(conn, principal, site_id, lock=True)
    if principal.is_site:
        if token_id is not None and token_id != principal.token_id:
            raise ForbiddenError(
                "a site token can rotate only itself; a user rotates the site's other tokens"
            )
        token_id = principal.token_id
    elif token_id is None:
        raise InvalidRequestError('name the token to rotate: {"token_id": N} (a site token rotates itself)')
    query = sa.select(site_tokens).where(site_tokens.c.id == token_id, site_tokens.c.site_id == site_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    old = conn.execute(query).first()
    if old is None or old.revoked_at is not None:
        raise NotFoundError(f"active token {token_id} of site {site_id} not found")
    if old.replaced_by is not None:
        raise ConflictError(
            f"token {token_id} was already rotated (replaced by token {old.replaced_by}); the new token is in "
            "the site's token file, or make a new one with 'beambridge site token'",
            replaced_by=old.replaced_by,
        )
    expires = _aware(old.expires_at, now)
    if expires is not None and expires <= now:
        raise ConflictError(f"token {token_id} has expired; make a new one with 'beambridge site token'")
    new = _insert_token(conn, principal.user_id, site_id, old.name, now, ttl_s)
    previous_end = now + timedelta(seconds=grace_s)
    if expires is not None:
        previous_end = min(previous_end, expires)
    conn.execute(
        site_tokens.update()
        .where(site_tokens.c.id == token_id)
        .values(replaced_by=new["id"], expires_at=previous_end)
    )
    target = f"token {token_id} of site {site['name']}"
    _audit(conn, principal, "site_token.rotate", target, now, new_token=new["id"], old_until=previous_end)
    return {**new, "previous_id": token_id, "previous_expires_at": previous_end}


def _aware(value: datetime | None, now: datetime) -> datetime | None:
    return value.replace(tzinfo=now.tzinfo) if value is not None and value.tzinfo is None else value


def current_site_token(conn: Connection, principal: Principal, site_id: int) -> dict[str, Any]:
    """The record of the site token making the request (its agent checks when to rotate it)."""
    if not principal.is_site:
        raise ForbiddenError(
            "only a site token has a current token; a user lists them at GET /sites/{id}/tokens"
        )
    get_site(conn, principal, site_id)
    row = conn.execute(sa.select(site_tokens).where(site_tokens.c.id == principal.token_id)).one()
    return dict(row._mapping)


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
