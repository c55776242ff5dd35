"""The schema comes from the Alembic migrations, and they produce exactly what the code describes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from beambridge.server.app import SchemaOutOfDate, open_database
from beambridge.server.db import migrate
from beambridge.server.db.tables import metadata
from beambridge.server.settings import ServerSettings
from tests.servers import IN_CI, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_url: str | None) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    assert pg_admin_url is not None or not IN_CI, "PostgreSQL is required in CI"
    if pg_admin_url is None:
        pytest.skip("PostgreSQL is not available here (in CI this is an error)")
    with postgres_database(pg_admin_url) as url:
        yield url


def test_migrations_build_the_described_schema(empty_database: str) -> None:
    engine = sa.create_engine(empty_database)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    if engine.dialect.name == "sqlite":  # the GIN index on tags exists on PostgreSQL only, by design
        differences = [
            d for d in differences if not (d[0] == "add_index" and d[1].name == "ix_jobs_tags_gin")
        ]
    assert differences == []
    migrate.upgrade(engine)  # idempotent
    engine.dispose()


def test_server_refuses_an_unmigrated_database(empty_database: str, tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path, database_url=empty_database, secret_key="x" * 40)
    with pytest.raises(SchemaOutOfDate, match="run 'beambridge server migrate'"):
        open_database(settings, upgrade=False)
    open_database(settings, upgrade=True).dispose()
    open_database(settings, upgrade=False).dispose()


def test_downgrade_and_upgrade_again(empty_database: str) -> None:
    engine = sa.create_engine(empty_database)
    migrate.upgrade(engine)
    command.downgrade(migrate.alembic_config(engine), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert "jobs" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_table_rebuilds_keep_every_row(tmp_path: Path) -> None:
    """Rebuilding ``jobs`` (0005) must not cascade into the rows that refer to it."""
    from beambridge.server.db.engine import Database

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(db.engine, "0004")
    now = "2026-11-30 00:00:00"
    rows = [
        f"INSERT INTO users VALUES (1, 'maya', 'x', '{now}')",
        f"INSERT INTO sites (id, owner_id, name, status, created_at) VALUES (1, 1, 's', '{{}}', '{now}')",
        "INSERT INTO apps (id, owner_id, site_id, name, parameters, transfer_slots, hooks, created_at) "
        f"VALUES (1, 1, 1, 'a', '{{}}', '{{}}', '[]', '{now}')",
        *(
            "INSERT INTO jobs (id, owner_id, site_id, app_id, workdir, state, parameters, tags, data, "
            "launch_params, num_nodes, ranks_per_node, threads_per_rank, gpus_per_rank, node_packing_count, "
            "wall_time_min, parent_ids, transfers, has_stage_ins, has_stage_outs, retry_count, retry_limit, "
            f"priority, created_at, updated_at) VALUES ({i}, 1, 1, 1, 'w', 'READY', '{{}}', '{{}}', '{{}}', "
            f"'{{}}', 1, 1, 1, 0, 1, 0, '[]', '{{}}', 1, 0, 0, 3, 0, '{now}', '{now}')"
            for i in (1, 2)
        ),
        "INSERT INTO job_parents VALUES (2, 1)",
        "INSERT INTO transfer_items (id, job_id, owner_id, site_id, direction, slot, location, remote_path, "
        f"local_path, recursive, state, info, created_at, updated_at) VALUES (1, 2, 1, 1, 'in', 'raw', 'a', "
        f"'/x', 'x', 0, 'pending', '{{}}', '{now}', '{now}')",
        f"INSERT INTO events VALUES (1, 2, 1, 1, 'CREATED', 'READY', '{now}', '{{}}')",
    ]
    with db.write() as conn:
        for statement in rows:
            conn.exec_driver_sql(statement)
    migrate.upgrade(db.engine)
    with db.read() as conn:
        counts = {
            table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            for table in ("users", "sites", "apps", "jobs", "job_parents", "transfer_items", "events")
        }
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert counts == dict.fromkeys(counts, 1) | {"jobs": 2}
    db.dispose()


def test_job_runs_are_carried_over_from_the_events(empty_database: str) -> None:
    """0015 builds a run for every → RUNNING event of existing history, ended by the job's next event."""
    engine = sa.create_engine(empty_database)
    migrate.upgrade(engine, "0013_job_artifacts")
    t = ["2026-12-01 10:00:00", "2026-12-01 10:00:05", "2026-12-01 10:00:09", "2026-12-01 10:00:20"]
    rows = [
        f"INSERT INTO users (id, name, password_hash, created_at) VALUES (1, 'maya', 'x', '{t[0]}')",
        f"INSERT INTO sites (id, owner_id, name, status, created_at) VALUES (1, 1, 's', '{{}}', '{t[0]}')",
        "INSERT INTO apps (id, owner_id, site_id, name, parameters, transfer_slots, hooks, created_at) "
        f"VALUES (1, 1, 1, 'a', '{{}}', '{{}}', '[]', '{t[0]}')",
        *(
            "INSERT INTO jobs (id, owner_id, site_id, app_id, workdir, state, parameters, tags, data, "
            "launch_params, num_nodes, ranks_per_node, threads_per_rank, gpus_per_rank, node_packing_count, "
            "wall_time_limit_min, parent_ids, transfers, has_stage_ins, has_stage_outs, retry_count, retry_limit, "
            f"priority, created_at, updated_at) VALUES ({i}, 1, 1, 1, 'w{i}', 'RUNNING', '{{}}', '{{}}', '{{}}', "
            f"'{{}}', 1, 1, 1, 0, 1, 0, '[]', '{{}}', false, false, 0, 3, 0, '{t[0]}', '{t[0]}')"
            for i in (1, 2)
        ),
        "INSERT INTO events (job_id, owner_id, site_id, from_state, to_state, timestamp, data) VALUES "
        f"(1, 1, 1, 'PREPROCESSED', 'RUNNING', '{t[0]}', '{{\"node\": \"nid0001\"}}'), "
        f"(2, 1, 1, 'PREPROCESSED', 'RUNNING', '{t[1]}', '{{}}'), "
        f"(1, 1, 1, 'RUNNING', 'RUN_ERROR', '{t[1]}', '{{}}'), "
        f"(1, 1, 1, 'RUN_ERROR', 'RESTART_READY', '{t[1]}', '{{}}'), "
        f"(1, 1, 1, 'RESTART_READY', 'RUNNING', '{t[2]}', '{{\"node\": \"nid0002\"}}'), "
        f"(1, 1, 1, 'RUNNING', 'RUN_DONE', '{t[3]}', '{{}}')",
    ]
    with engine.begin() as conn:
        for statement in rows:
            conn.exec_driver_sql(statement)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        runs = conn.exec_driver_sql(
            "SELECT job_id, node, started_at, ended_at, end_state, app_id FROM job_runs ORDER BY job_id, started_at"
        ).all()
    as_text = [
        (r[0], r[1], str(r[2])[:19], None if r[3] is None else str(r[3])[:19], r[4], r[5]) for r in runs
    ]
    assert as_text == [
        (1, "nid0001", t[0], t[1], "RUN_ERROR", 1),
        (1, "nid0002", t[2], t[3], "RUN_DONE", 1),
        (2, "", t[1], None, None, 1),
    ]
    engine.dispose()
