"""The API's interactive documentation, served with no asset from another host (works offline)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from beambridge.server.json_body import JsonRoute

router = APIRouter(include_in_schema=False, route_class=JsonRoute)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>beambridge API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/ui/static/vendor/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/ui/static/vendor/swagger-ui/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/ui/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/ui/static/docs.js"></script>
</body></html>
"""


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, from the assets in this package."""
    return HTMLResponse(_PAGE)
