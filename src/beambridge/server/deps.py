"""FastAPI dependencies: the server context and the authenticated caller."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import jwt
import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from beambridge.server.audit import site_actor, user_actor
from beambridge.server.auth.keys import RetiredKeyError, UnknownKeyError
from beambridge.server.auth.tokens import SITE_TOKEN_PREFIX, Principal, hash_secret
from beambridge.server.context import ServerContext
from beambridge.server.db.tables import site_tokens, sites
from beambridge.server.errors import AuthenticationError, ForbiddenError


def site_token_ended(token_id: int, expires: datetime, replaced_by: int | None) -> str:
    """Why a site token past its ``expires_at`` is refused, and what to do."""
    when = f"{expires:%Y-%m-%d %H:%M:%S} UTC"
    if replaced_by is not None:
        return (
            f"site token {token_id} was rotated (replaced by token {replaced_by}) and its grace period "
            f"ended at {when}: use the new token, which the site's agent keeps in the site's token file"
        )
    return (
        f"site token {token_id} expired at {when}: make a new one ('beambridge site token SITE_ID') and "
        "put it in the site's token file (a running agent rotates its token before it expires)"
    )


_bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login, or a site token")


# Dependencies are ``async def`` on purpose: a plain ``def`` dependency costs a hop through the thread pool
# on every request, and under load each hop waits for the GIL.


async def get_context(request: Request) -> ServerContext:
    """The app's shared state."""
    ctx: ServerContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServerContext, Depends(get_context)]


async def get_principal(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Who is calling, from the ``Authorization: Bearer`` header."""
    if credentials is None or not credentials.credentials:
        raise AuthenticationError(
            "missing credentials: send 'Authorization: Bearer <token>' (log in at /auth/login)"
        )
    token = credentials.credentials
    if token.startswith(SITE_TOKEN_PREFIX):
        principal = await _site_principal(ctx, token)
        await ctx.revocations.check(principal.user_id, None)
        return principal
    try:
        user_id, issued_at = ctx.tokens.verify_issued(token)
    except jwt.ExpiredSignatureError:
        raise AuthenticationError(
            "access token expired: refresh it at /auth/refresh or log in again"
        ) from None
    except RetiredKeyError:
        raise AuthenticationError(
            "access token was signed with a key the service has rotated out: refresh it at /auth/refresh "
            "(your refresh token still works)"
        ) from None
    except UnknownKeyError:
        raise AuthenticationError(
            "invalid access token: it names a signing key this service does not have"
        ) from None
    except (jwt.InvalidTokenError, ValueError):
        raise AuthenticationError(
            "invalid access token: its signature or contents do not check out"
        ) from None
    name = await ctx.revocations.check(user_id, issued_at)
    return Principal(user_id=user_id, actor=user_actor(name))


_SITE_TOKEN = (
    sa.select(
        site_tokens.c.id,
        site_tokens.c.owner_id,
        site_tokens.c.site_id,
        site_tokens.c.revoked_at,
        site_tokens.c.expires_at,
        site_tokens.c.replaced_by,
        sites.c.name.label("site_name"),
    )
    .join(sites, sites.c.id == site_tokens.c.site_id)
    .where(site_tokens.c.token_hash == sa.bindparam("token_hash"))
)


async def _site_principal(ctx: ServerContext, token: str) -> Principal:
    row = await ctx.reader.first(_SITE_TOKEN, {"token_hash": hash_secret(token)})
    if row is None:
        raise AuthenticationError("unknown site token")
    if row["revoked_at"] is not None:
        raise AuthenticationError("site token has been revoked")
    expires = row["expires_at"]
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # SQLite: naive UTC
        if expires <= datetime.now(UTC):
            raise AuthenticationError(site_token_ended(row["id"], expires, row["replaced_by"]))
    return Principal(
        user_id=row["owner_id"],
        site_id=row["site_id"],
        token_id=row["id"],
        actor=site_actor(row["site_name"], row["id"]),
    )


Caller = Annotated[Principal, Depends(get_principal)]


async def require_user(principal: Caller) -> Principal:
    """Only a user's own token, not a site token, may do this."""
    if principal.is_site:
        raise ForbiddenError("a site token cannot do this; use a user's access token")
    return principal


UserCaller = Annotated[Principal, Depends(require_user)]
