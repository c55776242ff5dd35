"""``beambridge user``: manage the users of the service's local database."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.output import Column, JsonFlag, print_json, print_table
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


@app.command("ls")
def list_users(as_json: JsonFlag = False) -> None:
    """The users of the service, with when they were added and whether they are disabled."""
    import sqlalchemy as sa

    from beambridge.server.app import open_database
    from beambridge.server.db.tables import users
    from beambridge.server.settings import ServerSettings

    database = open_database(ServerSettings(), upgrade=True)
    try:
        with database.read() as conn:
            query = sa.select(users.c.id, users.c.name, users.c.created_at, users.c.disabled_at).order_by(
                users.c.id
            )
            rows = [dict(row._mapping) for row in conn.execute(query)]
    finally:
        database.dispose()
    if as_json:
        print_json(
            [
                {
                    **row,
                    "created_at": str(row["created_at"]),
                    "disabled_at": row["disabled_at"] and str(row["disabled_at"]),
                }
                for row in rows
            ]
        )
        return
    columns: list[Column] = [
        "id",
        "name",
        "created_at",
        ("disabled", lambda row: "yes" if row["disabled_at"] else ""),
    ]
    print_table([_Row(row) for row in rows], columns, title="Users")


class _Row(dict[str, object]):
    """A row whose columns read as attributes (for the table)."""

    def __getattr__(self, name: str) -> object:
        return self[name]


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user whose password to change.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Change a user's password (prompts twice unless --password-stdin)."""
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import set_password

    password = read_password(password_stdin, confirm=True)
    database = open_database(ServerSettings(), upgrade=True)
    try:
        set_password(database, name, password)
    finally:
        database.dispose()
    typer.echo(f"password of {name!r} changed")
