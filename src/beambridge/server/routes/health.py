"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from beambridge import __version__
from beambridge.server.deps import Ctx
from beambridge.server.json_body import JsonRoute

router = APIRouter(tags=["health"], route_class=JsonRoute)


@router.get("/health")
def health(ctx: Ctx) -> dict[str, Any]:
    """The service is up and its database answers."""
    ctx.db.ping()
    return {"status": "ok", "version": __version__, "database": ctx.db.url.get_backend_name()}
