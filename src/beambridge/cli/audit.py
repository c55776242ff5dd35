"""``beambridge audit``: who did what to your account and objects (tokens, deletions, logins)."""

from __future__ import annotations

from typing import Annotated

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import Column, JsonFlag, show
from beambridge.schemas.common import MAX_PAGE_SIZE


def audit(
    action: Annotated[
        str | None, typer.Option(help="One action ('site_token.revoke') or a family ('site_token').")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Only entries whose actor starts with this.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest entries to show.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show the latest entries of your audit log, oldest first: site tokens made, rotated and revoked,
    sites, apps and jobs deleted, logins, and an administrator's changes to your account."""
    with open_client() as client:
        newest = client.audit.filter(action=action, actor=actor).newest_first().limit(limit)
        entries = list(newest.page_size(min(limit, MAX_PAGE_SIZE)))[::-1]
    columns: list[Column] = [
        ("time", lambda e: e.timestamp),
        "actor",
        "action",
        "target",
        ("details", lambda e: e.data),
    ]
    show(entries, columns, as_json=as_json, title="Audit log")
