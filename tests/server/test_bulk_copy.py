"""COPY encoding: awkward values survive a round trip through PostgreSQL's text format exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from beambridge.server.db.bulk import bulk_insert, copy_text
from beambridge.server.db.tables import events, jobs, metadata
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


def test_sqlite_bulk_rows_are_stored_as_sqlalchemy_would_store_them(tmp_path: Path) -> None:
    """From 50 rows SQLite's bulk insert converts values itself and calls the driver's executemany; every
    stored value (JSON text, times, booleans, nulls, shared objects) is what SQLAlchemy's insert stores."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    metadata.create_all(engine, tables=[events])
    shared = {"auto": "created", "awkward": AWKWARD}
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    rows = [
        {
            "job_id": i, "owner_id": 1, "site_id": 3 + i % 2, "from_state": "CREATED",
            "to_state": "READY", "timestamp": stamp if i % 2 else datetime(2026, 1, 2, tzinfo=UTC),
            "data": shared if i % 3 else {"n": i, "x": [1.5, None, True]}, "actor": "user:a\tb" if i % 5 else "",
        }
        for i in range(120)
    ]  # fmt: skip
    with engine.begin() as conn:
        bulk_insert(conn, events, rows)  # the driver's executemany
        conn.execute(events.insert(), [{**row, "job_id": row["job_id"] + 1000} for row in rows])
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT job_id, owner_id, site_id, from_state, to_state, timestamp, data, actor FROM events"
        ).all()
        parsed = conn.execute(sa.select(events).order_by(events.c.job_id)).all()
    ours = {row[0]: row[1:] for row in stored if row[0] < 1000}
    theirs = {row[0] - 1000: row[1:] for row in stored if row[0] >= 1000}
    assert ours == theirs and len(ours) == 120
    assert parsed[1].data == shared and parsed[1].timestamp.replace(tzinfo=UTC) == stamp
    engine.dispose()
