"""Login cannot be flooded: failed logins back off, and password checks run on their own threads.

* :class:`LoginThrottle` counts failed logins per user name and per client address. Past a few free
  failures each further one locks that name (or address) out for a time that doubles, up to a cap; a
  login while locked out is answered 429 with ``Retry-After`` at once, without checking the password, so
  a guesser gains nothing by hammering and costs the service nothing. A successful login clears its user
  name's count (not its address's: one valid account must not buy an address more guesses).
* :class:`PasswordChecks` runs Argon2 on a small pool of its own, with a short queue: a flood of logins
  waits there, or is turned away (429), instead of taking the threads that serve every other request.

Both live in the server process: with several workers each keeps its own counts (so an address gets at
most that many times the free failures). Behind a proxy, run uvicorn with ``--proxy-headers`` so the
address is the client's and not the proxy's.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from beambridge.server.errors import TooManyRequestsError

T = TypeVar("T")
_MAX_ENTRIES = 100_000


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Failed-login counts with doubling lock-outs, per user name and per client address."""

    def __init__(
        self,
        free_per_user: int,
        free_per_address: int,
        *,
        first_lockout_s: float = 1.0,
        max_lockout_s: float = 900.0,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"user": free_per_user, "address": free_per_address}
        self.first_lockout_s = first_lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_after_s = forget_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], _Failures] = {}

    def check(self, user: str, address: str) -> None:
        """Raise 429 (with the seconds to wait) if the user name or the address is locked out."""
        now = self.clock()
        with self._lock:
            waits = [
                entry.locked_until - now
                for key in (("user", user), ("address", address))
                if (entry := self._failures.get(key)) is not None and entry.locked_until > now
            ]
        if waits:
            wait = math.ceil(max(waits))
            raise TooManyRequestsError(
                f"too many failed logins; try again in {wait} s", retry_after_s=wait, retry_after=wait
            )

    def failed(self, user: str, address: str) -> None:
        """Count a failed login against both the user name and the address."""
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_ENTRIES:
                self._forget(now)
            for kind, key in (("user", user), ("address", address)):
                entry = self._failures.setdefault((kind, key), _Failures())
                entry.count += 1
                entry.last = now
                over = entry.count - self.free[kind]
                if over >= 0:
                    lockout = min(self.first_lockout_s * 2**over, self.max_lockout_s)
                    entry.locked_until = max(entry.locked_until, now + lockout)

    def succeeded(self, user: str) -> None:
        """A correct password: the user name's count starts again."""
        with self._lock:
            self._failures.pop(("user", user), None)

    def _forget(self, now: float) -> None:
        stale = [
            key
            for key, entry in self._failures.items()
            if entry.locked_until <= now and now - entry.last > self.forget_after_s
        ]
        for key in stale:
            del self._failures[key]
        if len(self._failures) >= _MAX_ENTRIES:  # still full: drop the oldest half
            oldest = sorted(self._failures, key=lambda key: self._failures[key].last)
            for key in oldest[: len(oldest) // 2]:
                del self._failures[key]


class PasswordChecks:
    """A few threads of their own for password hashing, with a bounded queue in front of them."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="password-check")
        self._admitted = 0  # changed on the event loop only
        self._running = 0
        self.peak_running = 0
        self._lock = threading.Lock()

    async def run(self, check: Callable[..., T], *args: Any) -> T:
        """``check(*args)`` on a password thread; 429 at once if too many are already waiting."""
        if self._admitted >= self.threads + self.queue:
            raise TooManyRequestsError(
                "too many logins at once; try again in a moment", retry_after_s=1, retry_after=1
            )
        self._admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._counted, check, args)
        finally:
            self._admitted -= 1

    def _counted(self, check: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._lock:
            self._running += 1
            self.peak_running = max(self.peak_running, self._running)
        try:
            return check(*args)
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
