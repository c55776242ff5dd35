"""A running agent rotates its site token before it expires, and no work is dropped: jobs submitted
across the rotation all finish, with no run lost, and a launcher that started with the old token carries
on with the new one (read from the site's token file) once the old one is refused."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from beambridge.client import Client
from beambridge.client.errors import AuthError
from beambridge.states import JobState
from tests.site.harness import System, wait_for

APPS = Path(__file__).with_name("apps_e2e.py")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_agent_rotates_its_token_before_expiry_without_dropping_work(tmp_path: Path) -> None:
    env = {"BEAMBRIDGE_SITE_TOKEN_TTL_S": "60", "BEAMBRIDGE_SITE_TOKEN_ROTATION_GRACE_S": "2"}
    system = System(tmp_path, server_env=env)
    try:
        site, config = system.make_site(
            "laptop",
            periods={"token_check": 1},
            launcher={"cores_per_node": 4, "idle_timeout_s": 60},
            elastic_queue={"wall_time_min": 10},
        )
        shutil.copy(APPS, site.apps / "e2e.py")
        first_token = site.read_token(config)
        system.start_agent(site)
        apps = system.app_ids(config.site_id)
        ids: list[int] = []

        def rotated() -> list[dict]:
            body = system.client._transport.request("GET", "/audit", params={"action": "site_token.rotate"})
            return body["items"]  # type: ignore[no-any-return]

        deadline = time.monotonic() + 150
        while not rotated() or len(ids) < 20:  # a steady stream of work, before and across the rotation
            assert time.monotonic() < deadline, f"no rotation seen\n{system.logs()}"
            made = system.client.jobs.bulk_create(
                [
                    {"app_id": apps["Sleep"], "workdir": f"s/{len(ids) + i}", "parameters": {"seconds": 1}}
                    for i in range(2)
                ]
            )
            ids += [job.id for job in made]
            time.sleep(1)
        [rotation, *_] = rotated()
        old_end = _when(rotation["data"]["old_until"])
        wait_for(lambda: time.time() > old_end.timestamp() + 1, 30, what="the old token's grace period")
        after = system.client.jobs.bulk_create(
            [
                {"app_id": apps["Sleep"], "workdir": f"after/{i}", "parameters": {"seconds": 1}}
                for i in range(6)
            ]
        )
        jobs = system.wait_all(ids + [job.id for job in after], timeout_s=180)
        assert {job.state for job in jobs} == {JobState.JOB_FINISHED}, system.logs()
        for job in jobs:  # nothing was lost on the way: no run timed out, none ran twice
            path = [e.to_state for e in system.client.jobs.events(job.id)]
            assert JobState.RUN_TIMEOUT not in path and path.count(JobState.RUNNING) == 1, (job.id, path)
        assert site.read_token(config) != first_token
        assert rotation["actor"].startswith("site:laptop (token ")
        # a launcher whose session began before the rotation reported after the old token's end
        sessions = system.client._transport.request("GET", "/sessions", params={"limit": 1000})["items"]
        rotated_at = _when(rotation["timestamp"])
        early = {s["id"] for s in sessions if _when(s["created_at"]) < rotated_at}
        late_reports = [
            event
            for event in system.client.events.filter(since=old_end)
            if event.actor.startswith("launcher:")
            and int(event.actor.split("session ")[1].rstrip(")")) in early
        ]
        if not late_reports:
            pytest.fail(
                f"no launcher from before the rotation worked after it (sessions {early})\n{system.logs()}"
            )
        with Client(system.server.url, site_token=first_token, retries=1) as old, pytest.raises(AuthError):
            old.sites.get(config.site_id)
    finally:
        system.close()
