"""Path traversal: nothing a client sends may make a site read or write outside a job's workdir (local
paths) or outside a transfer location's base (remote paths).

Found from outside: an app's transfer slot took ``local_path: /home/user/.ssh/authorized_keys`` (or
``../../x``), and the site joined it onto the job's workdir, so a stage-in could write, and a stage-out read,
any file the agent's user can reach.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from beambridge.schemas.transfers import TransferItem, TransferState
from beambridge.site.services.transfers import unsafe_paths
from tests.conftest import ApiUser

ESCAPING_LOCAL = ["/etc/passwd", "../x", "a/../../x", "..", "a/..", "a\\..\\x", "raw\x00.h5", ".", "./"]


@pytest.mark.parametrize("local_path", ESCAPING_LOCAL)
def test_a_slot_may_not_point_outside_the_workdir(alice: ApiUser, local_path: str) -> None:
    site = alice.site()
    slots = {"raw": {"direction": "in", "local_path": local_path}}
    created = alice.http.post("/apps", json={"site_id": site["id"], "name": "evil", "transfer_slots": slots})
    assert created.status_code == 422, created.text
    detail = created.json()["detail"]
    assert "transfer_slots" in detail and "raw" in detail and "local_path" in detail, detail
    app = alice.app(
        site["id"], "fine", transfer_slots={"raw": {"direction": "in", "local_path": "in/raw.h5"}}
    )
    changed = alice.http.patch(f"/apps/{app['id']}", json={"transfer_slots": slots})
    assert changed.status_code == 422, changed.text
    assert (
        alice.ok(alice.http.get(f"/apps/{app['id']}"))["transfer_slots"]["raw"]["local_path"] == "in/raw.h5"
    )  # type: ignore[index]


@pytest.mark.parametrize("remote", ["dtn:/data/../../etc/shadow", "dtn:../x", "dtn:/a/..", "dtn:/a\x00b"])
def test_a_stage_in_may_not_climb_out_of_its_location(alice: ApiUser, remote: str) -> None:
    site = alice.site()
    app = alice.app(site["id"], transfer_slots={"raw": {"direction": "in", "local_path": "raw.h5"}})
    answer = alice.http.post(
        "/jobs", json=[{"app_id": app["id"], "workdir": "w", "transfers": {"raw": remote}}]
    )
    assert answer.status_code == 422, answer.text
    assert "transfers" in answer.text
    assert alice.ok(alice.http.get("/jobs/count"))["count"] == 0  # type: ignore[index]


@pytest.mark.parametrize("workdir", ["/abs", "../up", "a/../../up", "..", ".", "a\\b", "a\x00b"])
def test_a_workdir_may_not_leave_the_data_directory(alice: ApiUser, workdir: str) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    answer = alice.http.post("/jobs", json=[{"app_id": app["id"], "workdir": workdir}])
    assert answer.status_code == 422 and "workdir" in answer.text, answer.text


def _item(local_path: str, remote_path: str = "data/raw.h5") -> TransferItem:
    now = datetime.now(UTC)
    return TransferItem(
        id=7, job_id=1, site_id=1, direction="in", slot="raw", location="dtn", remote_path=remote_path,
        local_path=local_path, recursive=False, state=TransferState.PENDING, task_id=None, info={},
        created_at=now, updated_at=now,
    )  # fmt: skip


@pytest.mark.parametrize("local_path", ESCAPING_LOCAL)
def test_the_site_refuses_such_paths_from_rows_made_before_the_service_did(local_path: str) -> None:
    problem = unsafe_paths(_item(local_path))
    assert problem is not None and problem.startswith("transfer item 7: local_path ")
    assert unsafe_paths(_item("raw.h5", "/data/../../etc/shadow")) is not None
    assert unsafe_paths(_item("in/raw.h5", "/data/run 1/raw.h5")) is None
