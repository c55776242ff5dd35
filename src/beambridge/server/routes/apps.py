"""Apps registered on sites."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from beambridge.schemas.apps import App, AppCreate, AppUpdate
from beambridge.schemas.common import Page
from beambridge.schemas.queries import AppQuery
from beambridge.server.context import utcnow
from beambridge.server.db.tables import apps, sites
from beambridge.server.deps import Caller, Ctx
from beambridge.server.errors import ConflictError
from beambridge.server.jobs.removal import delete_events_of_app
from beambridge.server.ownership import get_owned, list_owned
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/apps", tags=["apps"])


@router.get("", response_model=Page[App])
def list_apps(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[AppQuery, Query()],
) -> dict[str, Any]:
    """The caller's apps, optionally of one site or with one name."""
    where = []
    if filters.site_id is not None:
        where.append(apps.c.site_id == filters.site_id)
    if filters.name is not None:
        where.append(apps.c.name == filters.name)
    with ctx.db.read() as conn:
        return page(list_owned(conn, apps, caller, where, after=after, limit=limit), limit)


@router.post("", response_model=App, status_code=201)
def create_app(ctx: Ctx, caller: Caller, body: AppCreate) -> dict[str, Any]:
    """Register an app on one of your sites."""
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, body.site_id, "site")
        taken = conn.execute(
            sa.select(apps.c.id).where(apps.c.site_id == body.site_id, apps.c.name == body.name)
        ).first()
        if taken:
            raise ConflictError(f"site {body.site_id} already has an app named {body.name!r} (id {taken.id})")
        values = {**body.model_dump(mode="json"), "owner_id": caller.user_id, "created_at": utcnow()}
        app_id = conn.execute(apps.insert().values(values).returning(apps.c.id)).scalar_one()
        return get_owned(conn, apps, caller, app_id, "app")


@router.get("/{app_id}", response_model=App)
def get_app(ctx: Ctx, caller: Caller, app_id: IdPath) -> dict[str, Any]:
    """One app."""
    with ctx.db.read() as conn:
        return get_owned(conn, apps, caller, app_id, "app")


@router.patch("/{app_id}", response_model=App)
def update_app(ctx: Ctx, caller: Caller, app_id: IdPath, body: AppUpdate) -> dict[str, Any]:
    """Change an app's metadata (new jobs are checked against it; existing jobs keep theirs)."""
    with ctx.db.write() as conn:
        get_owned(conn, apps, caller, app_id, "app", lock=True)
        values = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        if values:
            conn.execute(apps.update().where(apps.c.id == app_id).values(values))
        return get_owned(conn, apps, caller, app_id, "app")


@router.delete("/{app_id}", status_code=204)
def delete_app(ctx: Ctx, caller: Caller, app_id: IdPath) -> None:
    """Delete an app and its jobs."""
    with ctx.db.write() as conn:
        get_owned(conn, apps, caller, app_id, "app", lock=True)
        delete_events_of_app(conn, app_id)
        conn.execute(apps.delete().where(apps.c.id == app_id))
