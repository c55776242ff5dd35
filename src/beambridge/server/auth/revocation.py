"""Revocation that takes effect at once, while access tokens stay cheap to check.

An access token is a signed JWT checked without the database; what can end it early lives on its user's
row: ``tokens_valid_after`` (logout, disabling: tokens issued before it are refused) and ``disabled_at``.
Each server process keeps those two values per user for at most :data:`CACHE_S` seconds, so a revocation
made in this process is seen by the next request, and one made elsewhere (another worker, the CLI) within
about a second. A user that no longer exists is refused outright.
"""

from __future__ import annotations

import time
from datetime import datetime

import sqlalchemy as sa

from beambridge.server.db.async_reads import AsyncReader
from beambridge.server.db.tables import users
from beambridge.server.errors import AuthenticationError

CACHE_S = 1.0

_USER_STATE = sa.select(users.c.name, users.c.tokens_valid_after, users.c.disabled_at).where(
    users.c.id == sa.bindparam("user_id")
)


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive UTC
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class Revocations:
    """Checks a caller's user against its revocation state (cached for about a second)."""

    def __init__(self, reader: AsyncReader) -> None:
        self.reader = reader
        self._cache: dict[int, tuple[float, bool, float | None, bool, str]] = {}

    async def check(self, user_id: int, issued_at: float | None) -> str:
        """The user's name; 401 if the user is gone or disabled, or the token (issued at ``issued_at``;
        None for a site token) was issued before the user's tokens were revoked."""
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is None or now - cached[0] > CACHE_S:
            row = await self.reader.first(_USER_STATE, {"user_id": user_id})
            if len(self._cache) > 100_000:
                self._cache.clear()
            cached = self._cache[user_id] = (
                now,
                row is not None,
                None if row is None else _epoch(row["tokens_valid_after"]),
                row is not None and row["disabled_at"] is not None,
                "" if row is None else str(row["name"]),
            )
        _, exists, valid_after, disabled, name = cached
        if not exists:
            raise AuthenticationError("this token's user no longer exists")
        if disabled:
            raise AuthenticationError("this user is disabled")
        if issued_at is not None and valid_after is not None and issued_at < valid_after:
            raise AuthenticationError("access token has been revoked (logged out); log in again")
        return name

    def forget(self, user_id: int) -> None:
        """Drop what is cached for a user whose state this process just changed."""
        self._cache.pop(user_id, None)
