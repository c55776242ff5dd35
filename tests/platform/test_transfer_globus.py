"""The ``globus`` transfer backend against a fake Globus service.

The Globus service cannot be reached from here, so the real globus-sdk talks to ``responses`` (a fake
transport for ``requests``) that records every request. The tests assert the exact submission documents,
one task per batch, the reuse of the ``submission_id`` across SDK retries and agent restarts, the
mapping of Globus task documents, and the renewal of the access token (written back, never logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import stat
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.transport import RetryConfig

from beambridge.platform.transfer import (
    FailureKind,
    TaskState,
    TransferError,
    TransferFile,
    TransferTask,
    get_backend,
)
from beambridge.platform.transfer.globus import (
    GlobusBackend,
    GlobusHandle,
    GlobusLocation,
    GlobusSiteConfig,
    GlobusTokens,
    TokenStore,
    task_failure,
)

TRANSFER = "https://transfer.api.globus.org/v0.10"
AUTH_TOKEN = "https://auth.globus.org/v2/oauth2/token"
SITE_COLLECTION = "11111111-1111-4111-8111-111111111111"
REMOTE_COLLECTION = "22222222-2222-4222-8222-222222222222"
SITE_ROOT = Path("/site/data")
SUBMISSION_ID = "aaaaaaaa-0000-4000-8000-000000000001"
TASK_ID = "bbbbbbbb-0000-4000-8000-000000000002"
CLIENT_SECRET = "client-secret-DO-NOT-LOG"
REFRESH_TOKEN = "refresh-token-DO-NOT-LOG"
ACCESS_TOKEN = "access-token-DO-NOT-LOG"


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    """The fake Globus: every request is recorded in ``http.calls``; unexpected ones fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def token_file(directory: Path, **fields: Any) -> Path:
    path = directory / "globus-tokens.json"
    content = {
        "client_id": "c0ffee00-0000-4000-8000-00000000c11e",
        "refresh_token": REFRESH_TOKEN,
        "access_token": ACCESS_TOKEN,
        "expires_at_seconds": int(time.time()) + 3600,
        **fields,
    }
    path.write_text(json.dumps({k: v for k, v in content.items() if v is not None}))
    path.chmod(0o600)
    return path


def no_sleep_retries(max_retries: int = 3) -> RetryConfig:
    return RetryConfig(max_retries=max_retries, backoff=lambda _ctx: 0.0)


def make_backend(tokens: Path, max_retries: int = 3) -> GlobusBackend:
    site = GlobusSiteConfig(collection_id=SITE_COLLECTION, collection_root=str(SITE_ROOT), token_file=tokens)
    location = GlobusLocation(endpoint_id=REMOTE_COLLECTION, path="/gdata/aps/8-ID-I")
    return GlobusBackend(location, site, retry_config=no_sleep_retries(max_retries))


@pytest.fixture
def backend(tmp_path: Path) -> GlobusBackend:
    return make_backend(token_file(tmp_path))


SHA = hashlib.sha256(b"frames").hexdigest()


def inbound_task(task_id: str = "in-42") -> TransferTask:
    return TransferTask(
        task_id,
        "in",
        "aps_dtn",
        (
            TransferFile("/2024-3/A001/frames.h5", SITE_ROOT / "jobs/1/input.h5", sha256=SHA),
            TransferFile("2024-3/A001/qmap.h5", SITE_ROOT / "jobs/1/qmap.h5"),
            TransferFile("2024-3/flatfield", SITE_ROOT / "jobs/1/flat", recursive=True),
        ),
    )


def submission_response(http: responses.RequestsMock, code: str = "Accepted", status: int = 202) -> None:
    http.post(
        f"{TRANSFER}/transfer",
        status=status,
        json={
            "DATA_TYPE": "transfer_result",
            "code": code,
            "task_id": TASK_ID,
            "submission_id": SUBMISSION_ID,
        },
    )


