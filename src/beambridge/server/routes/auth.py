"""Log in, refresh, log out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.auth import LoginRequest, RefreshRequest, TokenPair, User
from beambridge.server import audit
from beambridge.server.auth.login import check_login, client_address
from beambridge.server.auth.refresh_tokens import (
    RefreshTokenReplayed,
    issue_token_pair,
    revoke_all_tokens,
    revoke_refresh_token,
    use_refresh_token,
)
from beambridge.server.context import utcnow
from beambridge.server.deps import Ctx, UserCaller
from beambridge.server.json_body import JsonRoute
from beambridge.server.users import get_user

router = APIRouter(prefix="/auth", tags=["auth"], route_class=JsonRoute)


@router.post("/login", response_model=TokenPair)
async def login(ctx: Ctx, body: LoginRequest, request: Request) -> TokenPair:
    """Exchange a username and password for an access token and a refresh token.

    Failed logins back off per user name and per address (429 with ``Retry-After`` while locked out)."""
    address = client_address(request)
    user_id = await check_login(ctx, body.username, body.password, address)

    def issue() -> TokenPair:
        now = utcnow()
        with ctx.db.write() as conn:
            audit.record_login(conn, user_id, body.username, via="api", address=address, now=now)
            return issue_token_pair(conn, ctx.tokens, user_id, ctx.settings.refresh_token_ttl_s, now)

    return await run_in_threadpool(issue)


@router.post("/refresh", response_model=TokenPair)
def refresh(ctx: Ctx, body: RefreshRequest) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    now = utcnow()
    try:
        with ctx.db.write() as conn:
            user_id = use_refresh_token(conn, body.refresh_token, now)
            return issue_token_pair(conn, ctx.tokens, user_id, ctx.settings.refresh_token_ttl_s, now)
    except RefreshTokenReplayed as replayed:
        # A spent token used again: one of the two holders is not the user. End the whole family (every
        # token of the user), in a transaction of its own, before refusing.
        with ctx.db.write() as conn:
            revoke_all_tokens(conn, replayed.user_id, now)
            audit.record(
                conn,
                owner_id=replayed.user_id,
                actor=audit.SYSTEM,
                action="user.tokens_revoked",
                target=f"user {replayed.user_id}",
                now=now,
                data={"reason": "a spent refresh token was used again (taken as stolen)"},
            )
        ctx.revocations.forget(replayed.user_id)
        raise


@router.post("/logout", status_code=204)
def logout(ctx: Ctx, body: RefreshRequest) -> None:
    """Revoke a refresh token and end the access tokens its user holds (at once)."""
    now = utcnow()
    with ctx.db.write() as conn:
        user_id = revoke_refresh_token(conn, body.refresh_token, now)
        if user_id is not None:
            name = get_user(conn, user_id)["name"]
            actor = audit.user_actor(name)
            audit.record(
                conn, owner_id=user_id, actor=actor, action="user.logout", target=f"user {name}", now=now
            )
    if user_id is not None:
        ctx.revocations.forget(user_id)


@router.get("/me", response_model=User)
def me(ctx: Ctx, caller: UserCaller) -> dict[str, object]:
    """The user the access token belongs to."""
    with ctx.db.read() as conn:
        return get_user(conn, caller.user_id)
