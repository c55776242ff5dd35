"""Long-poll wake-ups: a waiter is woken the moment something it waits for may have happened.

Keys name what changed: ``("site", id)`` when a job of that site became runnable, ``("owner", id)`` when
any job of that user changed state. A waiter *arms* a key before it looks at the database and then waits on
what it armed, so a change committed between its look and its wait still wakes it (no lost wake-ups, no
sleep loop). Notifications may come from any thread; they are handed to the event loop thread-safely.

With several server processes, :mod:`beambridge.server.pg_notify` relays the same keys through
PostgreSQL ``LISTEN/NOTIFY``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

WakeKey = tuple[str, int]


class WakeupHub:
    """Per-key one-shot events on one asyncio loop."""

    def __init__(self) -> None:
        self._events: dict[WakeKey, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.publish: Callable[[list[WakeKey]], None] | None = None
        """Also send notifications to other server processes (see :mod:`beambridge.server.pg_notify`)."""

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the loop that runs the waiters (called at start-up)."""
        self._loop = loop

    def arm(self, key: WakeKey) -> asyncio.Event:
        """The event the next notification of ``key`` will set. Call on the loop, before looking."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for an armed event; True if it fired, False on time-out."""
        if timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def notify(self, keys: Iterable[WakeKey]) -> None:
        """Wake everyone waiting on ``keys``, here and in other server processes; safe from any thread."""
        keys = list(keys)
        if keys and self.publish is not None:
            self.publish(keys)
        self.fire(keys)

    def fire(self, keys: Iterable[WakeKey]) -> None:
        """Wake the waiters on ``keys`` in this process; safe from any thread."""
        keys = list(keys)
        if not keys or self._loop is None or self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire(keys)
        else:
            self._loop.call_soon_threadsafe(self._fire, keys)

    def _fire(self, keys: list[WakeKey]) -> None:
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()
