"""``beambridge login``: log in to a service and save the tokens for the CLI and the SDK."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from beambridge.cli.prompts import read_password
from beambridge.client import Client


def login(
    url: Annotated[str, typer.Argument(help="The service, e.g. https://beambridge.example.org")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User name (default: your login name).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Log in and save the tokens to $BEAMBRIDGE_HOME/client.json (mode 0600)."""
    name = user or getpass.getuser()
    password = read_password(password_stdin, confirm=False)
    with Client.login(url, name, password) as client:
        path = client.save()
    typer.echo(f"logged in to {client.url} as {name}; tokens saved to {path}")


def whoami() -> None:
    """Who you are logged in as, and where."""
    from beambridge.cli.connection import open_client

    with open_client() as client:
        user = client.whoami()
        typer.echo(f"{user.name} at {client.url}")


def logout() -> None:
    """Revoke your saved login on the service and forget it here."""
    from beambridge.client.credentials import credentials_path

    path = credentials_path()
    if not path.exists():
        typer.echo("not logged in")
        return
    from beambridge.cli.connection import open_client
    from beambridge.client.errors import AuthError, ConnectionFailed

    with open_client() as client:
        try:
            client.logout()
        except AuthError:
            pass  # expired or revoked already: nothing left to revoke
        except ConnectionFailed as exc:
            typer.echo(f"warning: the service was not told ({exc}); the tokens are forgotten here", err=True)
        url = client.url
    path.unlink()
    typer.echo(f"logged out of {url}")
