"""``beambridge server``: run the service, or migrate its database, on this machine."""

from __future__ import annotations

import os
from typing import Annotated

import typer

app = typer.Typer(help="Run the service on this machine.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: BEAMBRIDGE_DATABASE_URL, else SQLite under BEAMBRIDGE_HOME)."
    ),
]


def _use_database(url: str | None) -> None:
    # The environment, not an argument: uvicorn's factory (and each of its workers) builds the settings.
    if url:
        os.environ["BEAMBRIDGE_DATABASE_URL"] = url


def _migrate() -> str:
    """Bring the configured database to the newest schema; returns its URL without a password."""
    import sqlalchemy as sa

    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings

    settings = ServerSettings()
    database = open_database(settings, upgrade=True)
    database.dispose()
    return sa.make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


@app.command("up")
def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the service (migrating its database first)."""
    import uvicorn

    from beambridge.server.observability import server_log_config

    _use_database(db)
    url = _migrate()
    if workers > 1:
        if not url.startswith("postgresql"):
            raise typer.BadParameter(
                "several workers need PostgreSQL (SQLite has one writer)", param_hint="--workers"
            )
        # Long-polls in one worker must be woken by changes committed in another.
        os.environ["BEAMBRIDGE_WAKEUP_RELAY"] = "postgres"
    os.environ.setdefault("BEAMBRIDGE_TUNE_GC", "1")  # the worker processes run nothing but the service
    typer.echo(f"beambridge service on http://{host}:{port} (database {url})", err=True)
    uvicorn.run(
        "beambridge.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=server_log_config(log_level),
        timeout_graceful_shutdown=5,
    )


@app.command("migrate")
def migrate(db: DbOption = None) -> None:
    """Bring the database's schema up to date."""
    _use_database(db)
    typer.echo(f"database {_migrate()} is up to date")


@app.command("rotate-key")
def rotate_key(
    grace: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Seconds the old key is still accepted (default: the access-token lifetime, so no token "
            "it signed is refused before it would have expired anyway).",
        ),
    ] = None,
) -> None:
    """Replace the key that signs access tokens, without logging anyone out.

    New tokens are signed with the new key at once (every server process sharing BEAMBRIDGE_HOME sees it
    within a second); tokens signed with the old one work until the grace period ends, and then clients
    renew them with their refresh tokens."""
    from datetime import UTC, datetime

    from beambridge.server.auth.keys import rotate_key as rotate
    from beambridge.server.settings import ServerSettings

    settings = ServerSettings()
    if settings.secret_key:
        raise typer.BadParameter(
            "the key is set by BEAMBRIDGE_SECRET_KEY: rotate it by restarting with the new key there, the old "
            "one in BEAMBRIDGE_PREVIOUS_SECRET_KEY and BEAMBRIDGE_PREVIOUS_SECRET_KEY_UNTIL set to when its "
            "tokens have expired",
            param_hint="BEAMBRIDGE_SECRET_KEY",
        )
    grace_s = settings.access_token_ttl_s if grace is None else grace
    new, old, until = rotate(settings.home, grace_s)
    when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    typer.echo(f"signing key {new} is in use; tokens signed with {old} are accepted until {when}")
