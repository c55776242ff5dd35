"""``beambridge site``: list and register sites."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import JsonFlag, print_json, show

app = typer.Typer(help="Sites: facility deployments of the agent.", no_args_is_help=True)

COLUMNS = ["id", "name", "hostname", "description", "last_heartbeat"]


@app.command("ls")
def list_sites(as_json: JsonFlag = False) -> None:
    """List your sites."""
    with open_client() as client:
        show(list(client.sites.all()), COLUMNS, as_json=as_json, title="Sites")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A short name, e.g. polaris.")],
    hostname: Annotated[str, typer.Option(help="The login node the agent runs on.")] = "",
    path: Annotated[str, typer.Option(help="The site directory on that host.")] = "",
    description: Annotated[str, typer.Option(help="What the site is.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register a site."""
    with open_client() as client:
        site = client.sites.create(name, hostname=hostname, path=path, description=description)
    if as_json:
        print_json(site)
    else:
        typer.echo(f"created site {site.name!r} (id {site.id})")


@app.command("token")
def token(
    site_id: Annotated[int, typer.Argument(help="The site.")],
    name: Annotated[str, typer.Option(help="A name to recognise the token by.")] = "agent",
    as_json: JsonFlag = False,
) -> None:
    """Make a long-lived token for the site's agent (shown only this once)."""
    with open_client() as client:
        created = client.sites.create_token(site_id, name)
    if as_json:
        print_json(created)
    else:
        typer.echo(created.token)
