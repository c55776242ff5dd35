"""Per-user quotas: jobs created per minute, jobs in the system, open event long-polls.

A request that would go over a quota is refused whole with 429, a ``Retry-After`` header and a message
naming the quota, its limit, what the user has, and what to do — never cut short.

* **Jobs created per minute** are counted in the database (``quota_usage``: one row per user and minute),
  so every server process shares one count. The count is taken in the creating transaction after
  locking the user's row for this minute, so concurrent requests of one user are counted one after the
  other and never overshoot; what a refused request would have added is rolled back with it. The window
  slides: the previous minute counts for the part of it still within the last 60 s.
* **Jobs in the system** (not ended) are counted in the same transaction, after that lock, with the
  ``(owner_id, state)`` index.
* **Open event long-polls** (``GET /events?wait_s=…``) are counted per server process: they are held by
  the process that answers them, so with N workers a user may hold up to N times the limit.

A limit of 0 turns a quota off. Settings: ``BEAMBRIDGE_QUOTA_JOBS_PER_MINUTE``,
``BEAMBRIDGE_QUOTA_JOBS_IN_SYSTEM``, ``BEAMBRIDGE_QUOTA_EVENT_WAITS``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from beambridge.server.db.tables import jobs, quota_usage
from beambridge.server.errors import TooManyRequestsError
from beambridge.states import TERMINAL_STATES

WINDOW_S = 60
IN_SYSTEM_RETRY_S = 30
"""What ``Retry-After`` says when the jobs in the system are at their limit (it depends on them ending)."""
_TERMINAL = [state.value for state in TERMINAL_STATES]


def check_job_creation(
    conn: Connection, owner_id: int, count: int, now: datetime, *, per_minute: int, in_system: int
) -> None:
    """Count ``count`` new jobs of ``owner_id`` against both quotas, in the creating transaction; 429 if
    either would be exceeded (the transaction must then be rolled back, as raising does)."""
    if count <= 0 or (per_minute <= 0 and in_system <= 0):
        return
    if 0 < per_minute < count:
        raise TooManyRequestsError(
            f"quota: at most {per_minute:,} jobs created per minute, and this request has {count:,}: send at "
            f"most {per_minute:,} at a time",
            retry_after_s=WINDOW_S,
            quota="jobs_per_minute",
            limit=per_minute,
            retry_after=WINDOW_S,
        )
    epoch = now.timestamp()
    minute = int(epoch // WINDOW_S)
    this, previous = _count_creation(conn, owner_id, minute, count)
    if per_minute > 0:
        into = (epoch % WINDOW_S) / WINDOW_S  # how far into this minute: that much of the last has slid out
        recent = this + previous * (1 - into)
        if recent > per_minute:
            retry = _rate_retry_after(this - count, previous, into, count, per_minute)
            raise TooManyRequestsError(
                f"quota: at most {per_minute:,} jobs created per minute, and these {count:,} would make "
                f"{math.ceil(recent):,} in the last minute; try again in {retry} s",
                retry_after_s=retry,
                quota="jobs_per_minute",
                limit=per_minute,
                retry_after=retry,
            )
    if in_system > 0:
        active = conn.execute(
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.owner_id == owner_id, jobs.c.state.not_in(_TERMINAL))
        ).scalar_one()
        if active + count > in_system:
            raise TooManyRequestsError(
                f"quota: at most {in_system:,} of your jobs may be in the system (not ended) at once; you "
                f"have {active:,}, and these {count:,} would make {active + count:,}: wait for some to "
                "end, or cancel or delete some",
                retry_after_s=IN_SYSTEM_RETRY_S,
                quota="jobs_in_system",
                limit=in_system,
                retry_after=IN_SYSTEM_RETRY_S,
            )


def _rate_retry_after(before: int, previous: int, into: float, count: int, limit: int) -> int:
    """Seconds until ``count`` more jobs fit: the previous minute slides out as time passes; if even a
    fresh minute would not hold them (with this minute's), wait for the next minute's start, and so on."""
    for step in range(1, 2 * WINDOW_S + 1):
        later = into + step / WINDOW_S
        if later < 1:
            recent = before + count + previous * (1 - later)
        else:
            recent = count + before * (1 - (later - 1)) if later < 2 else count
        if recent <= limit:
            return step
    return 2 * WINDOW_S


def _count_creation(conn: Connection, owner_id: int, minute: int, count: int) -> tuple[int, int]:
    """Add ``count`` to this minute's row of the user (made if missing; locked until commit) and return
    (this minute's total, the previous minute's)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(quota_usage)
        .values(owner_id=owner_id, minute=minute, jobs_created=count)
        .on_conflict_do_update(
            index_elements=[quota_usage.c.owner_id, quota_usage.c.minute],
            set_={"jobs_created": quota_usage.c.jobs_created + count},
        )
        .returning(quota_usage.c.jobs_created)
    )
    this = int(conn.execute(statement).scalar_one())
    previous = conn.execute(
        sa.select(quota_usage.c.jobs_created).where(
            quota_usage.c.owner_id == owner_id, quota_usage.c.minute == minute - 1
        )
    ).scalar()
    if this == count:  # the first request of this minute: forget the user's older minutes
        conn.execute(
            quota_usage.delete().where(quota_usage.c.owner_id == owner_id, quota_usage.c.minute < minute - 1)
        )
    return this, int(previous or 0)


class LongPolls:
    """Open event long-polls per user, in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[int, int] = {}
        self._lock = threading.Lock()

    def held(self, user_id: int) -> int:
        """How many long-polls ``user_id`` has open in this process."""
        with self._lock:
            return self._open.get(user_id, 0)

    @contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        """Count one long-poll of ``user_id`` while it waits; 429 if the user already has ``limit``."""
        with self._lock:
            held = self._open.get(user_id, 0)
            if self.limit > 0 and held >= self.limit:
                raise TooManyRequestsError(
                    f"quota: at most {self.limit} event long-polls (wait_s) open at once per user; you have "
                    f"{held}: wait on one cursor for all your jobs (filters narrow it), or poll without wait_s",
                    retry_after_s=1,
                    quota="event_waits",
                    limit=self.limit,
                    retry_after=1,
                )
            self._open[user_id] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._open[user_id] - 1
                if left:
                    self._open[user_id] = left
                else:
                    del self._open[user_id]
