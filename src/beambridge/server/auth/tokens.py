"""Tokens: short-lived signed access tokens, revocable refresh tokens, revocable site tokens.

* Access token: a JWT (HS256) naming the user, and for site tokens' sessions nothing else; checked
  without touching the database, so every request stays cheap.
* Refresh token and site token: random secrets, stored only as SHA-256 hashes, looked up on use, and
  revocable by deleting or marking the row.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

SITE_TOKEN_PREFIX = "bbs_"
REFRESH_TOKEN_PREFIX = "bbr_"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, or a site agent acting for its owner on one site only."""

    user_id: int
    site_id: int | None = None
    actor: str = "system"
    """Who this is in the audit trail (see :mod:`beambridge.server.audit`): ``user:alice`` or
    ``site:polaris (token 3)``."""

    @property
    def is_site(self) -> bool:
        """Whether the caller holds a site token."""
        return self.site_id is not None


def new_secret(prefix: str) -> str:
    """A fresh random token with a recognisable prefix."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a refresh or site token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessTokens:
    """Signs and checks access tokens."""

    def __init__(self, secret_key: str, ttl_s: int, cache_size: int = 4096) -> None:
        self._key = secret_key
        self.ttl_s = ttl_s
        # Verified tokens → (user id, expiry, issued at). Checking a signature and parsing claims costs more
        # than the rest of a small request; a token whose signature verified once is good until it expires
        # (revocation is checked separately, on the user: beambridge.server.auth.revocation).
        self._verified: dict[str, tuple[int, float, float]] = {}
        self._cache_size = cache_size

    def issue(self, user_id: int) -> str:
        """A token valid for ``ttl_s`` seconds."""
        now = round(time.time(), 3)  # milliseconds: a token made just after a logout outlives it
        claims = {"sub": str(user_id), "iat": now, "exp": int(now) + self.ttl_s}
        return jwt.encode(claims, self._key, _ALGORITHM)

    def verify(self, token: str) -> int:
        """The user id in a valid token; raises ``jwt.InvalidTokenError`` (or a subclass) otherwise."""
        return self.verify_issued(token)[0]

    def verify_issued(self, token: str) -> tuple[int, float]:
        """The user id in a valid token and when it was issued (epoch seconds)."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0], cached[2]
        claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
        user_id = int(claims["sub"])
        issued = float(claims.get("iat", 0))
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (user_id, float(claims["exp"]), issued)
        return user_id, issued
