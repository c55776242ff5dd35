"""The audit trail: who caused every job event, and a log of the actions that change access or ownership.

Every row of ``events`` names its **actor**, and so does every row of ``audit_log`` (the actions that are
not a job's state change: a site token made, rotated or revoked; a site, app or job deleted; a user
disabled; the signing key rotated…). An actor is one short string, ``kind:who``:

==========================================  ==========================================================
``user:alice``                              a user's access token, or her console session
``site:polaris (token 3)``                  the site agent, with site token 3 of site ``polaris``
``launcher:polaris (session 12)``           a pilot launcher, reporting through its session
``placement``                               the placement service binding or moving a job
``system``                                  the service by its own rules: a default hook, a child
                                            released or failed with its parent, a lost session
``admin``                                   the server machine's ``beambridge`` command (``user …``,
                                            ``server rotate-key``)
==========================================  ==========================================================

The actor is set by the service from the credentials of the request, never from anything a client sends,
so a site token cannot make its reports look like a user's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import AuditQuery
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import audit_log

SYSTEM = "system"
PLACEMENT = "placement"
ADMIN = "admin"


def user_actor(name: str) -> str:
    """The actor of a user's own token or console session."""
    return f"user:{name}"


def site_actor(site_name: str, token_id: int) -> str:
    """The actor of a site token (the site agent)."""
    return f"site:{site_name} (token {token_id})"


def launcher_actor(site_name: str, session_id: int) -> str:
    """The actor of a launcher's reports: its site, and the session it reports through."""
    return f"launcher:{site_name} (session {session_id})"


def record(
    conn: Connection,
    *,
    owner_id: int,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    """Write one audit entry in the caller's transaction (so it exists exactly when the action does).

    ``owner_id`` is the user whose account the action concerns (who may read it back), ``action`` a dotted
    name such as ``site_token.revoke``, ``target`` what it was done to (``site polaris``, ``token 3``)."""
    conn.execute(
        audit_log.insert().values(
            owner_id=owner_id,
            actor=actor,
            action=action,
            target=target,
            data=orjson.loads(orjson.dumps(data or {})),  # times as ISO text
            timestamp=now,
        )
    )


def record_login(conn: Connection, user_id: int, name: str, *, via: str, address: str, now: datetime) -> None:
    """A successful login (``via`` the API or the console), with the address it came from."""
    record(
        conn,
        owner_id=user_id,
        actor=user_actor(name),
        action="user.login",
        target=f"user {name}",
        now=now,
        data={"via": via, "address": address},
    )


def list_audit(
    conn: Connection,
    principal: Principal,
    query: AuditQuery,
    *,
    after: int | None,
    limit: int,
    newest_first: bool,
) -> list[dict[str, Any]]:
    """One page of the audit entries about the caller's account, as dicts."""
    statement = audit_query(principal, query, after=after, limit=limit, newest_first=newest_first)
    return [dict(row._mapping) for row in conn.execute(statement)]


def audit_query(
    principal: Principal, query: AuditQuery, *, after: int | None, limit: int, newest_first: bool
) -> sa.Select[Any]:
    """One page of the audit entries about the caller's account."""
    where: list[sa.ColumnElement[bool]] = [audit_log.c.owner_id == principal.user_id]
    if query.action:
        action = query.action
        where.append(sa.or_(audit_log.c.action == action, audit_log.c.action.startswith(action + ".")))
    if query.actor:
        where.append(audit_log.c.actor.startswith(query.actor, autoescape=True))
    if query.since is not None:
        where.append(audit_log.c.timestamp >= query.since)
    if after is not None:
        where.append(audit_log.c.id < after if newest_first else audit_log.c.id > after)
    order = audit_log.c.id.desc() if newest_first else audit_log.c.id
    return sa.select(audit_log).where(*where).order_by(order).limit(limit)
