"""Browser sessions of the console: a random cookie, stored hashed, revocable, with a CSRF token.

The cookie holds a random secret (HttpOnly, SameSite=Strict, Secure over HTTPS); the database holds only
its SHA-256, the user and the expiry, so logging out (or an administrator deleting the rows) ends the
session at once. Every state-changing request must also carry the session's CSRF token, an HMAC of the
session secret under the server's key: a page of this service can put it in its forms, another site
cannot read it.

Before login there is no session; the login form is protected by a double-submit token (a random cookie
that the form must repeat), so another site cannot log a browser in as someone else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.server.audit import user_actor
from beambridge.server.auth.tokens import Principal, hash_secret
from beambridge.server.db.tables import console_sessions, users

SESSION_COOKIE = "bb_session"
LOGIN_COOKIE = "bb_login"
SESSION_PREFIX = "bbc_"


@dataclass(frozen=True)
class ConsoleUser:
    """The logged-in user of a browser session."""

    user_id: int
    name: str
    session_id: int
    csrf: str

    @property
    def principal(self) -> Principal:
        """The same principal the API would see for this user's access token."""
        return Principal(user_id=self.user_id, actor=user_actor(self.name))


def csrf_token(secret_key: str, session_secret: str) -> str:
    """The CSRF token bound to one session."""
    mac = hmac.new(secret_key.encode(), b"console-csrf:" + session_secret.encode(), hashlib.sha256)
    return mac.hexdigest()[:40]


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def open_session(conn: Connection, user_id: int, now: datetime, ttl_s: int) -> str:
    """A new session for ``user_id``; returns the secret for the cookie. Expired rows are swept here."""
    conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        console_sessions.insert().values(
            user_id=user_id,
            token_hash=hash_secret(secret),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return secret


def close_session(conn: Connection, secret: str, now: datetime) -> None:
    """Revoke the session whose cookie is ``secret`` (nothing happens for an unknown one)."""
    conn.execute(
        console_sessions.update()
        .where(console_sessions.c.token_hash == hash_secret(secret))
        .values(revoked_at=now)
    )


_LOOKUP = (
    sa.select(console_sessions.c.id, console_sessions.c.user_id, console_sessions.c.expires_at, users.c.name)
    .join(users, users.c.id == console_sessions.c.user_id)
    .where(
        console_sessions.c.token_hash == sa.bindparam("token_hash"),
        console_sessions.c.revoked_at.is_(None),
        users.c.disabled_at.is_(None),  # a disabled user's console sessions end with their tokens
    )
)


def lookup_statement() -> sa.Select[tuple[int, int, datetime, str]]:
    """The constant statement finding a live session by its hashed secret (``token_hash``)."""
    return _LOOKUP


def new_login_token() -> str:
    """The random value of the pre-login double-submit cookie."""
    return secrets.token_urlsafe(24)
