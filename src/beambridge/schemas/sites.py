"""Sites: a facility deployment of the agent, owned by one user."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from beambridge.schemas.common import InputModel, Name, OutputModel, UtcDatetime
from beambridge.schemas.freejson import FreeJsonObject, free_json_field

LocationAlias = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
LocationKind = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
"""A transfer backend's name. The service does not need to know a site's backends, only their names."""


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
    status: FreeJsonObject | None = free_json_field("What the agent reports about itself.", default=None)
    locations: dict[LocationAlias, LocationKind] | None = Field(
        default=None,
        max_length=200,
        description="The site's transfer location aliases and their kinds (registered by the agent)",
    )


class Site(OutputModel):
    """A site as the service sees it."""

    id: int
    name: str
    hostname: str
    path: str
    description: str
    status: dict[str, Any]
    locations: dict[str, str] = Field(default_factory=dict)
    last_heartbeat: UtcDatetime | None
    created_at: UtcDatetime
    drained_at: UtcDatetime | None = Field(
        default=None, description="When its owner drained it (no new work)"
    )
    drain_reason: str = ""
