"""Site groups: named sets of a user's sites that jobs can be submitted to, each with a policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.placement import SiteGroupCreate
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import site_groups, sites
from beambridge.server.errors import ConflictError, InvalidRequestError, NotFoundError


def list_groups(conn: Connection, principal: Principal) -> list[dict[str, Any]]:
    """The caller's site groups, by name."""
    query = (
        sa.select(site_groups).where(site_groups.c.owner_id == principal.user_id).order_by(site_groups.c.name)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def create_group(
    conn: Connection, principal: Principal, request: SiteGroupCreate, now: datetime
) -> dict[str, Any]:
    """A new group of the caller's sites (422 naming a site the caller does not have; 409 if the name is taken)."""
    if len(set(request.sites)) != len(request.sites):
        raise InvalidRequestError("sites lists a site twice")
    known = set(
        conn.execute(
            sa.select(sites.c.name).where(
                sites.c.owner_id == principal.user_id, sites.c.name.in_(request.sites)
            )
        ).scalars()
    )
    unknown = [name for name in request.sites if name not in known]
    if unknown:
        raise InvalidRequestError(f"no site named {unknown[0]!r}", sites=unknown)
    taken = conn.execute(
        sa.select(site_groups.c.id).where(
            site_groups.c.owner_id == principal.user_id, site_groups.c.name == request.name
        )
    ).first()
    if taken:
        raise ConflictError(f"you already have a site group named {request.name!r}")
    values = {**request.model_dump(), "owner_id": principal.user_id, "created_at": now}
    group_id = conn.execute(site_groups.insert().values(values).returning(site_groups.c.id)).scalar_one()
    return {**values, "id": group_id}


def delete_group(conn: Connection, principal: Principal, group_id: int) -> None:
    """Delete one of the caller's groups (jobs submitted to it keep their list of sites)."""
    done = conn.execute(
        site_groups.delete().where(site_groups.c.id == group_id, site_groups.c.owner_id == principal.user_id)
    )
    if done.rowcount == 0:
        raise NotFoundError(f"site group {group_id} not found")
