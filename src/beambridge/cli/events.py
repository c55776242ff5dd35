"""``beambridge events``: job state changes, listed or followed live."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import JsonFlag, console, print_json, to_jsonable
from beambridge.cli.prompts import parse_pairs
from beambridge.schemas.common import MAX_PAGE_SIZE
from beambridge.schemas.events import Event
from beambridge.states import JobState


def event_line(event: Event) -> str:
    """One readable line for an event."""
    data = f"  {json.dumps(event.data)}" if event.data else ""
    stamp = event.timestamp.strftime("%H:%M:%S.%f")[:-3]
    actor = f"  by {event.actor}" if event.actor else ""
    return f"{stamp}  job {event.job_id:<6} {event.from_state:>16} → {event.to_state}{actor}{data}"


def events(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's events.")] = None,
    tag: Annotated[
        list[str], typer.Option(help="Only events of jobs with this key=value tag; repeatable.")
    ] = [],  # noqa: B006
    state: Annotated[list[JobState], typer.Option(help="Only moves into this state; repeatable.")] = [],  # noqa: B006
    actor: Annotated[
        str | None,
        typer.Option(help="Only events caused by an actor starting with this ('user:alice', 'launcher:')."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events as they happen.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest events to show first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show the latest job state changes; with --follow, print new ones as they happen (Ctrl-C stops)."""
    with open_client() as client:
        filters: dict[str, Any] = {
            "job_id": job,
            "tags": parse_pairs(tag, "--tag") or None,
            "to_state": state or None,
            "actor": actor,
        }
        newest = client.events.filter(**filters).newest_first().limit(limit)
        latest = list(newest.page_size(min(limit, MAX_PAGE_SIZE)))[::-1]  # the latest, oldest first
        cursor = latest[-1].id if latest else None
        if as_json and not follow:
            print_json(list(latest))
            return
        for event in latest:
            _emit(event, as_json)
        if follow:
            for event in client.events.follow(after=cursor, **filters):
                _emit(event, as_json)


def _emit(event: Event, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(to_jsonable(event)))
    else:
        console.print(event_line(event), soft_wrap=True)
