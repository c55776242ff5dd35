"""Refresh tokens: issued with each access token, used once (rotated on refresh), revocable."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.auth import TokenPair
from beambridge.server.auth.tokens import REFRESH_TOKEN_PREFIX, AccessTokens, hash_secret, new_secret
from beambridge.server.db.tables import refresh_tokens, users
from beambridge.server.errors import AuthenticationError


def issue_token_pair(
    conn: Connection, tokens: AccessTokens, user_id: int, refresh_ttl_s: float, now: datetime
) -> TokenPair:
    """A new access token and a new refresh token (stored hashed) for ``user_id``."""
    refresh = new_secret(REFRESH_TOKEN_PREFIX)
    conn.execute(
        refresh_tokens.insert().values(
            user_id=user_id,
            token_hash=hash_secret(refresh),
            expires_at=now + timedelta(seconds=refresh_ttl_s),
            created_at=now,
        )
    )
    return TokenPair(access_token=tokens.issue(user_id), refresh_token=refresh, expires_in=tokens.ttl_s)


def use_refresh_token(conn: Connection, refresh_token: str, now: datetime) -> int:
    """Spend a refresh token: it stops working, and its user's id is returned (401 naming why if it is
    unknown, revoked or expired)."""
    row = conn.execute(
        sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == hash_secret(refresh_token))
    ).first()
    if row is None:
        raise AuthenticationError("unknown refresh token")
    if row.revoked_at is not None:
        revoked = row.revoked_at if row.revoked_at.tzinfo else row.revoked_at.replace(tzinfo=now.tzinfo)
        if (now - revoked).total_seconds() < REPLAY_GRACE_S:
            # two clients sharing saved credentials refreshing at the same moment: not a theft
            raise AuthenticationError("refresh token has been revoked; log in again")
        raise RefreshTokenReplayed(int(row.user_id))
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now.tzinfo)
    if expires <= now:
        raise AuthenticationError("refresh token expired; log in again")
    disabled = conn.execute(sa.select(users.c.disabled_at).where(users.c.id == row.user_id)).first()
    if disabled is None or disabled.disabled_at is not None:
        raise AuthenticationError("this user is disabled")
    conn.execute(refresh_tokens.update().where(refresh_tokens.c.id == row.id).values(revoked_at=now))
    return int(row.user_id)


REPLAY_GRACE_S = 10.0
"""A spent refresh token used again within this many seconds is a race between two clients sharing saved
credentials, refused plainly; later, it is treated as stolen (:class:`RefreshTokenReplayed`)."""


class RefreshTokenReplayed(AuthenticationError):
    """A refresh token used again after it was spent or revoked: someone else may hold a copy."""

    def __init__(self, user_id: int) -> None:
        super().__init__(
            "refresh token has been revoked; as it was used again, all of this user's tokens are now "
            "revoked too (log in again)"
        )
        self.user_id = user_id


def revoke_all_tokens(conn: Connection, user_id: int, now: datetime) -> None:
    """End every refresh and access token of a user (a replayed refresh token: treat it as stolen)."""
    conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(users.update().where(users.c.id == user_id).values(tokens_valid_after=now))


def revoke_refresh_token(conn: Connection, refresh_token: str, now: datetime) -> int | None:
    """Log out: revoke a refresh token and end its user's access tokens issued until now (on every device:
    their clients refresh with their own refresh tokens). The user's id, or None if the token is unknown
    or already revoked (then nothing happens)."""
    row = conn.execute(
        sa.select(refresh_tokens.c.id, refresh_tokens.c.user_id).where(
            refresh_tokens.c.token_hash == hash_secret(refresh_token), refresh_tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    conn.execute(refresh_tokens.update().where(refresh_tokens.c.id == row.id).values(revoked_at=now))
    conn.execute(users.update().where(users.c.id == row.user_id).values(tokens_valid_after=now))
    return int(row.user_id)
