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
