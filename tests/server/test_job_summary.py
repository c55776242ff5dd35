"""``GET /jobs/summary``: counts by state of the jobs matching the filters, per value of one tag.

What a beamline scientist asks at 3 a.m.: of each run of the campaign, how many finished, failed, still run.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiUser
from tests.server.helpers import acquire, run_to


def _summary(user: ApiUser, query: str = "") -> dict[str, Any]:
    return user.ok(user.http.get(f"/jobs/summary{query}"))  # type: ignore[return-value]


def _campaign(user: ApiUser) -> dict[str, list[int]]:
    site = user.site()
    app = user.app(site["id"])

    def make(tags: dict[str, str], count: int) -> list[int]:
        return [j["id"] for j in user.jobs([{"app_id": app["id"], "workdir": "w", "tags": tags}] * count)]

    made = {
        "41": make({"run": "41", "beamline": "8-ID"}, 3),
        "untagged": make({"beamline": "8-ID"}, 1),
        "odd": make({"run": 'it\'s "42" ü', "beamline": "8-ID"}, 1),
        "42": make({"run": "42", "beamline": "8-ID"}, 4),
        "other": make({"run": "42", "beamline": "9-ID"}, 2),
    }
    session = user.session(site["id"])["id"]
    acquire(user, session, max_jobs=100, filter_tags={"run": "41"})
    run_to(user, session, made["41"][:2], "RUN_DONE", return_code=0)
    user.ok(user.http.post("/jobs/cancel", json={"ids": made["42"][:1]}))
    return made


def test_counts_by_state_per_tag_value_newest_first(alice: ApiUser) -> None:
    _campaign(alice)
    summary = _summary(alice, "?by_tag=run&tag=beamline:8-ID")
    assert summary["by_tag"] == "run" and summary["total"] == 9 and summary["groups_left_out"] == 0
    assert [g["value"] for g in summary["groups"]] == ["42", 'it\'s "42" ü', None, "41"]
    by_value = {g["value"]: g for g in summary["groups"]}
    assert by_value["42"]["counts"] == {"PREPROCESSED": 3, "KILLED": 1} and by_value["42"]["total"] == 4
    assert by_value["41"]["counts"] == {"PREPROCESSED": 1, "JOB_FINISHED": 2}  # in the states' own order
    assert by_value[None]["counts"] == {"PREPROCESSED": 1}


def test_without_a_tag_one_group_of_everything(alice: ApiUser) -> None:
    _campaign(alice)
    summary = _summary(alice)
    assert summary["by_tag"] is None and summary["total"] == 11
    [group] = summary["groups"]
    assert group["value"] is None
    assert group["counts"] == {"PREPROCESSED": 8, "JOB_FINISHED": 2, "KILLED": 1}
    assert _summary(alice, "?state=KILLED")["groups"][0]["counts"] == {"KILLED": 1}


def test_groups_beyond_the_limit_are_counted_as_left_out(alice: ApiUser) -> None:
    _campaign(alice)
    summary = _summary(alice, "?by_tag=run&max_groups=2")
    assert [g["value"] for g in summary["groups"]] == ["42", 'it\'s "42" ü']
    assert summary["groups_left_out"] == 2 and summary["total"] == 7


def test_keys_with_dots_and_dashes_group_on_both_databases(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    alice.jobs([{"app_id": app["id"], "workdir": "w", "tags": {"scan.id": "a-1", "scan": "x"}}] * 2)
    alice.jobs([{"app_id": app["id"], "workdir": "w", "tags": {"scan-id": "b"}}])
    assert [(g["value"], g["total"]) for g in _summary(alice, "?by_tag=scan.id")["groups"]] == [
        (None, 1),
        ("a-1", 2),
    ]
    assert [g["value"] for g in _summary(alice, "?by_tag=scan-id")["groups"]] == ["b", None]


def test_no_jobs_no_groups(alice: ApiUser) -> None:
    assert _summary(alice, "?by_tag=run") == {"by_tag": "run", "total": 0, "groups": [], "groups_left_out": 0}


@pytest.mark.parametrize(
    "query",
    ["?by_tag=", "?by_tag=a%20b", "?by_tag=" + "k" * 65, "?by_tag=x&max_groups=0", "?max_groups=10001",
     "?by_tag=%22%5D')--"],
)  # fmt: skip
def test_bad_grouping_is_refused_naming_it(alice: ApiUser, query: str) -> None:
    answer = alice.http.get(f"/jobs/summary{query}")
    assert answer.status_code == 422, answer.text
    assert ("by_tag" in answer.text or "max_groups" in answer.text) and "Traceback" not in answer.text
