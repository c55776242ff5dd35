"""Fuzz the API from its own OpenAPI spec (schemathesis): whatever it sends, no answer is a 5xx."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from beambridge.server.app import create_app
from beambridge.server.db.engine import Database
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user
from tests.conftest import PASSWORD, ApiUser

# The spec alone, without a database behind it: the cases are generated at collection time.
_spec_app = create_app(
    ServerSettings(secret_key="spec-only-secret-key-of-32-bytes!!"), db=Database("sqlite://"), upgrade=False
)
schema = schemathesis.openapi.from_dict(_spec_app.openapi())


@pytest.fixture(scope="module")
def fuzz_user(live_server, server_app, password_hash) -> ApiUser:  # type: ignore[no-untyped-def]
    """A user with a site, an app and jobs, so generated ids sometimes hit real objects."""
    name = f"fuzz{uuid.uuid4().hex[:8]}"
    user_id = add_user(server_app.state.ctx.db, name, PASSWORD, password_hash=password_hash)
    user = ApiUser(live_server.url, name, server_app.state.ctx.tokens.issue(user_id))
    site = user.site()
    app = user.app(site["id"], parameters={"n": {"type": "int", "required": False}})
    user.jobs([{"app_id": app["id"], "workdir": f"w/{i}"} for i in range(5)])
    user.session(site["id"])
    return user


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case, fuzz_user: ApiUser) -> None:
    if case.path.endswith("/acquire") and isinstance(case.body, dict):
        case.body["wait_s"] = 0  # a long-poll would only make the fuzzing slow
    if case.path == "/events" and case.query:
        case.query["wait_s"] = 0
    case.call_and_validate(
        base_url=fuzz_user.base_url,
        headers={"Authorization": f"Bearer {fuzz_user.token}"},
        checks=[not_a_server_error],
        timeout=30,
    )
