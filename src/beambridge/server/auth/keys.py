"""Signing keys of access tokens, and their rotation without logging anyone out.

Every access token names the key that signed it (the JWT header's ``kid``: the first 12 hex digits of the
key's SHA-256, so a key's id never reveals it). The service signs with its *current* key and still accepts
a *retired* key until that key's ``retire_at``; after it, a token signed with it is refused with a 401 that
says to refresh, and clients refresh with their refresh tokens (opaque secrets in the database, which no
key rotation touches), so nobody has to log in again.

Where the keys live:

* ``BEAMBRIDGE_HOME/server-secret`` holds the current key (made on first start, mode 0600), and
  ``server-secret.retired.json`` the retired ones with their ``retire_at``. ``beambridge server
  rotate-key`` moves the current key there (by default until every token it signed has expired) and
  writes a new one. Every server process sharing that home sees the change within
  :data:`RELOAD_S` seconds (the files' modification times are checked; a token with an unknown ``kid``
  makes a process look at once), so the processes of one service never disagree for longer.
* ``BEAMBRIDGE_SECRET_KEY`` (and optionally ``BEAMBRIDGE_PREVIOUS_SECRET_KEY`` with
  ``BEAMBRIDGE_PREVIOUS_SECRET_KEY_UNTIL``) instead, for deployments that keep secrets outside the disk:
  rotate by restarting with the new key and the previous one until its tokens have expired.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RELOAD_S = 1.0
CURRENT_FILE = "server-secret"
RETIRED_FILE = "server-secret.retired.json"
_KEEP_RETIRED_S = 7 * 24 * 3600  # retired keys are forgotten a week after their retirement


def key_id(key: str) -> str:
    """The public id of a key (its ``kid``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SigningKey:
    """A key and, for a retired one, when tokens signed with it stop being accepted (epoch seconds)."""

    key: str
    retire_at: float | None = None

    @property
    def kid(self) -> str:
        return key_id(self.key)


class RetiredKeyError(Exception):
    """A token signed with a key that was rotated out and whose grace period has ended."""


class UnknownKeyError(Exception):
    """A token naming a key this service has never had (or has forgotten)."""


class KeyRing:
    """The current key and the retired ones still accepted, reloaded when their files change."""

    def __init__(
        self,
        home: Path | None,
        *,
        fixed: str | None = None,
        previous: str | None = None,
        previous_until: float | None = None,
    ) -> None:
        """Keys from ``home``'s files, or ``fixed`` (with an optional ``previous`` key accepted until
        ``previous_until``) when the key is configured rather than kept on disk."""
        self.home = None if fixed else home
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._current = SigningKey(fixed or "")
        self._by_kid: dict[str, SigningKey] = {}
        if fixed:
            keys = [SigningKey(fixed)]
            if previous:
                keys.append(SigningKey(previous, previous_until if previous_until is not None else 0.0))
            self._install(keys)
        else:
            self._load(force=True)

    @property
    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        self._load()
        return self._current

    def for_kid(self, kid: str | None, now: float) -> SigningKey:
        """The key a token names, if it is still accepted (a token without a ``kid`` predates key ids: it
        can only be the current key's)."""
        self._load()
        if kid is None:
            return self._current
        found = self._by_kid.get(kid)
        if found is None:
            self._load(force=True)  # another process may have rotated a moment ago
            found = self._by_kid.get(kid)
        if found is None:
            raise UnknownKeyError(kid)
        if found.retire_at is not None and found.retire_at <= now:
            raise RetiredKeyError(kid)
        return found

    def retire_at(self, kid: str) -> float | None:
        """When a key stops being accepted (None: it is current, or unknown)."""
        self._load()
        found = self._by_kid.get(kid)
        return None if found is None else found.retire_at

    def _install(self, keys: list[SigningKey]) -> None:
        self._current = keys[0]
        self._by_kid = {key.kid: key for key in keys}

    def _load(self, *, force: bool = False) -> None:
        if self.home is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_S:
            return
        with self._lock:
            self._checked = now
            stamp = (_mtime(self.home / CURRENT_FILE), _mtime(self.home / RETIRED_FILE))
            if stamp == self._stamp and not force:
                return
            current = ensure_current_key(self.home)
            self._install([SigningKey(current), *read_retired(self.home)])
            self._stamp = (_mtime(self.home / CURRENT_FILE), _mtime(self.home / RETIRED_FILE))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, replacing it in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def ensure_current_key(home: Path) -> str:
    """The current key in ``home``, made (mode 0600) if there is none yet."""
    path = home / CURRENT_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def read_retired(home: Path) -> list[SigningKey]:
    """The retired keys kept in ``home``."""
    try:
        entries = json.loads((home / RETIRED_FILE).read_text())
    except FileNotFoundError:
        return []
    return [SigningKey(str(entry["key"]), float(entry["retire_at"])) for entry in entries]


def rotate_key(home: Path, grace_s: float, now: float | None = None) -> tuple[str, str, float]:
    """Make a new current key in ``home``; the old one is accepted for ``grace_s`` more seconds.

    Returns the new key's id, the old key's id and when the old key retires (epoch seconds)."""
    now = time.time() if now is None else now
    old = ensure_current_key(home)
    retire_at = now + grace_s
    kept = [key for key in read_retired(home) if (key.retire_at or 0) > now - _KEEP_RETIRED_S]
    kept.append(SigningKey(old, retire_at))
    entries = [{"key": key.key, "retire_at": key.retire_at, "kid": key.kid} for key in kept]
    # retired list first: a process reading between the two writes still accepts the old key
    _write_private(home / RETIRED_FILE, json.dumps(entries, indent=1))
    new = secrets.token_urlsafe(48)
    _write_private(home / CURRENT_FILE, new)
    return key_id(new), key_id(old), retire_at
