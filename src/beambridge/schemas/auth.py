"""Login, tokens and the current user."""

from __future__ import annotations

from pydantic import Field

from beambridge.schemas.common import InputModel, Name, OutputModel, UtcDatetime


class LoginRequest(InputModel):
    """Username and password, exchanged for an access and a refresh token."""

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class RefreshRequest(InputModel):
    """A refresh token, exchanged for a new token pair (the old refresh token is revoked)."""

    refresh_token: str = Field(min_length=1, max_length=1000)


class TokenPair(OutputModel):
    """Short-lived access token plus the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")


class User(OutputModel):
    """A person using the service."""

    id: int
    name: str
    created_at: UtcDatetime


class SiteTokenCreate(InputModel):
    """Ask for a long-lived token that acts only on one site (for its agent and launchers)."""

    name: Name = "agent"


class SiteToken(OutputModel):
    """A site token's record; the secret itself is shown only once, at creation."""

    id: int
    site_id: int
    name: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class SiteTokenCreated(SiteToken):
    """A freshly made site token, including its secret."""

    token: str
