"""``beambridge site``: list and register sites."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import Column, JsonFlag, print_json, print_table, show
from beambridge.client import Client
from beambridge.schemas.placement import SitePlacement

app = typer.Typer(help="Sites: facility deployments of the agent.", no_args_is_help=True)

COLUMNS = ["id", "name", "hostname", "description", "last_heartbeat"]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _health(site: SitePlacement) -> str:
    return site.health + (f" ({'; '.join(site.reasons)})" if site.reasons else "")


def _finish(site: SitePlacement) -> str:
    return ", ".join(f"{app.app} {_seconds(app.finish_s)}" for app in site.apps) or "no apps"


PLACEMENT_COLUMNS: list[Column] = [
    ("id", lambda row: row[0].id),
    ("name", lambda row: row[0].name),
    ("health", lambda row: _health(row[1]) if row[1] else "?"),
    ("backlog", lambda row: row[1].backlog if row[1] else ""),
    ("running", lambda row: row[1].running if row[1] else ""),
    ("slots", lambda row: f"{row[1].free_slots}/{row[1].running_slots}" if row[1] else ""),
    ("done/min", lambda row: row[1].finished_per_min if row[1] else ""),
    ("typical finish", lambda row: _finish(row[1]) if row[1] else ""),
    ("transfer routes", lambda row: _routes(row[1]) if row[1] else ""),
]
"""Slots are free/total in running pilots; done/min over the last 15 min; typical finish: the predicted
finish of a job of each app placed now; transfer routes: each location alias's rate and per-task
overhead, measured (from the agent's timed tasks) or configured."""


def _routes(outlook: SitePlacement) -> str:
    return "; ".join(
        f"{r.location} {r.rate_bps / 1e6:,.0f} MB/s + {r.overhead_s:.1f} s/task"
        f" ({'measured, ' + str(r.samples) + ' tasks' if r.basis == 'history' else 'configured'}"
        f"{f', {r.failure_rate:.0%} failed' if r.failure_rate else ''})"
        for r in outlook.routes
    )


@app.command("ls")
def list_sites(as_json: JsonFlag = False) -> None:
    """List your sites with their health, backlog, rates and the predicted finish of a typical job."""
    with open_client() as client:
        sites = list(client.sites.all())
        if as_json:
            print_json(sites)
            return
        outlook = {site.site_id: site for site in client.sites.placement()}
    print_table([(site, outlook.get(site.id)) for site in sites], PLACEMENT_COLUMNS, title="Sites")


def _site_id(client: Client, site: str) -> int:
    if site.isdigit():
        return int(site)
    found = list(client.sites.filter(name=site))
    if not found:
        raise typer.BadParameter(f"you have no site named {site!r}", param_hint="SITE")
    return found[0].id


@app.command("drain")
def drain(
    site: Annotated[str, typer.Argument(help="The site: its name or id.")],
    reason: Annotated[str, typer.Option(help="Why (shown with the site's health).")] = "",
) -> None:
    """Send the site no new work (e.g. planned maintenance); its jobs not yet claimed move to other sites."""
    with open_client() as client:
        done = client.sites.drain(_site_id(client, site), reason)
    typer.echo(f"site {done.name!r} is draining: no new work; unclaimed jobs are re-placed")


@app.command("undrain")
def undrain(site: Annotated[str, typer.Argument(help="The site: its name or id.")]) -> None:
    """Let a drained site take new work again."""
    with open_client() as client:
        done = client.sites.undrain(_site_id(client, site))
    typer.echo(f"site {done.name!r} takes new work again")


groups = typer.Typer(help="Site groups: named sets of your sites to submit jobs to.", no_args_is_help=True)
app.add_typer(groups, name="group")


@groups.command("create")
def create_group(
    name: Annotated[str, typer.Argument(help="The group's name.")],
    sites: Annotated[str, typer.Option("--sites", help="Its sites by name, comma-separated.")],
    policy: Annotated[
        str | None, typer.Option(help="Placement policy: round_robin, shortest_backlog or fastest_finish.")
    ] = None,
) -> None:
    """Make a site group (jobs: job create --app NAME --site-group GROUP)."""
    with open_client() as client:
        group = client.site_groups.create(
            name, [s.strip() for s in sites.split(",") if s.strip()], policy=policy
        )
    typer.echo(f"created site group {group.name!r}: {', '.join(group.sites)}")


@groups.command("ls")
def list_groups(as_json: JsonFlag = False) -> None:
    """List your site groups."""
    with open_client() as client:
        show(
            client.site_groups.list(), ["id", "name", "sites", "policy"], as_json=as_json, title="Site groups"
        )


@groups.command("rm")
def remove_group(group: Annotated[str, typer.Argument(help="The group: its name or id.")]) -> None:
    """Delete a site group."""
    with open_client() as client:
        client.site_groups.delete(int(group) if group.isdigit() else group)
    typer.echo(f"deleted site group {group}")


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
    days: Annotated[
        float | None,
        typer.Option(
            "--expires-in-days", min=0.001, help="How long it lasts (default: the service's, 90 days)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a long-lived token for the site's agent (shown only this once). A running agent rotates its
    token before it expires."""
    with open_client() as client:
        created = client.sites.create_token(site_id, name, expires_in_days=days)
    if as_json:
        print_json(created)
    else:
        typer.echo(created.token)


@app.command("rotate-token")
def rotate_token(
    site_id: Annotated[int, typer.Argument(help="The site.")],
    token_id: Annotated[
        int, typer.Argument(help="The token to replace ('GET /sites/ID/tokens' lists them).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Replace a site token with a new one (printed only this once; put it in the site's token file). The
    old one keeps working for the service's grace period, then is refused."""
    with open_client() as client:
        rotated = client.sites.rotate_token(site_id, token_id)
    if as_json:
        print_json(rotated)
        return
    typer.echo(rotated.token)
    until = rotated.previous_expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    typer.echo(f"token {rotated.previous_id} works until {until}", err=True)
