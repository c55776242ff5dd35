"""Tokens: short-lived signed access tokens, revocable refresh tokens, revocable site tokens.

* Access token: a JWT (HS256) naming the user, and for site tokens' sessions nothing else; checked
  without touching the database, so every request stays cheap. Its header names the signing key
  (``kid``), which can be rotated without logging anyone out (:mod:`beambridge.server.auth.keys`).
* Refresh token and site token: random secrets, stored only as SHA-256 hashes, looked up on use, and
  revocable by deleting or marking the row.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from beambridge.server.auth.keys import KeyRing, RetiredKeyError

SITE_TOKEN_PREFIX = "bbs_"
REFRESH_TOKEN_PREFIX = "bbr_"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, or a site agent acting for its owner on one site only."""

    user_id: int
    site_id: int | None = None
    token_id: int | None = None
    """The site token's id, for a site token."""
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

    def __init__(self, keys: KeyRing | str, ttl_s: int, cache_size: int = 4096) -> None:
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(None, fixed=keys)
        self.ttl_s = ttl_s
        # Verified tokens → (user id, expiry, issued at). Checking a signature and parsing claims costs more
        # than the rest of a small request; a token whose signature verified once is good until it expires
        # (revocation is checked separately, on the user: beambridge.server.auth.revocation) or its key
        # retires (checked on every use: the key id is cached with it).
        self._verified: dict[str, tuple[int, float, float, str | None]] = {}
        self._cache_size = cache_size

    def issue(self, user_id: int) -> str:
        """A token valid for ``ttl_s`` seconds."""
        now = round(time.time(), 3)  # milliseconds: a token made just after a logout outlives it
        claims = {"sub": str(user_id), "iat": now, "exp": int(now) + self.ttl_s}
        key = self.keys.current
        return jwt.encode(claims, key.key, _ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str) -> int:
        """The user id in a valid token; raises ``jwt.InvalidTokenError`` (or a subclass) otherwise."""
        return self.verify_issued(token)[0]

    def verify_issued(self, token: str) -> tuple[int, float]:
        """The user id in a valid token and when it was issued (epoch seconds).

        Raises ``jwt.InvalidTokenError`` (or a subclass), :class:`RetiredKeyError` for a token signed with
        a key rotated out whose grace period has ended, :class:`UnknownKeyError` for a key never had."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[1] > now:
            kid = cached[3]
            retire_at = None if kid is None else self.keys.retire_at(kid)
            if retire_at is not None and retire_at <= now:
                raise RetiredKeyError(kid)
            return cached[0], cached[2]
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is not None and not isinstance(kid, str):
            raise jwt.InvalidTokenError("kid is not a string")
        key = self.keys.for_kid(kid, now)
        claims = jwt.decode(token, key.key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
        user_id = int(claims["sub"])
        issued = float(claims.get("iat", 0))
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (user_id, float(claims["exp"]), issued, kid)
        return user_id, issued
