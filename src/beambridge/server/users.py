"""Users: adding them from the server machine (``beambridge user add``), checking their passwords."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.common import _check_name
from beambridge.server import audit
from beambridge.server.auth.passwords import hash_password, verify_password
from beambridge.server.context import utcnow
from beambridge.server.db.engine import Database
from beambridge.server.db.tables import users
from beambridge.server.errors import AuthenticationError, ConflictError, InvalidRequestError, NotFoundError


def add_user(db: Database, name: str, password: str, *, password_hash: str | None = None) -> int:
    """Create a user; returns its id. ``password_hash`` skips hashing (an already-hashed password)."""
    try:
        _check_name(name)
    except ValueError as exc:
        raise InvalidRequestError(f"user name {name!r} {exc}") from None
    if len(password) < 8:
        raise InvalidRequestError("password must be at least 8 characters")
    with db.write() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
            raise ConflictError(f"user {name!r} already exists")
        now = utcnow()
        user_id = int(
            conn.execute(
                users.insert()
                .values(name=name, password_hash=password_hash or hash_password(password), created_at=now)
                .returning(users.c.id)
            ).scalar_one()
        )
        _admin_audit(conn, user_id, "user.add", name, now)
        return user_id


def _admin_audit(conn: Connection, user_id: int, action: str, name: str, now: datetime) -> None:
    audit.record(conn, owner_id=user_id, actor=audit.ADMIN, action=action, target=f"user {name}", now=now)


def _user_id(conn: Connection, name: str) -> int:
    row = conn.execute(sa.select(users.c.id).where(users.c.name == name)).first()
    if row is None:
        raise InvalidRequestError(f"no user named {name!r}")
    return int(row.id)


def set_password(db: Database, name: str, password: str) -> None:
    """Change a user's password."""
    if len(password) < 8:
        raise InvalidRequestError("password must be at least 8 characters")
    hashed = hash_password(password)
    with db.write() as conn:
        user_id = _user_id(conn, name)
        conn.execute(users.update().where(users.c.id == user_id).values(password_hash=hashed))
        _admin_audit(conn, user_id, "user.passwd", name, utcnow())


def authenticate(db: Database, name: str, password: str) -> int:
    """The id of the user ``name`` if ``password`` is theirs; 401 otherwise (the same answer, after the
    same work, for an unknown user). The password is checked outside any transaction."""
    with db.read() as conn:
        query = sa.select(users.c.id, users.c.password_hash, users.c.disabled_at).where(users.c.name == name)
        row = conn.execute(query).first()
    if not verify_password(row.password_hash if row else None, password) or row is None:
        raise AuthenticationError("wrong username or password")
    if row.disabled_at is not None:
        raise AuthenticationError("this user is disabled")
    return int(row.id)


def disable_user(db: Database, name: str) -> None:
    """Disable a user at once: no login, no refresh, and every token refused (site tokens included)
    within about a second on every server process."""
    _set_disabled(db, name, utcnow())


def enable_user(db: Database, name: str) -> None:
    """Let a disabled user log in again (the tokens ended by disabling stay ended)."""
    _set_disabled(db, name, None)


def _set_disabled(db: Database, name: str, when: datetime | None) -> None:
    values: dict[str, Any] = {"disabled_at": when}
    if when is not None:
        values["tokens_valid_after"] = when
    with db.write() as conn:
        user_id = _user_id(conn, name)
        conn.execute(users.update().where(users.c.id == user_id).values(values))
        _admin_audit(conn, user_id, "user.disable" if when else "user.enable", name, when or utcnow())


def get_user(conn: Connection, user_id: int) -> dict[str, Any]:
    """One user (404 if there is no such user)."""
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFoundError(f"user {user_id} not found")
    return dict(row._mapping)
