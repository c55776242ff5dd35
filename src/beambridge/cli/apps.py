"""``beambridge app``: list and register apps."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import Column, JsonFlag, print_json, show

app = typer.Typer(help="Apps registered on sites.", no_args_is_help=True)

COLUMNS: list[Column] = ["id", "site_id", "name", "description", ("parameters", lambda a: list(a.parameters))]


@app.command("ls")
def list_apps(
    site: Annotated[int | None, typer.Option("--site", help="Only the apps of this site id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List your apps."""
    with open_client() as client:
        show(list(client.apps.filter(site_id=site)), COLUMNS, as_json=as_json, title="Apps")


@app.command("create")
def create(
    site: Annotated[int, typer.Option("--site", help="The site id.")],
    name: Annotated[str, typer.Argument(help="The app's name.")],
    description: Annotated[str, typer.Option(help="What it does.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register an app (with no declared parameters) on a site."""
    with open_client() as client:
        created = client.apps.create(site, name, description=description)
    if as_json:
        print_json(created)
    else:
        typer.echo(f"created app {created.name!r} (id {created.id}) on site {created.site_id}")
