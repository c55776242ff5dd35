"""The Python SDK: :class:`Client`, its resource managers, lazy queries and one exception tree."""

from beambridge.client.client import Client
from beambridge.client.errors import (
    APIError,
    AuthError,
    BeambridgeError,
    Conflict,
    ConnectionFailed,
    NotFound,
    RateLimited,
    ServerError,
    ValidationError,
    WaitTimeout,
)
from beambridge.client.query import Query

__all__ = [
    "APIError",
    "AuthError",
    "BeambridgeError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "NotFound",
    "Query",
    "RateLimited",
    "ServerError",
    "ValidationError",
    "WaitTimeout",
]
