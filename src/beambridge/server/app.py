"""The application factory: ``create_app()`` builds the FastAPI service on a database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from anyio import to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from beambridge import __version__
from beambridge.logs import get_logger
from beambridge.server.auth.revocation import Revocations
from beambridge.server.auth.throttle import LoginThrottle, PasswordChecks
from beambridge.server.auth.tokens import AccessTokens
from beambridge.server.body_limit import BodyLimitMiddleware
from beambridge.server.console import install_console
from beambridge.server.context import ServerContext, utcnow
from beambridge.server.db import migrate
from beambridge.server.db.async_reads import AsyncReader
from beambridge.server.db.engine import Database
from beambridge.server.dispatch.sessions import expire_silent_sessions
from beambridge.server.errors import install_error_handlers
from beambridge.server.metrics import ServiceMetrics
from beambridge.server.metrics import router as metrics_router
from beambridge.server.observability import ObservabilityMiddleware
from beambridge.server.openapi import install_openapi
from beambridge.server.pg_notify import PgWakeupRelay
from beambridge.server.placement.hedges import run_hedges
from beambridge.server.placement.service import PLACEMENT_WAKE, CycleReport, PlacementService, run_cycle
from beambridge.server.quotas import LongPolls
from beambridge.server.routes import (
    apps,
    artifacts,
    audit,
    auth,
    batch_jobs,
    events,
    health,
    jobs,
    placement,
    sessions,
    sites,
    transfers,
    workflows,
)
from beambridge.server.runtime import tune_garbage_collector
from beambridge.server.settings import ServerSettings
from beambridge.server.wakeups import WakeupHub

log = get_logger("beambridge.server")


class SchemaOutOfDate(RuntimeError):
    """The database is not at the schema revision this code expects."""


def open_database(settings: ServerSettings, *, upgrade: bool) -> Database:
    """The configured database, migrated to the newest schema when ``upgrade``; else checked to be there."""
    db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
    if upgrade:
        migrate.upgrade(db.engine)
    else:
        current, head = migrate.current_revision(db.engine), migrate.head_revision(db.engine)
        if current != head:
            raise SchemaOutOfDate(
                f"database schema is at revision {current or 'none'}, this server needs {head}: "
                "run 'beambridge server migrate'"
            )
    return db


def create_app(
    settings: ServerSettings | None = None, *, db: Database | None = None, upgrade: bool = True
) -> FastAPI:
    """Build the service. Without ``db`` it opens (and by default migrates) the configured database."""
    settings = settings or ServerSettings()
    db = db or open_database(settings, upgrade=upgrade)
    reader = AsyncReader(db)
    ctx = ServerContext(
        settings=settings,
        db=db,
        tokens=AccessTokens(settings.key_ring(), settings.access_token_ttl_s),
        wakeups=WakeupHub(),
        reader=reader,
        placement=PlacementService(settings),
        login_throttle=LoginThrottle(
            db,
            reader,
            settings.login_free_failures_per_user,
            settings.login_free_failures_per_address,
            first_lockout_s=settings.login_first_lockout_s,
            max_lockout_s=settings.login_max_lockout_s,
        ),
        password_checks=PasswordChecks(settings.password_check_threads, settings.password_check_queue),
        revocations=Revocations(reader),
        long_polls=LongPolls(settings.quota_event_waits),
    )
    relay = PgWakeupRelay(db, ctx.wakeups) if settings.wakeup_relay == "postgres" else None
    if relay is not None:
        ctx.wakeups.publish = relay.publish

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.wakeups.bind(asyncio.get_running_loop())
        # Few worker threads: each runs Python under the GIL, and more of them only contend for it.
        to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        await ctx.reader.open()
        if relay is not None:
            relay.start()
        if settings.tune_gc:
            tune_garbage_collector()
        sweeper = asyncio.create_task(_sweep_sessions(ctx), name="session-sweeper")
        placer = asyncio.create_task(_place_periodically(ctx), name="placement")
        try:
            yield
        finally:
            for task in (sweeper, placer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await ctx.reader.close()
            ctx.password_checks.close()
            if relay is not None:
                await relay.stop()

    app = FastAPI(
        title="beambridge",
        version=__version__,
        description="Near-real-time analysis of light-source data at whichever HPC facility finishes first.",
        lifespan=lifespan,
        docs_url=None,  # the console serves /docs from its own assets (no CDN)
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (
        health,
        auth,
        sites,
        apps,
        jobs,
        batch_jobs,
        sessions,
        transfers,
        events,
        workflows,
        placement,
        artifacts,
        audit,
    ):
        app.include_router(module.router)
    app.state.metrics = ServiceMetrics(db)
    app.include_router(metrics_router)
    install_openapi(app)
    install_console(app, ctx)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics)  # outermost: sees every request
    return app


async def _sweep_sessions(ctx: ServerContext) -> None:
    """Expire silent launcher sessions, forever, every ``session_sweep_interval_s``."""
    up_since = utcnow()
    while True:
        await asyncio.sleep(ctx.settings.session_sweep_interval_s)
        try:
            outcome = await run_in_threadpool(_expire_once, ctx, up_since)
            ctx.wakeups.notify(outcome.wake_keys)
        except Exception:  # a database hiccup must not end the sweeper
            log.exception("session_sweep_failed")


async def _place_periodically(ctx: ServerContext) -> None:
    """Bind jobs that became runnable and move the unclaimed jobs of down or draining sites, every
    ``placement_interval_s`` and as soon as parents of waiting jobs finish."""
    while True:
        armed = ctx.wakeups.arm(PLACEMENT_WAKE)
        try:
            report = await run_in_threadpool(_place_once, ctx)
            ctx.wakeups.notify(report.wake_keys)
            if report.bound or report.replaced or report.hedged:
                log.info(
                    "placement_cycle",
                    bound=len(report.bound),
                    replaced=len(report.replaced),
                    hedged=len(report.hedged),
                    deferred=report.deferred,
                )
        except Exception:  # a database hiccup must not end the placement loop
            log.exception("placement_cycle_failed")
        await ctx.wakeups.wait(armed, ctx.settings.placement_interval_s)
        await asyncio.sleep(0.05)  # a burst of wake-ups is one cycle


def _place_once(ctx: ServerContext) -> CycleReport:
    with ctx.db.write() as conn:
        now = utcnow()
        report = run_cycle(ctx.placement, conn, now)
        copies = run_hedges(ctx.placement, conn, now)
        report.hedged = copies.copies
        report.wake_keys |= copies.wake_keys
        return report


def _expire_once(ctx: ServerContext, up_since: datetime):  # type: ignore[no-untyped-def]
    with ctx.db.write() as conn:
        return expire_silent_sessions(conn, ctx.settings.session_timeout_s, utcnow(), up_since)
