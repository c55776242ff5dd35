"""COPY encoding: awkward values survive a round trip through PostgreSQL's text format exactly."""

from __future__ import annotations

from datetime import UTC, datetime

from beambridge.server.db.bulk import copy_text
from beambridge.server.db.tables import jobs
from tests.conftest import ApiUser

AWKWARD = {
    "tab\there": "new\nline",
    "back\\slash": "C:\\data\\A001",
    'quote"s': "ünïcödé ✓ \r carriage",
    "empty": "",
    "nul-ish": "\\N",
}


def test_awkward_values_round_trip(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    specs = [
        {
            "app_id": app["id"],
            "workdir": f"w/{i} x",
            "tags": {"k": "v\t1"},
            "data": {"awkward": AWKWARD, "nested": [1, 2.5, None, True, {"x": "\\\\"}]},
            "launch_params": {"env": "A=1\tB=2"},
        }
        for i in range(120)  # above the COPY threshold
    ]
    created = alice.jobs(specs)
    for job in (created[0], created[-1]):
        stored = alice.ok(alice.http.get(f"/jobs/{job['id']}"))
        assert stored["data"] == {"awkward": AWKWARD, "nested": [1, 2.5, None, True, {"x": "\\\\"}]}
        assert stored["tags"] == {"k": "v\t1"}
        assert stored["launch_params"] == {"env": "A=1\tB=2"}
        assert stored["workdir"].endswith(" x")


def test_copy_text_format() -> None:
    row = {"id": 1, "workdir": "a\tb\\c\nd", "has_stage_ins": True, "result": None,
           "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "gpus_per_rank": 0.5,
           "tags": {"a": "x\ty"}}  # fmt: skip
    line = copy_text(jobs, list(row), [row])
    assert line == ('1\ta\\tb\\\\c\\nd\tt\t\\N\t2026-01-02T03:04:05+00:00\t0.5\t{"a":"x\\\\ty"}\n')


def test_recurring_and_distinct_values_each_encode_as_themselves() -> None:
    shared = {"auto": "created"}
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [
        {
            "id": i,
            "tags": shared if i % 2 else {"n": str(i)},
            "result": None if i % 3 else [i],
            "created_at": stamp,
        }
        for i in range(6)
    ]
    lines = copy_text(jobs, list(rows[0]), rows).splitlines()
    expected = []
    for i in range(6):
        tags = '{"auto":"created"}' if i % 2 else '{"n":"' + str(i) + '"}'
        result = "\\N" if i % 3 else f"[{i}]"
        expected.append("\t".join([str(i), tags, result, "2026-01-02T03:04:05+00:00"]))
    assert lines == expected
    assert copy_text(jobs, ["workdir"], [{"workdir": "a"}, {"workdir": "b\tc"}]) == "a\nb\\tc\n"
