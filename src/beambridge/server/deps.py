"""FastAPI dependencies: the server context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

import jwt
import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from beambridge.server.audit import site_actor, user_actor
from beambridge.server.auth.tokens import SITE_TOKEN_PREFIX, Principal, hash_secret
from beambridge.server.context import ServerContext
from beambridge.server.db.tables import site_tokens, sites
from beambridge.server.errors import AuthenticationError, ForbiddenError

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
    return Principal(
        user_id=row["owner_id"], site_id=row["site_id"], actor=site_actor(row["site_name"], row["id"])
    )


Caller = Annotated[Principal, Depends(get_principal)]


async def require_user(principal: Caller) -> Principal:
    """Only a user's own token, not a site token, may do this."""
    if principal.is_site:
        raise ForbiddenError("a site token cannot do this; use a user's access token")
    return principal


UserCaller = Annotated[Principal, Depends(require_user)]
