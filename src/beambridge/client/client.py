"""The SDK's entry point: :class:`Client`."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from beambridge.client.credentials import SavedCredentials, credentials_path
from beambridge.client.jobs import JobManager
from beambridge.client.names import Names
from beambridge.client.resources import (
    AppManager,
    AuditManager,
    BatchJobManager,
    EventManager,
    SiteGroupManager,
    SiteManager,
    TransferManager,
)
from beambridge.client.sessions import SessionManager
from beambridge.client.transport import RetryPolicy, Transport
from beambridge.client.workflows import BeamlineEventManager, SubmissionManager, WorkflowManager
from beambridge.schemas.auth import TokenPair, User


class Client:
    """A connection to the beambridge service, as a user or as a site.

    ::

        client = Client.login("https://bb.example.org", "alice", password)   # or Client.from_saved()
        with client:
            site = client.sites.create("polaris")
            app = client.apps.create(site.id, "xpcs-multitau")
            jobs = client.jobs.bulk_create({"app_id": app.id, "workdir": f"run/{i}"} for i in range(100))
            for job in client.jobs.as_completed(jobs):
                print(job.id, job.state)

    Authentication is one of: an ``access_token`` (with a ``refresh_token`` it renews itself when it
    expires), or a ``site_token`` (``bbs_…``, for site agents and launchers; with ``site_token_file``, a
    refused site token is read again from that file, where the agent puts the token it rotated to).
    ``retries`` is how many
    times in all a request is tried when the service cannot be reached (see :mod:`.transport`).
    """

    def __init__(
        self,
        url: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        site_token: str | None = None,
        timeout: float = 60.0,
        retries: int = 5,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        token_file: Path | None = None,
        username: str = "",
        site_token_file: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.token_file = token_file
        self._transport = Transport(
            self.url,
            access_token=access_token,
            refresh_token=refresh_token,
            site_token=site_token,
            timeout=timeout,
            retry=RetryPolicy(tries=max(1, retries), backoff_s=backoff_s),
            on_refresh=self._tokens_refreshed,
            http_transport=transport,
            reload_site_token=(lambda: site_token_file.read_text().strip()) if site_token_file else None,
        )
        self.sites = SiteManager(self._transport)
        self.site_groups = SiteGroupManager(self._transport)
        self.apps = AppManager(self._transport)
        self.jobs = JobManager(self._transport)
        self.batch_jobs = BatchJobManager(self._transport)
        self.sessions = SessionManager(self._transport)
        self.transfers = TransferManager(self._transport)
        self.events = EventManager(self._transport)
        self.audit = AuditManager(self._transport)
        self.workflows = WorkflowManager(self._transport)
        self.submissions = SubmissionManager(self._transport)
        self.beamline_events = BeamlineEventManager(self._transport)

    @classmethod
    def login(cls, url: str, username: str, password: str, **options: Any) -> Client:
        """Log in with a username and password; :class:`~beambridge.client.errors.AuthError` if wrong."""
        client = cls(url, username=username, **options)
        try:
            answer = client._transport.send(
                "POST", "/auth/login", json={"username": username, "password": password}, authenticate=False
            )
        except BaseException:
            client.close()
            raise
        pair = TokenPair.model_validate(answer.json())
        client._transport.access_token, client._transport.refresh_token = (
            pair.access_token,
            pair.refresh_token,
        )
        return client

    @classmethod
    def from_saved(cls, path: Path | None = None, **options: Any) -> Client:
        """The client ``beambridge login`` saved (``$BEAMBRIDGE_HOME/client.json``); refreshed tokens are
        written back to that file."""
        path = path or credentials_path()
        saved = SavedCredentials.load(path)
        return cls(
            saved.url,
            access_token=saved.access_token,
            refresh_token=saved.refresh_token,
            token_file=path,
            username=saved.username,
            **options,
        )

    @property
    def access_token(self) -> str | None:
        """The current access token (or site token)."""
        return self._transport.access_token

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token, if the client has one."""
        return self._transport.refresh_token

    def save(self, path: Path | None = None) -> Path:
        """Write URL, user name and token pair to the token file (mode 0600); later refreshes update it."""
        if self.access_token is None or self.refresh_token is None:
            raise ValueError("only a logged-in user's client (with a refresh token) can be saved")
        self.token_file = SavedCredentials(
            self.url, self.username, self.access_token, self.refresh_token
        ).save(path or self.token_file)
        return self.token_file

    def use_site_token(self, token: str) -> None:
        """Authenticate with this site token from now on (the agent, after rotating its token)."""
        self._transport.set_site_token(token)

    def _tokens_refreshed(self, pair: TokenPair) -> None:
        if self.token_file is not None:
            SavedCredentials(self.url, self.username, pair.access_token, pair.refresh_token).save(
                self.token_file
            )

    @property
    def names(self) -> Names:
        """Your sites and apps by name and id (read on first use; read again when a name is not found;
        ``client.names.refresh()`` forgets them)."""
        return self.jobs.names

    def whoami(self) -> User:
        """The user the client acts for."""
        return User.model_validate(self._transport.request("GET", "/auth/me"))

    def health(self) -> dict[str, Any]:
        """The service's ``/health`` answer (status, version, database)."""
        answer: dict[str, Any] = self._transport.request("GET", "/health")
        return answer

    def logout(self) -> None:
        """Revoke the refresh token on the service (the access token lapses on its own)."""
        if self.refresh_token is not None:
            self._transport.request("POST", "/auth/logout", json={"refresh_token": self.refresh_token})

    def close(self) -> None:
        """Close the connections."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        who = self.username or ("site token" if self.refresh_token is None and self.access_token else "")
        return f"<Client {self.url} {who}>".replace(" >", ">")
