"""Log in, refresh, log out, and who am I."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter

from beambridge.schemas.auth import LoginRequest, RefreshRequest, TokenPair, User
from beambridge.server.auth.passwords import verify_password
from beambridge.server.auth.tokens import REFRESH_TOKEN_PREFIX, hash_secret, new_secret
from beambridge.server.context import ServerContext, utcnow
from beambridge.server.db.tables import refresh_tokens, users
from beambridge.server.deps import Ctx, UserCaller
from beambridge.server.errors import AuthenticationError, NotFoundError

router = APIRouter(prefix="/auth", tags=["auth"])


def _issue_pair(ctx: ServerContext, conn: sa.Connection, user_id: int) -> TokenPair:
    now = utcnow()
    refresh = new_secret(REFRESH_TOKEN_PREFIX)
    conn.execute(
        refresh_tokens.insert().values(
            user_id=user_id,
            token_hash=hash_secret(refresh),
            expires_at=now + timedelta(seconds=ctx.settings.refresh_token_ttl_s),
            created_at=now,
        )
    )
    return TokenPair(
        access_token=ctx.tokens.issue(user_id), refresh_token=refresh, expires_in=ctx.tokens.ttl_s
    )


@router.post("/login", response_model=TokenPair)
def login(ctx: Ctx, body: LoginRequest) -> TokenPair:
    """Exchange a username and password for an access token and a refresh token."""
    with ctx.db.read() as conn:
        row = conn.execute(
            sa.select(users.c.id, users.c.password_hash).where(users.c.name == body.username)
        ).first()
    if not verify_password(row.password_hash if row else None, body.password) or row is None:
        raise AuthenticationError("wrong username or password")
    with ctx.db.write() as conn:
        return _issue_pair(ctx, conn, row.id)


@router.post("/refresh", response_model=TokenPair)
def refresh(ctx: Ctx, body: RefreshRequest) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    now = utcnow()
    with ctx.db.write() as conn:
        row = conn.execute(
            sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == hash_secret(body.refresh_token))
        ).first()
        if row is None:
            raise AuthenticationError("unknown refresh token")
        if row.revoked_at is not None:
            raise AuthenticationError("refresh token has been revoked; log in again")
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now.tzinfo)
        if expires <= now:
            raise AuthenticationError("refresh token expired; log in again")
        conn.execute(refresh_tokens.update().where(refresh_tokens.c.id == row.id).values(revoked_at=now))
        return _issue_pair(ctx, conn, row.user_id)


@router.post("/logout", status_code=204)
def logout(ctx: Ctx, body: RefreshRequest) -> None:
    """Revoke a refresh token."""
    with ctx.db.write() as conn:
        conn.execute(
            refresh_tokens.update()
            .where(
                refresh_tokens.c.token_hash == hash_secret(body.refresh_token),
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )


@router.get("/me", response_model=User)
def me(ctx: Ctx, caller: UserCaller) -> dict[str, object]:
    """The user the access token belongs to."""
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(users).where(users.c.id == caller.user_id)).first()
    if row is None:
        raise NotFoundError(f"user {caller.user_id} not found")
    return dict(row._mapping)
