"""``beambridge events``: job state changes, listed or followed live."""

from __future__ import annotations

import json
from collections import deque
from typing import Annotated

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import JsonFlag, console, print_json, to_jsonable
from beambridge.schemas.common import MAX_PAGE_SIZE
from beambridge.schemas.events import Event


def event_line(event: Event) -> str:
    """One readable line for an event."""
    data = f"  {json.dumps(event.data)}" if event.data else ""
    stamp = event.timestamp.strftime("%H:%M:%S.%f")[:-3]
    return f"{stamp}  job {event.job_id:<6} {event.from_state:>16} → {event.to_state}{data}"


def events(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's events.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events as they happen.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest events to show first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show the latest job state changes; with --follow, print new ones as they happen (Ctrl-C stops)."""
    with open_client() as client:
        query = client.events.filter(job_id=job).page_size(MAX_PAGE_SIZE)
        latest: deque[Event] = deque(maxlen=limit)
        for page in query.pages():
            latest.extend(page)
        cursor = latest[-1].id if latest else None
        if as_json and not follow:
            print_json(list(latest))
            return
        for event in latest:
            _emit(event, as_json)
        if follow:
            for event in client.events.follow(after=cursor, job_id=job):
                _emit(event, as_json)


def _emit(event: Event, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(to_jsonable(event)))
    else:
        console.print(event_line(event), soft_wrap=True)
