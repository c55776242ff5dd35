"""Bulk inserts: PostgreSQL ``COPY`` for many rows; SQLite: the driver's executemany over values converted
here, column by column.

``COPY … FROM STDIN`` streams rows to the server without per-row statement or parameter processing; for
the thousands of jobs and events of a bulk request it is several times faster than any ``INSERT``. The
rows are encoded here, straight into COPY's text format, a few thousand at a time.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

COPY_THRESHOLD = 50
"""Below this many rows an ordinary INSERT is as quick."""
_ROWS_PER_WRITE = 2000
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = re.compile(r"[\\\t\n\r]")


def _text(value: Any) -> str:
    text = str(value)
    return text.translate(_ESCAPES) if _SPECIAL.search(text) else text


def _json(value: Any) -> str:
    # orjson writes control characters as escapes, so only backslashes need COPY's escaping
    text = orjson.dumps(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def _number(value: Any) -> str:
    return repr(value)


def _boolean(value: Any) -> str:
    return "t" if value else "f"


def _timestamp(value: datetime) -> str:
    return value.isoformat()


def _encoder(column: sa.Column[Any]) -> Callable[[Any], str]:
    kind = column.type
    if isinstance(kind, sa.JSON):
        return _json
    if isinstance(kind, sa.Boolean):
        return _boolean
    if isinstance(kind, sa.Integer | sa.Float):
        return _number
    if isinstance(kind, sa.DateTime):
        return _timestamp
    return _text


def _encode_column(values: Sequence[Any], encode: Callable[[Any], str]) -> list[str]:
    """One column's values as COPY text; a value object that recurs (the request's timestamp, a shared
    event payload, an owner id) is encoded once. Keyed by identity, which is unique while ``values``
    holds the objects."""
    memo: dict[int, str] = {}
    out = []
    for value in values:
        text = memo.get(id(value))
        if text is None:
            text = memo[id(value)] = "\\N" if value is None else encode(value)
        out.append(text)
    return out


def copy_text(table: sa.Table, columns: list[str], rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` in PostgreSQL's COPY text format (tab-separated, ``\\N`` for NULL, escaped)."""
    pick = operator.itemgetter(*columns)
    by_column = zip(*map(pick, rows), strict=True) if len(columns) > 1 else [[pick(r) for r in rows]]
    encoded = [
        _encode_column(values, _encoder(table.c[name]))
        for name, values in zip(columns, by_column, strict=True)
    ]
    return "\n".join(map("\t".join, zip(*encoded, strict=True))) + "\n"


def sqlite_values(
    conn: Connection, table: sa.Table, columns: list[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """``rows`` as tuples of driver values: each column's SQLAlchemy bind processor (JSON to text, times
    to SQLite's format) applied once per distinct value object, as SQLAlchemy's executemany would apply
    it per row and parameter."""
    pick = operator.itemgetter(*columns)
    by_column = zip(*map(pick, rows), strict=True) if len(columns) > 1 else [[pick(r) for r in rows]]
    converted = []
    for name, values in zip(columns, by_column, strict=True):
        process = table.c[name].type._cached_bind_processor(conn.dialect)
        if process is None:
            converted.append(values)
            continue
        memo: dict[int, Any] = {}
        out = []
        for value in values:
            key = id(value)
            if key in memo:
                out.append(memo[key])
            else:
                out.append(memo.setdefault(key, None if value is None else process(value)))
        converted.append(out)
    return list(zip(*converted, strict=True))


SQLITE_THRESHOLD = 50
"""From this many rows SQLite's inserts skip SQLAlchemy's per-row parameter processing."""


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` inside the caller's transaction."""
    if not rows:
        return
    if conn.dialect.name == "sqlite" and len(rows) >= SQLITE_THRESHOLD:
        columns = list(rows[0])
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
        conn.exec_driver_sql(sql, sqlite_values(conn, table, columns, rows))
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_THRESHOLD:
        conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for start in range(0, len(rows), _ROWS_PER_WRITE):
                copy.write(copy_text(table, columns, rows[start : start + _ROWS_PER_WRITE]))
    finally:
        cursor.close()
