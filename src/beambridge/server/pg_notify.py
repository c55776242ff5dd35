"""Wake-ups across server processes through PostgreSQL ``LISTEN/NOTIFY``.

With one server process, :class:`~beambridge.server.wakeups.WakeupHub` wakes long-polls in memory. With
several (``beambridge server up --workers N``), a change committed by one process must wake the waiters of
the others: each process publishes its wake-up keys on a channel and listens to it, firing the keys that
other processes publish. Its own messages it skips, having fired them already.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterable

import psycopg

from beambridge.logs import get_logger
from beambridge.server.db.engine import Database
from beambridge.server.wakeups import WakeKey, WakeupHub

CHANNEL = "beambridge_wakeups"
log = get_logger("beambridge.server")


def _format(origin: str, keys: Iterable[WakeKey]) -> str:
    return origin + "|" + ",".join(f"{kind}:{ident}" for kind, ident in keys)


def _parse(payload: str) -> tuple[str, list[WakeKey]]:
    origin, _, body = payload.partition("|")
    keys: list[WakeKey] = []
    for item in filter(None, body.split(",")):
        kind, _, ident = item.partition(":")
        keys.append((kind, int(ident)))
    return origin, keys


class PgWakeupRelay:
    """Publishes this process's wake-ups and fires the other processes' ones."""

    def __init__(self, db: Database, hub: WakeupHub) -> None:
        if not db.is_postgres:
            raise ValueError("wake-up relay through LISTEN/NOTIFY needs PostgreSQL")
        self.conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.hub = hub
        self.origin = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._publisher: psycopg.Connection | None = None
        self._listener: asyncio.Task[None] | None = None

    def publish(self, keys: list[WakeKey]) -> None:
        """Send ``keys`` to the other processes (from any thread)."""
        payload = _format(self.origin, keys)
        with self._lock:
            for attempt in range(2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = psycopg.connect(self.conninfo, autocommit=True)
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return
                except psycopg.OperationalError:
                    self._publisher = None
                    if attempt:
                        log.warning(
                            "wakeups_not_published", keys=keys, effect="waiters time out and look again"
                        )

    def start(self) -> None:
        """Start listening (call on the server's event loop)."""
        self._listener = asyncio.create_task(self._listen(), name="wakeup-listener")

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for note in conn.notifies():
                        origin, keys = _parse(note.payload)
                        if origin != self.origin:
                            self.hub.fire(keys)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wakeup_listener_reconnecting", reason="connection lost")
                await asyncio.sleep(1)
