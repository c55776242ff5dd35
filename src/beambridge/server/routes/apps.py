"""Apps registered on sites."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from beambridge.schemas.apps import App, AppCreate, AppUpdate
from beambridge.schemas.common import Page
from beambridge.schemas.queries import AppQuery
from beambridge.server import apps
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/apps", tags=["apps"], route_class=JsonRoute)


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
    with ctx.db.read() as conn:
        return page(apps.list_apps(conn, caller, filters, after=after, limit=limit), limit)


@router.post("", response_model=App, status_code=201)
def create_app(ctx: Ctx, caller: Caller, body: AppCreate) -> dict[str, Any]:
    """Register an app on one of your sites."""
    with ctx.db.write() as conn:
        return apps.create_app(conn, caller, body, utcnow())


@router.get("/{app_id}", response_model=App)
def get_app(ctx: Ctx, caller: Caller, app_id: IdPath) -> dict[str, Any]:
    """One app."""
    with ctx.db.read() as conn:
        return apps.get_app(conn, caller, app_id)


@router.patch("/{app_id}", response_model=App)
def update_app(ctx: Ctx, caller: Caller, app_id: IdPath, body: AppUpdate) -> dict[str, Any]:
    """Change an app's metadata (new jobs are checked against it; existing jobs keep theirs)."""
    with ctx.db.write() as conn:
        return apps.update_app(conn, caller, app_id, body)


@router.delete("/{app_id}", status_code=204)
def delete_app(ctx: Ctx, caller: Caller, app_id: IdPath) -> None:
    """Delete an app and its jobs."""
    with ctx.db.write() as conn:
        apps.delete_app(conn, caller, app_id, utcnow())
