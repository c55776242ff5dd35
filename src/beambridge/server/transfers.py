"""Transfer items: the files a site's transfer service moves in and out for jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import TransferQuery
from beambridge.schemas.transfers import TRANSFER_NEXT, TransferItemUpdate, TransferState
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.chunks import chunked
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import transfer_items
from beambridge.server.errors import ConflictError, NotFoundError
from beambridge.server.ownership import get_owned, list_owned, owned

NOUN = "transfer item"


def list_transfers(
    conn: Connection, principal: Principal, query: TransferQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's transfer items matching ``query``."""
    where = column_conditions(transfer_items, query)
    return list_owned(conn, transfer_items, principal, where, after=after, limit=limit)


def get_transfer(conn: Connection, principal: Principal, item_id: int) -> dict[str, Any]:
    """One of the caller's transfer items (404 otherwise)."""
    return get_owned(conn, transfer_items, principal, item_id, NOUN)


def update_transfers(
    conn: Connection, principal: Principal, updates: Sequence[TransferItemUpdate], now: datetime
) -> list[int]:
    """Record the site's progress on transfer items, all or none (404 naming the first item the caller
    may not see); returns the ids, ascending."""
    ids = sorted({item.id for item in updates})
    found: dict[int, str] = {}
    for chunk in chunked(ids):
        query = sa.select(transfer_items.c.id, transfer_items.c.state).where(
            transfer_items.c.id.in_(chunk), *owned(transfer_items, principal)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found.update((row.id, row.state) for row in conn.execute(query))
    missing = sorted(set(ids) - found.keys())
    if missing:
        raise NotFoundError(f"{NOUN} {missing[0]} not found", ids=missing[:1000])
    for item in updates:
        if item.state is None:
            continue
        current = TransferState(found[item.id])
        if item.state not in TRANSFER_NEXT[current]:
            allowed = ", ".join(sorted(TRANSFER_NEXT[current])) or "none"
            raise ConflictError(
                f"{NOUN} {item.id} cannot move from {current} to {item.state} (allowed: {allowed}); "
                "nothing changed",
                id=item.id,
                state=current.value,
            )
        found[item.id] = item.state.value
    for item in updates:
        values = item.model_dump(mode="json", exclude_unset=True, exclude={"id"})
        conn.execute(
            transfer_items.update()
            .where(transfer_items.c.id == item.id)
            .values({**values, "updated_at": now})
        )
    return ids
