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


MAX_SITE_TOKEN_DAYS = 3650


class SiteTokenCreate(InputModel):
    """Ask for a long-lived token that acts only on one site (for its agent and launchers)."""

    name: Name = "agent"
    expires_in_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SITE_TOKEN_DAYS,
        description="How long it lasts; default: the service's site_token_ttl_s (90 days unless set)",
    )


class SiteTokenRotate(InputModel):
    """Rotate a site token: a site token rotates itself (no body needed); a user names the token."""

    token_id: int | None = Field(default=None, ge=1, le=2**62, description="The token (a user's request)")


class SiteToken(OutputModel):
    """A site token's record; the secret itself is shown only once, at creation."""

    id: int
    site_id: int
    name: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = Field(
        default=None, description="When it stops working (null: a token from before tokens expired)"
    )
    replaced_by: int | None = Field(default=None, description="The token a rotation made in its place")


class SiteTokenCreated(SiteToken):
    """A freshly made site token, including its secret."""

    token: str


class SiteTokenRotated(SiteTokenCreated):
    """The new token of a rotation, and until when the one it replaces still works."""

    previous_id: int
    previous_expires_at: UtcDatetime
