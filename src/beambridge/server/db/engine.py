"""Connections: one engine per database, with read and write transactions that fit each backend.

SQLite allows one writer at a time. Every write transaction therefore starts with ``BEGIN IMMEDIATE``
(so two writers never deadlock upgrading a read lock) under an in-process lock (so this process's threads
queue in Python instead of spinning on ``busy_timeout``); reads run in parallel thanks to WAL mode.
PostgreSQL needs neither: row locks and ``SKIP LOCKED`` do the work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


class Database:
    """The service's database: an engine plus transaction helpers."""

    def __init__(self, url: str, *, pool_size: int = 20, echo: bool = False) -> None:
        self.url = sa.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        self._write_lock = threading.Lock()
        self.engine = self._make_engine(pool_size, echo)
        self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def _make_engine(self, pool_size: int, echo: bool) -> Engine:
        if self.is_sqlite:
            in_memory = self.url.database in (None, "", ":memory:")
            pool_args = {} if in_memory else {"pool_size": pool_size, "max_overflow": pool_size}
            engine = sa.create_engine(
                self.url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": 30},
                json_serializer=_json_dumps,
                json_deserializer=json_loads,
                **pool_args,
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        # No pre-ping (a round trip per checkout); stale connections are recycled instead.
        return sa.create_engine(
            self.url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
            json_serializer=_json_dumps,
            json_deserializer=json_loads,
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading. On PostgreSQL it runs in autocommit (each statement its own snapshot),
        which saves the BEGIN and COMMIT round trips of a transaction; on SQLite a deferred transaction."""
        if self.is_postgres:
            with self._read_engine.connect() as conn:
                yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed when the block ends and rolled back on error."""
        if not self.is_sqlite:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.connect() as raw:
            conn = raw.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_loads(value: Any) -> Any:
    """A stored JSON value as Python (integers beyond 64 bits, which only a float printed in full can be
    here, come back as floats)."""
    # SQLite gives a column declared JSON numeric affinity: a stored JSON number comes back as a number.
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own transaction handling defers it).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
