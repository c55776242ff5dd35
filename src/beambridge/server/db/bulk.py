"""Bulk inserts: PostgreSQL ``COPY`` for many rows, a plain executemany elsewhere.

``COPY … FROM STDIN`` streams rows to the server without per-row statement or parameter processing; for
the thousands of jobs and events of a bulk request it is several times faster than any ``INSERT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

COPY_THRESHOLD = 50
"""Below this many rows an ordinary INSERT is as quick."""


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` inside the caller's transaction."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_THRESHOLD:
        conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    is_json = [isinstance(table.c[name].type, sa.JSON) for name in columns]
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(
                    [
                        orjson.dumps(row[name]).decode() if json and row[name] is not None else row[name]
                        for name, json in zip(columns, is_json, strict=True)
                    ]
                )
    finally:
        cursor.close()
