"""Login cannot be flooded: failed logins back off, and password checks run on their own threads.

* :class:`LoginThrottle` counts failed logins per user name and per client address. Past a few free
  failures each further one locks that name (or address) out for a time that doubles, up to a cap; a
  login while locked out is answered 429 with ``Retry-After`` at once, without checking the password, so
  a guesser gains nothing by hammering and costs the service nothing. A successful login clears its user
  name's count (not its address's: one valid account must not buy an address more guesses).
* :class:`PasswordChecks` runs Argon2 on a small pool of its own, with a short queue: a flood of logins
  waits there, or is turned away (429), instead of taking the threads that serve every other request.

The counts live in the database, so several server workers (or hosts) share them; a failed login costs
one small write, and failures are bounded by the password threads' pace. Behind a proxy, run uvicorn with ``--proxy-headers`` so the
address is the client's and not the proxy's.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from beambridge.server.db.async_reads import AsyncReader
from beambridge.server.db.engine import Database
from beambridge.server.db.tables import login_failures
from beambridge.server.errors import TooManyRequestsError

T = TypeVar("T")


class LoginThrottle:
    """Failed-login counts with doubling lock-outs, per user name and per client address, kept in the
    database (``login_failures``) so that every server process enforces the same limits."""

    def __init__(
        self,
        db: Database,
        reader: AsyncReader,
        free_per_user: int,
        free_per_address: int,
        *,
        first_lockout_s: float = 1.0,
        max_lockout_s: float = 900.0,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.reader = reader
        self.free = {"user": free_per_user, "address": free_per_address}
        self.first_lockout_s = first_lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_after_s = forget_after_s
        self.clock = clock

    async def check(self, user: str, address: str) -> None:
        """Raise 429 (with the seconds to wait) if the user name or the address is locked out."""
        now = self.clock()
        params = {
            "user_kind": "user",
            "user": _key(user),
            "address_kind": "address",
            "address": _key(address),
        }
        rows = await self.reader.all(_LOCKS, params)
        waits = [row["locked_until"] - now for row in rows if row["locked_until"] > now]
        if waits:
            wait = math.ceil(max(waits))
            raise TooManyRequestsError(
                f"too many failed logins; try again in {wait} s", retry_after_s=wait, retry_after=wait
            )

    def failed(self, user: str, address: str) -> None:
        """Count a failed login against both the user name and the address (blocking: a thread's work)."""
        now = self.clock()
        with self.db.write() as conn:
            for kind, key in (("user", _key(user)), ("address", _key(address))):
                where = (login_failures.c.kind == kind, login_failures.c.key == key)
                query = sa.select(
                    login_failures.c.count.label("failures"), login_failures.c.locked_until
                ).where(*where)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                row = conn.execute(query).first()
                count = (row.failures if row else 0) + 1
                locked = row.locked_until if row else 0.0
                over = count - self.free[kind]
                if over >= 0:
                    locked = max(locked, now + min(self.first_lockout_s * 2**over, self.max_lockout_s))
                values = {"count": count, "locked_until": locked, "last_failure": now}
                if row is None:
                    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                    conn.execute(
                        insert(login_failures)
                        .values(kind=kind, key=key, **values)
                        .on_conflict_do_update(
                            index_elements=[login_failures.c.kind, login_failures.c.key],
                            set_={
                                "count": login_failures.c.count + 1,
                                "locked_until": sa.func.max(login_failures.c.locked_until, locked)
                                if conn.dialect.name == "sqlite"
                                else sa.func.greatest(login_failures.c.locked_until, locked),
                                "last_failure": now,
                            },
                        )
                    )
                else:
                    conn.execute(login_failures.update().where(*where).values(values))
            conn.execute(  # names and addresses quiet for long enough are forgotten
                login_failures.delete().where(
                    login_failures.c.last_failure < now - self.forget_after_s,
                    login_failures.c.locked_until < now,
                )
            )

    def succeeded(self, user: str) -> None:
        """A correct password: the user name's count starts again (blocking: a thread's work)."""
        where = (login_failures.c.kind == "user", login_failures.c.key == _key(user))
        with self.db.read() as conn:
            if conn.execute(sa.select(login_failures.c.count).where(*where)).first() is None:
                return
        with self.db.write() as conn:
            conn.execute(login_failures.delete().where(*where))


_LOCKS = sa.select(login_failures.c.locked_until).where(
    sa.or_(
        sa.and_(
            login_failures.c.kind == sa.bindparam("user_kind"), login_failures.c.key == sa.bindparam("user")
        ),
        sa.and_(
            login_failures.c.kind == sa.bindparam("address_kind"),
            login_failures.c.key == sa.bindparam("address"),
        ),
    )
)


def _key(value: str) -> str:
    return value[:300]


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
