"""Tenancy: every query is filtered by owner, and by site for site tokens; others' objects do not exist."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.server.auth.tokens import Principal
from beambridge.server.errors import NotFoundError


def owned(table: sa.Table, principal: Principal) -> list[sa.ColumnElement[bool]]:
    """Conditions limiting ``table`` to what ``principal`` may see."""
    where: list[sa.ColumnElement[bool]] = [table.c.owner_id == principal.user_id]
    if principal.site_id is not None:
        site_column = table.c.id if table.name == "sites" else table.c.site_id
        where.append(site_column == principal.site_id)
    return where


def get_owned(
    conn: Connection, table: sa.Table, principal: Principal, object_id: int, noun: str, *, lock: bool = False
) -> dict[str, Any]:
    """One row the caller may see, else 404 naming the object."""
    query = sa.select(table).where(table.c.id == object_id, *owned(table, principal))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"{noun} {object_id} not found")
    return dict(row._mapping)


def list_owned(
    conn: Connection,
    table: sa.Table,
    principal: Principal,
    where: list[sa.ColumnElement[bool]],
    *,
    after: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One page of the caller's rows, ascending id, after the cursor."""
    query = sa.select(table).where(*owned(table, principal), *where)
    if after is not None:
        query = query.where(table.c.id > after)
    return [dict(r._mapping) for r in conn.execute(query.order_by(table.c.id).limit(limit))]
