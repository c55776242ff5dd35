"""Small reads on the event loop, without a hop through the thread pool.

Most requests are one indexed ``SELECT`` (a job by id, a site token by hash). Running them on a worker
thread costs more than the query: the hop and the fight for the GIL with the other workers. On
PostgreSQL such reads go through psycopg's async connection pool instead (autocommit, one round trip);
on SQLite the query runs in place, which takes microseconds and needs no network.

Statements are fixed SQLAlchemy Core selects with named ``bindparam`` placeholders (module constants),
compiled once and then executed with plain values (numbers, strings, datetimes) handed to psycopg as they
are.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from beambridge.server.db.engine import Database, json_loads


async def _configure(conn: AsyncConnection[Any]) -> None:
    # JSON as the engine reads it (orjson): PostgreSQL prints a stored 1e308 as 1 followed by 308 zeros,
    # which must come back as the float it was, not as an integer no client can take.
    set_json_loads(json_loads, conn)


class AsyncReader:
    """Runs single ``SELECT`` statements for coroutines."""

    def __init__(self, db: Database, *, max_size: int = 10) -> None:
        self.db = db
        self._compiled: dict[sa.Select[Any], str] = {}
        self._pool: AsyncConnectionPool | None = None
        if db.is_postgres:
            conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pool = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=max_size,
                open=False,
                configure=_configure,
                kwargs={"autocommit": True, "row_factory": dict_row},
            )

    async def open(self) -> None:
        """Open the pool (from the event loop that will use it)."""
        if self._pool is not None:
            await self._pool.open()

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()

    async def all(self, statement: sa.Select[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every row of ``statement`` (a constant select with named bind parameters), as dicts."""
        if self._pool is None:
            with self.db.read() as conn:
                return [dict(row._mapping) for row in conn.execute(statement, params)]
        sql = self._compiled.get(statement)
        if sql is None:
            sql = self._compiled[statement] = str(statement.compile(dialect=self.db.engine.dialect))
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return list(await cursor.fetchall())  # type: ignore[arg-type]

    async def first(self, statement: sa.Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row of ``statement``, or None."""
        rows = await self.all(statement, params)
        return rows[0] if rows else None
