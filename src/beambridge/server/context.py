"""What every request handler needs: settings, database, token signer, wake-ups, the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from beambridge.server.auth.revocation import Revocations
from beambridge.server.auth.throttle import LoginThrottle, PasswordChecks
from beambridge.server.auth.tokens import AccessTokens
from beambridge.server.db.async_reads import AsyncReader
from beambridge.server.db.engine import Database
from beambridge.server.placement.service import PlacementService
from beambridge.server.quotas import LongPolls
from beambridge.server.settings import ServerSettings
from beambridge.server.wakeups import WakeupHub


@dataclass
class ServerContext:
    """The service's shared state, one per app instance."""

    settings: ServerSettings
    db: Database
    tokens: AccessTokens
    wakeups: WakeupHub
    reader: AsyncReader
    placement: PlacementService
    login_throttle: LoginThrottle
    password_checks: PasswordChecks
    revocations: Revocations
    long_polls: LongPolls


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
