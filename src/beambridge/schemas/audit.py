"""The audit log: actions that change access or ownership, with who did them."""

from __future__ import annotations

from pydantic import Field, JsonValue

from beambridge.schemas.common import OutputModel, UtcDatetime


class AuditEntry(OutputModel):
    """One action on your account or your objects."""

    id: int
    actor: str = Field(
        description="Who did it: 'user:NAME', 'site:SITE (token N)', 'admin' (the server machine's command), "
        "'system'"
    )
    action: str = Field(description="What was done, e.g. 'site_token.revoke', 'job.delete', 'user.login'")
    target: str = Field(description="What it was done to, e.g. 'token 3 of site polaris'")
    data: dict[str, JsonValue]
    timestamp: UtcDatetime
