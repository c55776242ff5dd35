"""Heartbeat: tell the service the site is alive, with a short status of the agent."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from beambridge.client import Client
from beambridge.site.config import SiteConfig
from beambridge.site.services.base import Service


class Heartbeat(Service):
    """Marks the site alive and reports what the agent wants the service (and users) to know."""

    name = "heartbeat"

    def __init__(self, client: Client, config: SiteConfig, status: Callable[[], dict[str, Any]]) -> None:
        super().__init__(config.periods.heartbeat)
        self.client = client
        self.config = config
        self.status = status

    def tick(self) -> None:
        self.client.sites.heartbeat(self.config.site_id)
        status = {"pid": os.getpid(), "hostname": socket.gethostname(), **self.status()}
        self.client.sites.update(self.config.site_id, status=status)
