"""The body of every error the service answers (4xx and 5xx alike)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """``detail`` is one line naming the problem; some errors add fields that say more."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "detail": "0.workdir: Value error, must name a directory below the site's data directory",
                    "errors": [{"loc": ["body", 0, "workdir"], "msg": "…", "type": "value_error"}],
                },
                {"detail": "job 7 not found"},
                {"detail": "too many failed logins; try again in 4 s", "retry_after": 4},
            ]
        },
    )

    detail: str = Field(description="What is wrong, in one line")
    errors: list[Any] | None = Field(
        default=None,
        description=(
            "422: each problem with its place (loc, msg, type); 409 on a transition: each refused job "
            "with its state and the allowed next states"
        ),
    )
