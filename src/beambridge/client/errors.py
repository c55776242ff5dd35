"""The SDK's one exception tree, mapped from the service's HTTP answers.

::

    BeambridgeError
    ├── APIError(status_code, detail, body)      the service answered with an error
    │   ├── AuthError          401, 403          missing, expired or insufficient credentials
    │   ├── NotFound           404               no such object (or not yours)
    │   ├── Conflict           409               the object's state forbids it (e.g. an illegal transition)
    │   ├── ValidationError    400, 413, 422     the request itself is wrong (bad field, too large)
    │   ├── RateLimited        429               over a quota or the login back-off: ``retry_after_s``
    │   └── ServerError        5xx               the service failed
    ├── ConnectionFailed                         the service could not be reached, retries exhausted
    └── WaitTimeout (also a TimeoutError)        jobs did not end within the time given

The message of every :class:`APIError` is the service's own ``detail``.
"""

from __future__ import annotations

from typing import Any


class BeambridgeError(Exception):
    """Base of every error the SDK raises."""


class APIError(BeambridgeError):
    """The service answered with an error status.

    Attributes:
        status_code: the HTTP status.
        detail: the service's explanation (the ``detail`` field of its JSON answer).
        body: the whole decoded answer (``{"detail": ..., ...}``), or ``{"detail": <text>}`` if not JSON.
    """

    def __init__(self, status_code: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.body: dict[str, Any] = body if body is not None else {"detail": detail}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, detail={self.detail!r})"


class AuthError(APIError):
    """401 or 403: credentials are missing, expired, revoked, or may not do this."""


class NotFound(APIError):
    """404: no such object, or it belongs to someone else."""


class Conflict(APIError):
    """409: the request is valid but the object's current state forbids it."""


class ValidationError(APIError):
    """400, 413 or 422: the request is malformed, too large, or its content does not make sense."""


class RateLimited(APIError):
    """429: over one of your quotas (jobs per minute, jobs in the system, open long-polls) or locked out
    after failed logins; nothing was done. ``retry_after_s`` is when the service says to try again, and
    ``quota`` names the quota (None for the login back-off)."""

    @property
    def retry_after_s(self) -> float | None:
        value = self.body.get("retry_after")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def quota(self) -> str | None:
        value = self.body.get("quota")
        return value if isinstance(value, str) else None


class ServerError(APIError):
    """5xx: the service (or a proxy in front of it) failed."""


class ConnectionFailed(BeambridgeError):
    """The service could not be reached (after the configured retries)."""


class WaitTimeout(BeambridgeError, TimeoutError):
    """Jobs did not end within the time allowed.

    Attributes:
        finished: the jobs that did end, by id.
        pending_ids: ids of the jobs still not ended.
    """

    def __init__(self, message: str, finished: dict[int, Any], pending_ids: list[int]) -> None:
        super().__init__(message)
        self.finished = finished
        self.pending_ids = pending_ids


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    413: ValidationError,
    422: ValidationError,
    429: RateLimited,
}


def error_for_status(status_code: int, body: dict[str, Any]) -> APIError:
    """The typed error for an HTTP error answer with decoded ``body``."""
    detail = body.get("detail")
    if not isinstance(detail, str):
        detail = str(detail) if detail is not None else f"HTTP {status_code}"
    cls = _BY_STATUS.get(status_code) or (ServerError if status_code >= 500 else APIError)
    return cls(status_code, detail, body)
