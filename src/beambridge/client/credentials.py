"""The token file ``beambridge login`` writes and ``Client.from_saved()`` reads.

It lives at ``$BEAMBRIDGE_HOME/client.json`` (default ``~/.beambridge/client.json``), mode 0600, and
holds the service URL, the user name and the current token pair. A client made from it writes refreshed
tokens back, so a long-running program never needs the password again.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from beambridge.client.errors import BeambridgeError

CREDENTIALS_FILE = "client.json"


def beambridge_home() -> Path:
    """``$BEAMBRIDGE_HOME``, or ``~/.beambridge``."""
    return Path(os.environ.get("BEAMBRIDGE_HOME") or Path.home() / ".beambridge").expanduser()


def credentials_path() -> Path:
    """Where the token file is."""
    return beambridge_home() / CREDENTIALS_FILE


@dataclass
class SavedCredentials:
    """What the token file holds."""

    url: str
    username: str
    access_token: str
    refresh_token: str

    @classmethod
    def load(cls, path: Path | None = None) -> SavedCredentials:
        """Read the token file; a clear error if there is none (log in first) or it is damaged."""
        path = path or credentials_path()
        try:
            data = json.loads(path.read_text())
            return cls(
                url=str(data["url"]),
                username=str(data.get("username", "")),
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
            )
        except FileNotFoundError:
            raise BeambridgeError(f"not logged in: no {path} (run 'beambridge login URL')") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BeambridgeError(f"cannot read {path}: {exc} (run 'beambridge login URL' again)") from None

    def save(self, path: Path | None = None) -> Path:
        """Write the token file atomically, readable by its owner only."""
        path = path or credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".client-", suffix=".json", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(asdict(self), handle, indent=2)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
