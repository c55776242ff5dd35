"""Apps: the metadata of what a site can run, registered by its agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.apps import AppCreate, AppUpdate
from beambridge.schemas.queries import AppQuery
from beambridge.server import audit
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import apps, sites
from beambridge.server.errors import ConflictError
from beambridge.server.jobs.removal import delete_events_of_app
from beambridge.server.ownership import get_owned, list_owned

NOUN = "app"


def list_apps(
    conn: Connection, principal: Principal, query: AppQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's apps matching ``query``."""
    where = column_conditions(apps, query)
    return list_owned(conn, apps, principal, where, after=after, limit=limit)


def get_app(conn: Connection, principal: Principal, app_id: int, *, lock: bool = False) -> dict[str, Any]:
    """One of the caller's apps (404 otherwise)."""
    return get_owned(conn, apps, principal, app_id, NOUN, lock=lock)


def create_app(conn: Connection, principal: Principal, request: AppCreate, now: datetime) -> dict[str, Any]:
    """Register an app on one of the caller's sites; 409 if the site has one of that name."""
    get_owned(conn, sites, principal, request.site_id, "site")
    taken = conn.execute(
        sa.select(apps.c.id).where(apps.c.site_id == request.site_id, apps.c.name == request.name)
    ).first()
    if taken:
        raise ConflictError(
            f"site {request.site_id} already has an app named {request.name!r} (id {taken.id})"
        )
    values = {**request.model_dump(mode="json"), "owner_id": principal.user_id, "created_at": now}
    app_id = conn.execute(apps.insert().values(values).returning(apps.c.id)).scalar_one()
    return get_app(conn, principal, app_id)


def update_app(conn: Connection, principal: Principal, app_id: int, changes: AppUpdate) -> dict[str, Any]:
    """Change an app's metadata (new jobs are checked against it; existing jobs keep theirs)."""
    get_app(conn, principal, app_id, lock=True)
    values = changes.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if values:
        conn.execute(apps.update().where(apps.c.id == app_id).values(values))
    return get_app(conn, principal, app_id)


def delete_app(conn: Connection, principal: Principal, app_id: int, now: datetime) -> None:
    """Delete an app with its jobs and their history."""
    app = get_app(conn, principal, app_id, lock=True)
    audit.record(
        conn,
        owner_id=principal.user_id,
        actor=principal.actor,
        action="app.delete",
        target=f"app {app['name']} of site {app['site_id']}",
        now=now,
        data={"app_id": app_id},
    )
    delete_events_of_app(conn, app_id)
    conn.execute(apps.delete().where(apps.c.id == app_id))