def submission_id_response(http: responses.RequestsMock, value: str = SUBMISSION_ID) -> None:
    http.get(f"{TRANSFER}/submission_id", json={"value": value})


def calls(http: responses.RequestsMock, method: str, url: str) -> list[Any]:
    return [c for c in http.calls if c.request.method == method and str(c.request.url).split("?")[0] == url]


def body(call: Any) -> dict[str, Any]:
    raw = call.request.body
    return dict(json.loads(raw.decode() if isinstance(raw, bytes) else raw))


def task_doc(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "DATA_TYPE": "task",
        "task_id": TASK_ID,
        "status": status,
        "request_time": "2026-01-02T03:04:05+00:00",
    } | fields


# ------------------------------------------------------------------------------------------------
# Submission documents


def test_the_submission_document_is_exact(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    submission_id_response(http)
    submission_response(http)
    task = inbound_task()

    state = backend.prepare(task)
    assert state == {"submission_id": SUBMISSION_ID}
    handle = backend.start(task, state)

    assert handle.state == {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID}
    [post] = calls(http, "POST", f"{TRANSFER}/transfer")
    assert body(post) == {
        "DATA_TYPE": "transfer",
        "source_endpoint": REMOTE_COLLECTION,
        "destination_endpoint": SITE_COLLECTION,
        "label": "beambridge in-42 in aps_dtn",
        "submission_id": SUBMISSION_ID,
        "sync_level": 3,
        "verify_checksum": True,
        "preserve_timestamp": True,
        "fail_on_quota_errors": True,
        "notify_on_succeeded": False,
        "notify_on_failed": False,
        "notify_on_inactive": False,
        "DATA": [
            {
                "DATA_TYPE": "transfer_item",
                "source_path": "/gdata/aps/8-ID-I/2024-3/A001/frames.h5",
                "destination_path": "/jobs/1/input.h5",
                "recursive": False,
                "external_checksum": SHA,
                "checksum_algorithm": "SHA256",
            },
            {
                "DATA_TYPE": "transfer_item",
                "source_path": "/gdata/aps/8-ID-I/2024-3/A001/qmap.h5",
                "destination_path": "/jobs/1/qmap.h5",
                "recursive": False,
            },
            {
                "DATA_TYPE": "transfer_item",
                "source_path": "/gdata/aps/8-ID-I/2024-3/flatfield",
                "destination_path": "/jobs/1/flat",
                "recursive": True,
            },
        ],
    }
    assert post.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_outbound_swaps_the_collections(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    submission_response(http)
    task = TransferTask(
        "out-7", "out", "aps_dtn", (TransferFile("results/job1/c2.h5", SITE_ROOT / "jobs/1/c2.h5"),)
    )
    backend.start(task, {"submission_id": SUBMISSION_ID})

    doc = body(calls(http, "POST", f"{TRANSFER}/transfer")[0])
    assert (doc["source_endpoint"], doc["destination_endpoint"]) == (SITE_COLLECTION, REMOTE_COLLECTION)
    assert doc["DATA"] == [
        {
            "DATA_TYPE": "transfer_item",
            "source_path": "/jobs/1/c2.h5",
            "destination_path": "/gdata/aps/8-ID-I/results/job1/c2.h5",
            "recursive": False,
        }
    ]
    assert doc["label"] == "beambridge out-7 out aps_dtn"


def test_a_batch_is_one_submission(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    submission_id_response(http)
    submission_response(http)
    files = tuple(TransferFile(f"scan/{i:04d}.h5", SITE_ROOT / f"jobs/{i}/in.h5") for i in range(300))
    task = TransferTask("batch-1", "in", "aps_dtn", files)

    backend.start(task, backend.prepare(task))

    [post] = calls(http, "POST", f"{TRANSFER}/transfer")
    items = body(post)["DATA"]
    assert [(item["source_path"], item["destination_path"]) for item in items] == [
        (f"/gdata/aps/8-ID-I/scan/{i:04d}.h5", f"/jobs/{i}/in.h5") for i in range(300)
    ]
    assert len(http.calls) == 2  # one submission id, one submission


def test_a_path_outside_the_site_collection_fails_without_submitting(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    task = TransferTask("t", "in", "aps_dtn", (TransferFile("a.h5", Path("/elsewhere/a.h5")),))
    handle = backend.start(task, {"submission_id": SUBMISSION_ID})

    status = backend.poll(handle)
    assert status.failure is not None and status.failure.kind is FailureKind.CONFIG
    assert "outside the site collection" in status.failure.message
    assert len(http.calls) == 0


# ------------------------------------------------------------------------------------------------
# The submission id: retries and restarts


def test_a_502_is_retried_with_the_same_submission_id(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    submission_id_response(http)
    http.post(f"{TRANSFER}/transfer", status=502, json={"code": "BadGateway", "message": "try again"})
    submission_response(http)
    task = inbound_task()

    handle = backend.start(task, backend.prepare(task))

    posts = calls(http, "POST", f"{TRANSFER}/transfer")
    assert len(posts) == 2
    assert body(posts[0]) == body(posts[1])
    assert body(posts[1])["submission_id"] == SUBMISSION_ID
    assert len(calls(http, "GET", f"{TRANSFER}/submission_id")) == 1
    assert handle.state["globus_task_id"] == TASK_ID


def test_a_restart_before_the_task_id_was_stored_resubmits_idempotently(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    """The agent persisted prepare()'s state, submitted, and was killed before storing the task id: the
    restarted agent submits the same document with the same submission id, and Globus answers
    ``Duplicate`` with the task it already has."""
    tokens = token_file(tmp_path)
    saved = tmp_path / "saved-state.json"
    submission_id_response(http)
    submission_response(http, "Accepted")
    submission_response(http, "Duplicate")
    http.get(f"{TRANSFER}/task/{TASK_ID}", json=task_doc("ACTIVE"))
    task = inbound_task()

    first = make_backend(tokens)
    saved.write_text(json.dumps(first.prepare(task)))
    first.start(task, json.loads(saved.read_text()))
    first.close()  # "killed": the task id never reached the saved state

    restarted = make_backend(tokens)
    handle = restarted.resume(task, json.loads(saved.read_text()))

    posts = calls(http, "POST", f"{TRANSFER}/transfer")
    assert len(posts) == 2 and body(posts[0]) == body(posts[1])
    assert len(calls(http, "GET", f"{TRANSFER}/submission_id")) == 1
    assert handle.state == {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID}
    assert restarted.poll(handle).state is TaskState.ACTIVE


def test_a_restart_with_the_task_id_re_attaches(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    http.get(
        f"{TRANSFER}/task/{TASK_ID}",
        json=task_doc(
            "SUCCEEDED",
            completion_time="2026-01-02T03:05:05+00:00",
            bytes_transferred=10**9,
            files_transferred=3,
        ),
    )
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})

    status = backend.poll(handle)
    assert calls(http, "POST", f"{TRANSFER}/transfer") == []
    assert (status.state, status.bytes, status.files) == (TaskState.SUCCEEDED, 10**9, 3)
    assert status.duration_s == 60.0
    assert status.rate == pytest.approx(10**9 / 60)


def test_prepare_reuses_an_unaccepted_submission_id_only(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    submission_id_response(http, "fresh-1")
    submission_id_response(http, "fresh-2")
    task = inbound_task()

    assert backend.prepare(task) == {"submission_id": "fresh-1"}
    assert backend.prepare(task, previous={"submission_id": "old"}) == {"submission_id": "old"}
    retry_of_failed_task = backend.prepare(task, previous={"submission_id": "old", "globus_task_id": TASK_ID})
    assert retry_of_failed_task == {"submission_id": "fresh-2"}
    assert len(calls(http, "GET", f"{TRANSFER}/submission_id")) == 2


def test_start_refuses_to_submit_without_a_persisted_submission_id(backend: GlobusBackend) -> None:
    with pytest.raises(ValueError, match="prepare"):
        backend.start(inbound_task(), {})


def test_a_submission_that_keeps_failing_is_retryable_with_the_same_id(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    for _ in range(4):  # the first try and max_retries=3
        http.post(f"{TRANSFER}/transfer", status=503, json={"code": "ServiceUnavailable", "message": "down"})
    handle = backend.start(inbound_task(), {"submission_id": SUBMISSION_ID})

    status = backend.poll(handle)
    assert len(calls(http, "POST", f"{TRANSFER}/transfer")) == 4
    assert status.failure is not None and status.failure.kind is FailureKind.TRANSIENT
    assert status.retryable
    assert backend.prepare(inbound_task(), previous=handle.state) == {"submission_id": SUBMISSION_ID}


@pytest.mark.parametrize(
    ("status_code", "code", "kind"),
    [
        (403, "PermissionDenied", FailureKind.CONFIG),
        (403, "ConsentRequired", FailureKind.AUTH),
        (404, "ClientError.NotFound", FailureKind.NOT_FOUND),
        (400, "ClientError.BadRequest", FailureKind.CONFIG),
        (409, "Conflict", FailureKind.CONFIG),
    ],
)
def test_submission_errors_are_classified(
    http: responses.RequestsMock, backend: GlobusBackend, status_code: int, code: str, kind: FailureKind
) -> None:
    http.post(f"{TRANSFER}/transfer", status=status_code, json={"code": code, "message": "no"})
    status = backend.poll(backend.start(inbound_task(), {"submission_id": SUBMISSION_ID}))
    assert status.failure is not None and status.failure.kind is kind, status.error
    assert code in status.failure.message
    assert not status.retryable


# ------------------------------------------------------------------------------------------------
# Polling


def test_poll_follows_the_task(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    url = f"{TRANSFER}/task/{TASK_ID}"
    http.get(url, json=task_doc("ACTIVE", nice_status="Queued", bytes_transferred=0))
    http.get(
        url,
        json=task_doc(
            "ACTIVE",
            nice_status="CONNECT_FAILED",
            nice_status_short_description="Connection refused",
            faults=2,
            bytes_transferred=5000,
            files_transferred=1,
        ),
    )
    http.get(url, json=task_doc("INACTIVE", nice_status=None))
    http.get(
        url,
        json=task_doc(
            "SUCCEEDED",
            completion_time="2026-01-02T03:04:15+00:00",
            bytes_transferred=9000,
            files_transferred=3,
            files_skipped=1,
        ),
    )
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})

    queued, faulty, inactive, done = (backend.poll(handle) for _ in range(4))

    assert (queued.state, queued.detail) == (TaskState.ACTIVE, "Queued")
    assert faulty.state is TaskState.ACTIVE and (faulty.bytes, faulty.files) == (5000, 1)
    assert faulty.detail == "CONNECT_FAILED: Connection refused (2 faults so far)"
    assert inactive.state is TaskState.ACTIVE and inactive.detail.startswith("inactive")
    assert (done.state, done.bytes, done.files, done.files_skipped, done.duration_s) == (
        TaskState.SUCCEEDED,
        9000,
        3,
        1,
        10.0,
    )


def test_a_checksum_failure_fails_the_task(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    """Globus verifies every file's checksum (and the declared SHA-256); a file corrupted in flight that
    keeps failing verification fails the task, which the service may retry."""
    http.get(
        f"{TRANSFER}/task/{TASK_ID}",
        json=task_doc(
            "FAILED",
            completion_time="2026-01-02T03:04:06+00:00",
            fatal_error={"code": "VERIFY_CHECKSUM", "description": "checksum verification failed"},
        ),
    )
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})

    status = backend.poll(handle)
    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM
    assert "checksum verification failed" in status.failure.message
    assert status.retryable


@pytest.mark.parametrize(
    ("fatal", "kind"),
    [
        ("CANCELED", FailureKind.CANCELLED),
        ("DEADLINE_EXPIRED", FailureKind.TRANSIENT),
        ("PERMISSION_DENIED", FailureKind.CONFIG),
        ("FILE_NOT_FOUND", FailureKind.NOT_FOUND),
        ("AUTH", FailureKind.AUTH),
        ("QUOTA_EXCEEDED", FailureKind.CONFIG),
        ("ENDPOINT_ERROR", FailureKind.TRANSIENT),
    ],
)
def test_task_failures_are_classified(fatal: str, kind: FailureKind) -> None:
    assert task_failure({"task_id": "t", "status": "FAILED", "fatal_error": {"code": fatal}}).kind is kind


def test_polling_survives_an_unreachable_service(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    for _ in range(4):
        http.get(f"{TRANSFER}/task/{TASK_ID}", status=502, json={"code": "BadGateway"})
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})

    status = backend.poll(handle)
    assert status.state is TaskState.ACTIVE
    assert "cannot poll Globus" in status.detail


def test_a_task_unknown_to_globus_fails(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    http.get(f"{TRANSFER}/task/{TASK_ID}", status=404, json={"code": "TaskNotFound", "message": "no task"})
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})
    status = backend.poll(handle)
    assert status.failure is not None and status.failure.kind is FailureKind.NOT_FOUND


def test_cancel(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    http.post(f"{TRANSFER}/task/{TASK_ID}/cancel", json={"code": "Canceled", "message": "ok"})
    handle = backend.resume(inbound_task(), {"submission_id": SUBMISSION_ID, "globus_task_id": TASK_ID})
    backend.cancel(handle)
    assert len(calls(http, "POST", f"{TRANSFER}/task/{TASK_ID}/cancel")) == 1

    unsubmitted = GlobusHandle(inbound_task(), {"submission_id": SUBMISSION_ID})
    backend.cancel(unsubmitted)
    assert backend.poll(unsubmitted).failure is not None


# ------------------------------------------------------------------------------------------------
# Tokens


def token_response(access: str, refresh: str | None = None) -> dict[str, Any]:
    return {
        "access_token": access,
        "expires_in": 172800,
        "resource_server": "transfer.api.globus.org",
        "scope": "urn:globus:auth:scope:transfer.api.globus.org:all",
        "token_type": "Bearer",
        "refresh_token": refresh,
        "other_tokens": [],
    }


def test_the_access_token_is_renewed_before_expiry_saved_and_never_logged(
    http: responses.RequestsMock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    new_access, new_refresh = "new-access-DO-NOT-LOG", "new-refresh-DO-NOT-LOG"
    tokens = token_file(tmp_path, client_secret=CLIENT_SECRET, expires_at_seconds=int(time.time()) + 30)
    http.post(AUTH_TOKEN, json=token_response(new_access, new_refresh))
    submission_id_response(http)
    backend = make_backend(tokens)

    backend.prepare(inbound_task())

    [refresh] = calls(http, "POST", AUTH_TOKEN)
    form = urllib.parse.parse_qs(refresh.request.body)
    assert form == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_TOKEN]}
    assert refresh.request.headers["Authorization"].startswith("Basic ")
    [get] = calls(http, "GET", f"{TRANSFER}/submission_id")
    assert get.request.headers["Authorization"] == f"Bearer {new_access}"

    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    saved = json.loads(tokens.read_text())
    assert saved["access_token"] == new_access and saved["refresh_token"] == new_refresh
    assert saved["client_secret"] == CLIENT_SECRET
    assert saved["expires_at_seconds"] > time.time() + 172000
    assert list(tmp_path.iterdir()) == [tokens], "no temporary file left behind"

    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert "event=globus_token_renewed" in logged
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN, new_access, new_refresh):
        assert secret not in logged
        assert secret not in repr(GlobusTokens.model_validate(saved))


def test_a_valid_access_token_is_used_as_is(http: responses.RequestsMock, backend: GlobusBackend) -> None:
    submission_id_response(http)
    backend.prepare(inbound_task())
    assert calls(http, "POST", AUTH_TOKEN) == []


def test_client_credentials(http: responses.RequestsMock, tmp_path: Path) -> None:
    tokens = token_file(
        tmp_path, client_secret=CLIENT_SECRET, refresh_token=None, access_token=None, expires_at_seconds=None
    )
    http.post(AUTH_TOKEN, json=token_response("cc-access"))
    submission_id_response(http)

    make_backend(tokens).prepare(inbound_task())

    form = urllib.parse.parse_qs(calls(http, "POST", AUTH_TOKEN)[0].request.body)
    assert form["grant_type"] == ["client_credentials"]
    assert "transfer.api.globus.org:all" in form["scope"][0]
    assert json.loads(tokens.read_text())["access_token"] == "cc-access"


def test_a_refused_refresh_token_is_an_auth_error(http: responses.RequestsMock, tmp_path: Path) -> None:
    tokens = token_file(tmp_path, access_token=None, expires_at_seconds=None)
    http.post(AUTH_TOKEN, status=400, json={"error": "invalid_grant"})

    backend = make_backend(tokens)  # no network yet
    assert len(http.calls) == 0
    with pytest.raises(TransferError) as raised:
        backend.prepare(inbound_task())
    failure = raised.value.failure
    assert failure.kind is FailureKind.AUTH and not failure.retryable
    assert REFRESH_TOKEN not in str(raised.value)
    handle = backend.start(inbound_task(), {"submission_id": SUBMISSION_ID})
    assert backend.poll(handle).failure == failure


def test_a_rejected_access_token_is_renewed_once_then_an_auth_error(
    http: responses.RequestsMock, backend: GlobusBackend
) -> None:
    """A 401 makes the SDK renew the access token and try again; a second 401 is an auth failure."""
    http.post(f"{TRANSFER}/transfer", status=401, json={"code": "AuthenticationFailed", "message": "no"})
    http.post(AUTH_TOKEN, json=token_response("renewed-access"))

    status = backend.poll(backend.start(inbound_task(), {"submission_id": SUBMISSION_ID}))

    posts = calls(http, "POST", f"{TRANSFER}/transfer")
    assert [p.request.headers["Authorization"] for p in posts] == [
        f"Bearer {ACCESS_TOKEN}",
        "Bearer renewed-access",
    ]
    assert status.failure is not None and status.failure.kind is FailureKind.AUTH
    assert not status.retryable


def test_a_missing_token_file_is_an_auth_error(tmp_path: Path) -> None:
    backend = make_backend(tmp_path / "nothing.json")
    with pytest.raises(TransferError) as raised:
        backend.prepare(inbound_task())
    assert raised.value.failure.kind is FailureKind.AUTH


def test_a_token_file_readable_by_others_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = token_file(tmp_path)
    tokens.chmod(0o644)
    TokenStore(tokens).load()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert "event=token_file_mode_tightened" in caplog.text and "mode=644" in caplog.text


def test_a_token_file_needs_a_way_to_get_tokens() -> None:
    with pytest.raises(ValueError, match="refresh_token or a client_secret"):
        GlobusTokens(client_id="c")


def test_get_backend(tmp_path: Path) -> None:
    site = {
        "collection_id": SITE_COLLECTION,
        "collection_root": "/site/data",
        "token_file": token_file(tmp_path),
    }
    backend = get_backend("globus", {"endpoint_id": REMOTE_COLLECTION, "path": "/gdata"}, settings=site)
    assert isinstance(backend, GlobusBackend)
    assert isinstance(backend.client, globus_sdk.TransferClient)
    assert backend.site_path(Path("/site/data")) == "/"
    assert backend.site_path(Path("/site/data/jobs/../jobs/1/x.h5")) == "/jobs/1/x.h5"
    with pytest.raises(ValueError, match="Globus settings"):
        get_backend("globus", {"endpoint_id": REMOTE_COLLECTION, "path": "/gdata"})
