"""The ``globus`` backend: Globus Transfer tasks between the site's collection and a remote one.

Submission is made safe against crashes by Globus' own idempotence: :meth:`GlobusBackend.prepare`
fetches a ``submission_id`` that the service persists *before* :meth:`GlobusBackend.start` submits with
it. A restart that finds no Globus task id resubmits with the same ``submission_id`` and Globus answers
``Duplicate`` with the task it already has; one that finds the task id just polls it. A *new*
``submission_id`` is fetched only to retry a task Globus accepted and then failed.

Every task is submitted with ``verify_checksum`` and ``sync_level="checksum"`` (a redo skips files that
already arrived intact); a file whose SHA-256 the caller knows carries it as ``external_checksum``.
Files count as arrived only when the task SUCCEEDED.

Authentication comes from a token file stored with the site (JSON, mode 0600, see
:class:`GlobusTokens`): a refresh token (with a native or confidential app's client id) or a confidential
client's credentials. The SDK renews the access token shortly before it expires; the new tokens are
written back to the file. Nothing here logs a token or secret.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import UUID

import globus_sdk
from globus_sdk.transport import RetryConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from beambridge.logs import get_logger
from beambridge.platform.transfer.base import (
    Failure,
    FailureKind,
    TaskState,
    TaskStatus,
    TransferBackend,
    TransferError,
    TransferHandle,
    TransferTask,
    expect_handle,
    join_remote,
)
from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.common import InputModel

log = get_logger(__name__)

TRANSFER_RESOURCE_SERVER = "transfer.api.globus.org"
T = TypeVar("T")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,\-]")


# --------------------------------------------------------------------------------------------------
# Location and site configuration


class GlobusLocation(InputModel):
    """A path on a Globus collection."""

    kind: Literal["globus"] = "globus"
    endpoint_id: UUID = Field(description="The collection's UUID")
    path: str = Field(min_length=1, description="Base path on the collection")


class GlobusSiteConfig(InputModel):
    """The site's side of Globus transfers (one per site, shared by its Globus locations)."""

    collection_id: UUID = Field(description="The site's own collection (where job workdirs live)")
    collection_root: str = Field(default="/", description="The local directory the collection shows as '/'")
    token_file: Path = Field(description="JSON token file, mode 0600 (see GlobusTokens)")

    @field_validator("collection_root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return os.path.normpath(value)


class GlobusTokens(BaseModel):
    """The token file's content. Either a refresh token (``client_secret`` only for a confidential app)
    or client credentials alone (``client_id`` + ``client_secret``)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    access_token: SecretStr | None = None
    expires_at_seconds: int | None = None

    @model_validator(mode="after")
    def _usable(self) -> GlobusTokens:
        if self.refresh_token is None and self.client_secret is None:
            raise ValueError("a Globus token file needs a refresh_token or a client_secret")
        if (self.access_token is None) != (self.expires_at_seconds is None):
            raise ValueError("access_token and expires_at_seconds go together")
        return self

    def plain(self) -> dict[str, Any]:
        """The content with secrets revealed (for writing the file only)."""
        out: dict[str, Any] = {}
        for name, value in self:
            if value is not None:
                out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return out


class TokenStore:
    """The site's Globus tokens in a file: read, turned into an authorizer, rewritten when renewed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> GlobusTokens:
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("token_file_mode_tightened", path=self.path, mode=f"{mode:o}", now="600")
            self.path.chmod(0o600)
        return GlobusTokens.model_validate_json(self.path.read_bytes())

    def save(self, tokens: GlobusTokens) -> None:
        """Write atomically, mode 0600 from the start."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(tokens.plain(), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def authorizer(self, retry_config: RetryConfig | None = None) -> globus_sdk.authorizers.GlobusAuthorizer:
        """A renewing authorizer whose renewals are written back to the file."""
        tokens = self.load()
        secret = tokens.client_secret.get_secret_value() if tokens.client_secret else None
        access = tokens.access_token.get_secret_value() if tokens.access_token else None
        if tokens.refresh_token is not None:
            login_client: globus_sdk.AuthLoginClient = (
                globus_sdk.ConfidentialAppAuthClient(tokens.client_id, secret, retry_config=retry_config)
                if secret
                else globus_sdk.NativeAppAuthClient(tokens.client_id, retry_config=retry_config)
            )
            return globus_sdk.RefreshTokenAuthorizer(
                tokens.refresh_token.get_secret_value(),
                login_client,
                access_token=access,
                expires_at=tokens.expires_at_seconds,
                on_refresh=self._renewed,
            )
        assert secret is not None  # the model guarantees one of the two
        return globus_sdk.ClientCredentialsAuthorizer(
            globus_sdk.ConfidentialAppAuthClient(tokens.client_id, secret, retry_config=retry_config),
            globus_sdk.TransferClient.scopes.all,
            access_token=access,
            expires_at=tokens.expires_at_seconds,
            on_refresh=self._renewed,
        )

    def _renewed(self, response: globus_sdk.OAuthTokenResponse) -> None:
        by_server = response.by_resource_server
        data = by_server.get(TRANSFER_RESOURCE_SERVER) or next(iter(by_server.values()))
        with self._lock:
            tokens = self.load()
            update: dict[str, Any] = {
                "access_token": SecretStr(data["access_token"]),
                "expires_at_seconds": int(data["expires_at_seconds"]),
            }
            if data.get("refresh_token"):
                update["refresh_token"] = SecretStr(data["refresh_token"])
            self.save(tokens.model_copy(update=update))
        valid_until = datetime.fromtimestamp(update["expires_at_seconds"]).isoformat(timespec="seconds")
        log.info("globus_token_renewed", valid_until=valid_until, path=self.path)


# --------------------------------------------------------------------------------------------------
# Mapping Globus answers


def classify_globus_error(exc: Exception) -> Failure:
    """What an SDK error means for a retry."""
    if isinstance(exc, globus_sdk.NetworkError):
        return Failure(FailureKind.TRANSIENT, f"cannot reach Globus: {type(exc).__name__}")
    if not isinstance(exc, globus_sdk.GlobusAPIError):
        return Failure(FailureKind.TRANSIENT, f"{type(exc).__name__}: {exc}")
    status, code = exc.http_status, str(exc.code or "")
    message = f"Globus answered {status} {code}: {exc.message or ''}".strip()
    if isinstance(exc, globus_sdk.AuthAPIError) or status == 401:
        return Failure(FailureKind.AUTH, message)
    if status == 403:
        auth_like = any(word in code.lower() for word in ("consent", "auth", "token"))
        return Failure(FailureKind.AUTH if auth_like else FailureKind.CONFIG, message)
    if status == 404:
        return Failure(FailureKind.NOT_FOUND, message)
    if status == 429 or status >= 500:
        return Failure(FailureKind.TRANSIENT, message)
    return Failure(FailureKind.CONFIG, message)


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def task_failure(doc: Mapping[str, Any]) -> Failure:
    """The failure of a FAILED Globus task, from its ``fatal_error`` (or ``nice_status``)."""
    fatal = doc.get("fatal_error") or {}
    code = str(fatal.get("code") or doc.get("nice_status") or "FAILED").upper()
    description = fatal.get("description") or doc.get("nice_status_short_description") or ""
    message = f"Globus task {doc.get('task_id', '?')} failed: {code}" + (
        f" ({description})" if description else ""
    )
    if "CHECKSUM" in code:
        kind = FailureKind.CHECKSUM
    elif "CANCEL" in code:
        kind = FailureKind.CANCELLED
    elif "NOT_FOUND" in code:
        kind = FailureKind.NOT_FOUND
    elif any(word in code for word in ("AUTH", "CREDENTIAL", "CONSENT")):
        kind = FailureKind.AUTH
    elif any(word in code for word in ("PERMISSION", "QUOTA")):
        kind = FailureKind.CONFIG
    else:
        kind = FailureKind.TRANSIENT
    return Failure(kind, message)


def status_from_task(doc: Mapping[str, Any], started_at: float) -> TaskStatus:
    """A :class:`TaskStatus` from a Globus task document (``GET /task/ID``)."""
    active = TaskStatus(
        TaskState.ACTIVE,
        started_at=_epoch(doc.get("request_time")) or started_at,
        bytes=int(doc.get("bytes_transferred") or 0),
        files=int(doc.get("files_transferred") or 0),
        files_skipped=int(doc.get("files_skipped") or 0),
    )
    status = str(doc.get("status", ""))
    finished_at = _epoch(doc.get("completion_time")) or time.time()
    if status == "SUCCEEDED":
        return replace(active, state=TaskState.SUCCEEDED, finished_at=finished_at)
    if status == "FAILED":
        return replace(active, state=TaskState.FAILED, finished_at=finished_at, failure=task_failure(doc))
    nice = doc.get("nice_status")
    detail = f"{nice}: {doc.get('nice_status_short_description') or ''}".rstrip(": ") if nice else ""
    if status == "INACTIVE":
        detail = f"inactive (credentials or consent needed) {detail}".strip()
    elif doc.get("faults"):
        detail = f"{detail} ({doc['faults']} faults so far)".strip()
    return replace(active, detail=detail)


# --------------------------------------------------------------------------------------------------
# The backend


class GlobusHandle(TransferHandle):
    """A Globus task (``state``: ``submission_id`` and, once accepted, ``globus_task_id``)."""

    def __init__(self, task: TransferTask, state: Mapping[str, Any], failure: Failure | None = None) -> None:
        super().__init__(task, state)
        self.failure = failure
        self.started_at = time.time()

    @property
    def globus_task_id(self) -> str | None:
        value = self.state.get("globus_task_id")
        return str(value) if value else None


class GlobusBackend(TransferBackend):
    """Transfers between the site's collection and a remote collection through Globus."""

    kind = "globus"
    location_model = GlobusLocation
    settings_model = GlobusSiteConfig

    @classmethod
    def for_site(
        cls, location: GlobusLocation, *, site_root: Path | None = None, settings: Any = None
    ) -> GlobusBackend:
        """A Globus location needs the site's own collection and token file (``transfer_backends.globus``)."""
        if settings is None:
            raise ValueError(
                "a globus location needs the site's Globus settings (transfer_backends.globus: "
                "collection_id, token_file)"
            )
        return cls(location, GlobusSiteConfig.model_validate(settings))

    def __init__(
        self,
        location: GlobusLocation,
        site: GlobusSiteConfig,
        *,
        client: globus_sdk.TransferClient | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None:
        self.location = location
        self.site = site
        self.retry_config = retry_config
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> globus_sdk.TransferClient:
        """The SDK client, built on first use (building it may already fetch an access token).
        :class:`TransferError` (``auth``) when the token file is missing or invalid."""
        with self._client_lock:
            if self._client is None:
                try:
                    authorizer = TokenStore(self.site.token_file).authorizer(self.retry_config)
                except (OSError, ValueError) as exc:
                    message = f"Globus token file {self.site.token_file}: {type(exc).__name__}"
                    raise TransferError(FailureKind.AUTH, message) from None
                except globus_sdk.GlobusError as exc:
                    raise TransferError.of(classify_globus_error(exc)) from exc
                self._client = globus_sdk.TransferClient(
                    authorizer=authorizer, app_name="beambridge", retry_config=self.retry_config
                )
            return self._client

    def _globus(self, call: Callable[[globus_sdk.TransferClient], T]) -> T:
        """One SDK call; any failure as a :class:`TransferError` with the classified failure."""
        try:
            return call(self.client)
        except globus_sdk.GlobusError as exc:
            raise TransferError.of(classify_globus_error(exc)) from exc

    def site_path(self, local_path: Path) -> str:
        """A local path as the site's collection names it."""
        normal = os.path.normpath(local_path)
        relative = os.path.relpath(normal, self.site.collection_root)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise TransferError(
                FailureKind.CONFIG,
                f"{local_path} is outside the site collection's root {self.site.collection_root}",
            )
        return "/" if relative == os.curdir else "/" + relative.replace(os.sep, "/")

    def label(self, task: TransferTask) -> str:
        return _LABEL_UNSAFE.sub("_", f"beambridge {task.task_id} {task.direction} {task.location}")[:128]

    def document(self, task: TransferTask, submission_id: str) -> globus_sdk.TransferData:
        """The submission document of a task (one item per file, in order)."""
        site, remote = str(self.site.collection_id), str(self.location.endpoint_id)
        inbound = task.direction is TransferDirection.IN
        data = globus_sdk.TransferData(
            source_endpoint=remote if inbound else site,
            destination_endpoint=site if inbound else remote,
            label=self.label(task),
            submission_id=submission_id,
            sync_level="checksum" if task.verify_checksum else "size",
            verify_checksum=task.verify_checksum,
            preserve_timestamp=True,
            fail_on_quota_errors=True,
            notify_on_succeeded=False,
            notify_on_failed=False,
            notify_on_inactive=False,
        )
        for item in task.files:
            remote_path = join_remote(self.location.path, item.remote_path)
            local_path = self.site_path(item.local_path)
            source, destination = (remote_path, local_path) if inbound else (local_path, remote_path)
            extra: dict[str, Any] = {}
            if item.sha256 is not None:
                extra = {"external_checksum": item.sha256, "checksum_algorithm": "SHA256"}
            data.add_item(source, destination, recursive=item.recursive, **extra)
        return data

    def prepare(self, task: TransferTask, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{"submission_id": …}``: the previous one while Globus has not accepted a task under it,
        else a fresh one from Globus. :class:`TransferError` when Globus cannot be asked now."""
        if previous and previous.get("submission_id") and not previous.get("globus_task_id"):
            return {"submission_id": str(previous["submission_id"])}
        response = self._globus(lambda client: client.get_submission_id())
        return {"submission_id": str(response["value"])}

    def start(self, task: TransferTask, state: Mapping[str, Any] | None = None) -> GlobusHandle:
        """Submit with the persisted ``submission_id`` (re-attach when the state has a task id)."""
        state = dict(state or {})
        if state.get("globus_task_id"):
            log.info("transfer_reattached", task_id=task.task_id, globus_task_id=state["globus_task_id"])
            return GlobusHandle(task, state)
        if not state.get("submission_id"):
            raise ValueError("start() needs the state of prepare(), persisted first")
        try:
            document = self.document(task, str(state["submission_id"]))
            response = self._globus(lambda client: client.submit_transfer(document))
        except TransferError as exc:
            log.warning("globus_submit_failed", task_id=task.task_id, error=exc.failure)
            return GlobusHandle(task, state, exc.failure)
        state["globus_task_id"] = str(response["task_id"])
        log.info(
            "transfer_running",
            task_id=task.task_id,
            direction=task.direction.value,
            files=len(task.files),
            location=task.location,
            globus_task_id=state["globus_task_id"],
            code=response.get("code", "Accepted"),
        )
        return GlobusHandle(task, state)

    def poll(self, handle: TransferHandle) -> TaskStatus:
        """The Globus task's status. Errors reaching Globus leave it ACTIVE (with a ``detail``)."""
        globus = expect_handle(handle, GlobusHandle)
        if globus.failure is not None:
            return TaskStatus(TaskState.FAILED, globus.started_at, time.time(), failure=globus.failure)
        try:
            doc = self._globus(lambda client: client.get_task(str(globus.globus_task_id))).data
        except TransferError as exc:
            failure = exc.failure
            if failure.kind is FailureKind.NOT_FOUND:
                return TaskStatus(TaskState.FAILED, globus.started_at, time.time(), failure=failure)
            return TaskStatus(TaskState.ACTIVE, globus.started_at, detail=f"cannot poll Globus: {failure}")
        return status_from_task(doc, globus.started_at)

    def cancel(self, handle: TransferHandle) -> None:
        globus = expect_handle(handle, GlobusHandle)
        if globus.globus_task_id is None:
            globus.failure = globus.failure or Failure(FailureKind.CANCELLED, "cancelled before submission")
            return
        task_id = globus.globus_task_id
        try:
            self._globus(lambda client: client.cancel_task(task_id))
        except TransferError as exc:
            log.warning("globus_cancel_failed", globus_task_id=task_id, error=exc.failure)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
