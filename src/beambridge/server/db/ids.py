"""Reserving primary keys for a bulk insert, so the insert itself can be a plain (pipelined) executemany.

A multi-row ``INSERT … RETURNING id`` of thousands of rows is one enormous statement whose parameters the
driver must re-parse every time; taking the ids first and inserting with them is several times faster.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_SQLITE_SEQUENCE = sa.text("SELECT seq FROM sqlite_sequence WHERE name = :table")


def reserve_ids(conn: Connection, table: sa.Table, count: int) -> list[int]:
    """``count`` fresh ids for ``table``, ascending.

    PostgreSQL: drawn from the column's sequence (safe under concurrency). SQLite: the next ids after the
    largest ever used (``sqlite_sequence``: the tables are ``AUTOINCREMENT``, so a deleted newest row's id
    is never handed out again), which is safe because every SQLite write transaction holds the database's
    write lock. Inserting the rows with these ids moves ``sqlite_sequence`` on.
    """
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        # The sequence is looked up once, not per id, and the ids come back as one array: thousands of
        # one-value rows cost more to fetch than to draw.
        query = sa.text(
            "SELECT array_agg(nextval(s.seq)) "
            "FROM (SELECT pg_get_serial_sequence(:table, 'id')::regclass AS seq) AS s, "
            "generate_series(1, :count)"
        )
        return sorted(conn.execute(query, {"table": table.name, "count": count}).scalar_one())
    if conn.dialect.name == "sqlite":
        if not conn.in_transaction():
            raise RuntimeError("reserve_ids needs the write transaction that will insert the rows")
        largest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
        used = conn.execute(_SQLITE_SEQUENCE, {"table": table.name}).scalar()
        start = max(largest, used or 0)
        return list(range(start + 1, start + 1 + count))
    raise NotImplementedError(f"no id reservation for {conn.dialect.name}")
