"""The live console: the service's own web pages (``/`` and ``/ui``), fed by the same database and the
same ownership rules as the API, with every asset shipped in this package."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from beambridge.server.console import docs, live, pages, views
from beambridge.server.console.security import SecurityHeadersMiddleware
from beambridge.server.console.web import HERE, ConsoleState, install_page_errors
from beambridge.server.context import ServerContext


def install_console(app: FastAPI, ctx: ServerContext) -> None:
    """Add the console's pages, assets, offline ``/docs`` and security headers to ``app``."""
    app.state.console = ConsoleState(secret_key=ctx.settings.resolved_secret_key())
    app.state.console_streams = live.StreamSlots()
    app.include_router(pages.router)
    app.include_router(live.router)
    app.include_router(views.router)
    app.include_router(docs.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")
    install_page_errors(app)
    app.add_middleware(SecurityHeadersMiddleware)
