"""Token rotation: the agent replaces its site token before it expires, without dropping work.

Every ``periods.token_check`` seconds the agent asks when its token expires; once less than a third of
its lifetime is left it rotates it: the service makes a new token (the old one keeps working for the
service's grace period), the agent writes it to the site's token file in one step and uses it. Launchers
started with the old token read the file again when the old one is refused, so running work carries on.
"""

from __future__ import annotations

from datetime import UTC, datetime

from beambridge.client import Client
from beambridge.logs import get_logger
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.services.base import Service

log = get_logger(__name__)

ROTATE_WHEN_LEFT = 1 / 3
"""Rotate once less than this fraction of the token's lifetime is left."""


class TokenRotation(Service):
    """Keeps the site's token from expiring."""

    name = "token_rotation"

    def __init__(self, client: Client, site: SiteDir, config: SiteConfig) -> None:
        super().__init__(config.periods.token_check)
        self.client = client
        self.site = site
        self.config = config

    def due(self, now: datetime | None = None) -> bool:
        """Whether the token in use should be rotated now."""
        record = self.client.sites.current_token(self.config.site_id)
        if record.expires_at is None or record.replaced_by is not None:
            return False  # never expires; or already replaced (a refused token is read again from the file)
        now = now or datetime.now(UTC)
        lifetime = (record.expires_at - record.created_at).total_seconds()
        left = (record.expires_at - now).total_seconds()
        return left < lifetime * ROTATE_WHEN_LEFT

    def tick(self) -> None:
        if not self.due():
            return
        rotated = self.client.sites.rotate_token(self.config.site_id)
        self.site.write_token(self.config, rotated.token)  # first: a crash now leaves the new token saved
        self.client.use_site_token(rotated.token)
        log.info(
            "site_token_rotated",
            site_id=self.config.site_id,
            old_token=rotated.previous_id,
            new_token=rotated.id,
            old_works_until=rotated.previous_expires_at.isoformat(),
            expires_at=rotated.expires_at.isoformat() if rotated.expires_at else None,
        )
