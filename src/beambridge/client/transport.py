"""HTTP for the SDK: credentials, retries with backoff, token refresh, and errors mapped to types.

One :class:`Transport` per :class:`~beambridge.client.Client`; thread-safe (httpx's client is, and the
token refresh holds a lock), so a launcher thread and the main thread may share it.

Retries: a connection that could not be opened never reached the service, so it is retried for every
request; a lost answer (read error) or a 502/503/504 from a proxy is retried only for requests that are
safe to repeat (GET, or calls that say ``retry=True``). Creating jobs is never repeated blindly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from beambridge.client.errors import AuthError, ConnectionFailed, error_for_status
from beambridge.schemas.auth import TokenPair

_RETRY_STATUSES = frozenset({502, 503, 504})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Params = Mapping[str, Any] | list[tuple[str, Any]] | None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: ``tries`` attempts in all, with exponential backoff
    (``backoff_s`` × 2^attempt, capped at ``max_backoff_s``) and full jitter."""

    tries: int = 5
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before attempt number ``attempt + 1`` (``attempt`` counts from 0)."""
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))


class Transport:
    """Sends requests to the service as one principal (a user's token pair, or a site token)."""

    def __init__(
        self,
        url: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        site_token: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_refresh: Callable[[TokenPair], None] | None = None,
        http_transport: httpx.BaseTransport | None = None,
        reload_site_token: Callable[[], str] | None = None,
    ) -> None:
        """``reload_site_token`` reads the site token again (from the site's token file): when the token
        in use is refused, a new one found there (the agent rotated it) is used instead."""
        if site_token is not None and (access_token or refresh_token):
            raise ValueError("give either a site token or an access/refresh token pair, not both")
        self._reload_site_token = reload_site_token if site_token is not None else None
        self.url = url.rstrip("/")
        self.access_token = site_token or access_token
        self.refresh_token = None if site_token else refresh_token
        self.retry = retry or RetryPolicy()
        self._on_refresh = on_refresh
        self._refresh_lock = threading.Lock()
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=http_transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        retry: bool | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request and return its decoded JSON answer (None for an empty one)."""
        response = self.send(method, path, params=params, json=json, retry=retry, timeout=timeout)
        return response.json() if response.content else None

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        retry: bool | None = None,
        timeout: float | None = None,
        authenticate: bool = True,
    ) -> httpx.Response:
        """Send a request, retrying and refreshing as the policy allows; raise the typed error on failure."""
        method = method.upper()
        repeatable = method in _SAFE_METHODS if retry is None else retry
        refreshed = False
        attempt = 0
        while True:
            token = self.access_token if authenticate else None
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                attempt = self._pause_or_fail(attempt, f"cannot connect to {self.url}: {exc}")
                continue
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                if not repeatable:
                    raise ConnectionFailed(
                        f"connection to {self.url} lost during {method} {path}: {exc}"
                    ) from exc
                attempt = self._pause_or_fail(attempt, f"connection to {self.url} lost: {exc}")
                continue
            except httpx.TimeoutException as exc:
                raise ConnectionFailed(f"{method} {path} timed out: {exc}") from exc
            if response.status_code in _RETRY_STATUSES and repeatable and attempt + 1 < self.retry.tries:
                attempt = self._pause_or_fail(attempt, "")
                continue
            if response.status_code == 401 and authenticate and not refreshed and self._renewed(token):
                refreshed = True
                continue
            if response.is_error:
                raise error_for_status(response.status_code, _error_body(response))
            return response

    def _pause_or_fail(self, attempt: int, message: str) -> int:
        if attempt + 1 >= self.retry.tries:
            raise ConnectionFailed(f"{message} (gave up after {self.retry.tries} tries)")
        time.sleep(self.retry.delay(attempt))
        return attempt + 1

    def _renewed(self, used_token: str | None) -> bool:
        """After a 401: whether there is a new token to try (refreshed, or a rotated site token)."""
        if used_token is None:
            return False
        if self.refresh_token is not None:
            self._refresh(used_token)
            return True
        if self._reload_site_token is not None:
            with self._refresh_lock:
                if self.access_token != used_token:  # another thread has picked it up meanwhile
                    return True
                try:
                    fresh = self._reload_site_token()
                except Exception:  # an unreadable file: the 401 stands
                    return False
                if fresh and fresh != used_token:
                    self.access_token = fresh
                    return True
        return False

    def set_site_token(self, token: str) -> None:
        """Use a new site token from now on (after rotating the old one)."""
        with self._refresh_lock:
            self.access_token = token

    def _refresh(self, used_token: str | None) -> None:
        """Swap the refresh token for a new pair, once, even if several threads saw the 401."""
        with self._refresh_lock:
            if self.access_token != used_token:  # another thread has refreshed meanwhile
                return
            assert self.refresh_token is not None
            pair = self.exchange_refresh_token(self.refresh_token)
            self.access_token, self.refresh_token = pair.access_token, pair.refresh_token
        if self._on_refresh is not None:
            self._on_refresh(pair)

    def exchange_refresh_token(self, refresh_token: str) -> TokenPair:
        """``POST /auth/refresh``: a new token pair (the old refresh token stops working)."""
        try:
            response = self.send(
                "POST", "/auth/refresh", json={"refresh_token": refresh_token}, authenticate=False
            )
        except AuthError as exc:
            raise type(exc)(
                exc.status_code,
                f"cannot renew your login to {self.url}: {exc.detail} (to log in: beambridge login {self.url})",
                exc.body,
            ) from None
        return TokenPair.model_validate(response.json())


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return body
    text = response.text.strip() or response.reason_phrase or f"HTTP {response.status_code}"
    return {"detail": text[:2000]}
