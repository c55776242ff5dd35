"""Sites: a facility deployment of the agent, owned by one user."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from beambridge.schemas.common import InputModel, Name, OutputModel, UtcDatetime


class SiteCreate(InputModel):
    """Register a site."""

    name: Name
    hostname: str = Field(default="", max_length=255)
    path: str = Field(default="", max_length=1024, description="The site directory on its host")
    description: str = Field(default="", max_length=2000)


class SiteUpdate(InputModel):
    """Change a site's descriptive fields or its self-reported status."""

    hostname: str | None = Field(default=None, max_length=255)
    path: str | None = Field(default=None, max_length=1024)
    description: str | None = Field(default=None, max_length=2000)
    status: dict[str, Any] | None = Field(default=None, description="What the agent reports about itself")


class Site(OutputModel):
    """A site as the service sees it."""

    id: int
    name: str
    hostname: str
    path: str
    description: str
    status: dict[str, Any]
    last_heartbeat: UtcDatetime | None
    created_at: UtcDatetime
