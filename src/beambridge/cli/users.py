"""``beambridge user``: manage the users of the service's local database."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.prompts import read_password

app = typer.Typer(help="Manage users (acts on the local service database).", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The new user's name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (prompts for the password twice unless --password-stdin)."""
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import add_user

    password = read_password(password_stdin, confirm=True)
    database = open_database(ServerSettings(), upgrade=True)
    try:
        user_id = add_user(database, name, password)
    finally:
        database.dispose()
    typer.echo(f"user {name!r} added (id {user_id})")


def _set_disabled(name: str, disabled: bool) -> None:
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import disable_user, enable_user

    database = open_database(ServerSettings(), upgrade=True)
    try:
        (disable_user if disabled else enable_user)(database, name)
    finally:
        database.dispose()


@app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user at once: no login, and every token of theirs (site tokens too) is refused."""
    _set_disabled(name, True)
    typer.echo(f"user {name!r} disabled; their tokens are refused from now on")


@app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="The user to enable again.")]) -> None:
    """Let a disabled user log in again (tokens from before stay ended)."""
    _set_disabled(name, False)
    typer.echo(f"user {name!r} enabled")
