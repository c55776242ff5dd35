"""The one way a password is checked (API and console alike): throttled, on the password threads."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from beambridge.server.context import ServerContext
from beambridge.server.errors import AuthenticationError
from beambridge.server.users import authenticate


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (the proxy's, unless uvicorn trusts proxy headers)."""
    return request.client.host if request.client is not None else "unknown"


async def check_login(ctx: ServerContext, name: str, password: str, address: str) -> int:
    """The user id for ``name`` if ``password`` is theirs: 401 if not, 429 while ``name`` or ``address``
    is locked out after too many failures (see :mod:`beambridge.server.auth.throttle`)."""
    await ctx.login_throttle.check(name, address)
    try:
        user_id = await ctx.password_checks.run(authenticate, ctx.db, name, password)
    except AuthenticationError:
        await run_in_threadpool(ctx.login_throttle.failed, name, address)
        raise
    await run_in_threadpool(ctx.login_throttle.succeeded, name)
    return user_id
